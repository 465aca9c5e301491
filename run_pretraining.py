"""Pretrain BERT on TFRecords (same flags as google-research/bert's run_pretraining.py)."""
from bert_tf.cli.run_pretraining import run
run()
