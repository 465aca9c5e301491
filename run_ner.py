"""Fine-tune BERT for named-entity recognition (flags shared with run_classifier.py)."""
from bert_tf.cli.run_ner import run

if __name__ == "__main__":
  run()
