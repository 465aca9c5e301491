"""Create pretraining TFRecords from text (google-research/bert's flags); see bert_tf.cli."""
from bert_tf.cli.create_pretraining_data import run
if __name__ == "__main__": run()  # the guard keeps spawned worker processes from re-running it
