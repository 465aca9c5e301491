"""Small synthetic pretraining TFRecords for the training tests (not a test module).

The records have learnable structure: masked tokens follow a skewed (Zipf-like) distribution and the
next-sentence label is written into the segment layout, so a tiny model's losses drop within a few
dozen steps.
"""

import numpy as np

from bert_tf import features as features_lib
from bert_tf.configs import BertConfig

VOCAB_SIZE = 64
SEQ_LENGTH = 16
PREDICTIONS = 4


def tiny_config(dropout=0.0, vocab_size=VOCAB_SIZE):
  return BertConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=32, hidden_dropout_prob=dropout,
                    attention_probs_dropout_prob=dropout, max_position_embeddings=128)


def make_records(num_records, seed=0, seq_length=SEQ_LENGTH, predictions=PREDICTIONS,
                 vocab_size=VOCAB_SIZE, nan_weights=False):
  """Serialized pretraining examples with variable lengths and variable numbers of predictions."""
  rng = np.random.RandomState(seed)
  probs = 1.0 / np.arange(1, vocab_size - 4 + 1)
  probs /= probs.sum()
  out = []
  for _ in range(num_records):
    length = rng.randint(seq_length // 2, seq_length + 1)
    ids = [2] + list(4 + rng.choice(vocab_size - 4, size=length - 1, p=probs))
    label = int(rng.randint(2))
    split = length // 2 if label == 0 else length // 3
    segment = [0] * split + [1] * (length - split)
    num_pred = rng.randint(1, predictions + 1)
    positions = sorted(rng.choice(np.arange(1, length), size=num_pred, replace=False))
    masked_ids = [ids[p] for p in positions]
    for p in positions:
      ids[p] = 3
    pad = seq_length - length
    pad_pred = predictions - num_pred
    weights = [1.0] * num_pred + [0.0] * pad_pred
    if nan_weights:
      weights = [float("nan")] * predictions
    out.append(features_lib.serialize_pretraining_example(
        ids + [0] * pad, [1] * length + [0] * pad, segment + [0] * pad,
        list(positions) + [0] * pad_pred, masked_ids + [0] * pad_pred, weights, label))
  return out


def write_tfrecord(path, records, manifest=True, compression="", seq_length=SEQ_LENGTH,
                   predictions=PREDICTIONS):
  """Writes `records` to `path` (optionally GZIP) with a manifest like create_pretraining_data's."""
  import tensorflow as tf
  with tf.io.TFRecordWriter(path, options=tf.io.TFRecordOptions(compression_type=compression)) as w:
    for r in records:
      w.write(r)
  if manifest:
    features_lib.write_manifest(path, {
        "tool": "bert_tf.create_pretraining_data", "version": 1, "max_seq_length": seq_length,
        "max_predictions_per_seq": predictions, "num_instances": len(records),
        "compression": compression, "vocab_sha256": "", "vocab_size": VOCAB_SIZE,
        "do_lower_case": True, "do_whole_word_mask": False, "flags": {}})
  return path
