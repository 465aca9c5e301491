"""Fine-tune BERT on a classification task (flags of google-research/bert's run_classifier.py)."""
from bert_tf.cli.run_classifier import run

if __name__ == "__main__":
  run()
