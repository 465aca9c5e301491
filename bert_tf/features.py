"""The TFRecord schemas: one definition used by every writer and reader.

Pretraining records follow google-research/bert exactly:

| feature                | dtype   | shape                       |
|------------------------|---------|-----------------------------|
| input_ids              | int64   | [max_seq_length]            |
| input_mask             | int64   | [max_seq_length]            |
| segment_ids            | int64   | [max_seq_length]            |
| masked_lm_positions    | int64   | [max_predictions_per_seq]   |
| masked_lm_ids          | int64   | [max_predictions_per_seq]   |
| masked_lm_weights      | float32 | [max_predictions_per_seq]   |
| next_sentence_labels   | int64   | [1]  (1 = B is a random segment) |

Beside each TFRecord file a small JSON manifest (`<file>.manifest.json`) records the flags, the
vocab hash and the number of instances; readers use it to check compatibility.
"""

import json
import os

from bert_tf.utils import io_utils

PRETRAINING_INT_FEATURES = ("input_ids", "input_mask", "segment_ids")
PRETRAINING_PREDICTION_FEATURES = ("masked_lm_positions", "masked_lm_ids")
PRETRAINING_FEATURE_NAMES = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions",
                             "masked_lm_ids", "masked_lm_weights", "next_sentence_labels")
MANIFEST_SUFFIX = ".manifest.json"


def pretraining_feature_spec(max_seq_length, max_predictions_per_seq):
  """`tf.io.parse_example` spec of a pretraining record."""
  import tensorflow as tf
  spec = {}
  for name in PRETRAINING_INT_FEATURES:
    spec[name] = tf.io.FixedLenFeature([max_seq_length], tf.int64)
  for name in PRETRAINING_PREDICTION_FEATURES:
    spec[name] = tf.io.FixedLenFeature([max_predictions_per_seq], tf.int64)
  spec["masked_lm_weights"] = tf.io.FixedLenFeature([max_predictions_per_seq], tf.float32)
  spec["next_sentence_labels"] = tf.io.FixedLenFeature([1], tf.int64)
  return spec


def parse_pretraining_batch(serialized, max_seq_length, max_predictions_per_seq, int_dtype=None):
  """Parses a batch of serialized records; int64 features are cast to int32 (TPU/GPU friendly)."""
  import tensorflow as tf
  int_dtype = int_dtype or tf.int32
  parsed = tf.io.parse_example(serialized, pretraining_feature_spec(max_seq_length, max_predictions_per_seq))
  return {k: (tf.cast(v, int_dtype) if v.dtype == tf.int64 else v) for k, v in parsed.items()}


def serialize_pretraining_example(input_ids, input_mask, segment_ids, masked_lm_positions,
                                  masked_lm_ids, masked_lm_weights, next_sentence_label):
  """Builds the serialized `tf.train.Example` of one already padded instance."""
  import tensorflow as tf

  def ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))

  def floats(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))

  feature = {
      "input_ids": ints(input_ids),
      "input_mask": ints(input_mask),
      "segment_ids": ints(segment_ids),
      "masked_lm_positions": ints(masked_lm_positions),
      "masked_lm_ids": ints(masked_lm_ids),
      "masked_lm_weights": floats(masked_lm_weights),
      "next_sentence_labels": ints([next_sentence_label]),
  }
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def decode_pretraining_example(serialized):
  """Decodes one serialized record into a dict of Python lists (for tests and inspection)."""
  import tensorflow as tf
  example = tf.train.Example.FromString(serialized)
  out = {}
  for name, feature in example.features.feature.items():
    kind = feature.WhichOneof("kind")
    out[name] = list(getattr(feature, kind).value)
  return out


def manifest_path(tfrecord_path):
  return tfrecord_path + MANIFEST_SUFFIX


def is_manifest(path):
  return path.endswith(MANIFEST_SUFFIX)


def write_manifest(tfrecord_path, manifest):
  """Writes the manifest of `tfrecord_path` atomically (sorted keys, stable bytes)."""
  from bert_tf.utils.io_utils import atomic_write_text
  atomic_write_text(manifest_path(tfrecord_path), json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def read_manifest(tfrecord_path):
  """Returns the manifest dict of `tfrecord_path`, or None when the file has none."""
  path = manifest_path(tfrecord_path)
  if io_utils.is_remote(path):
    import tensorflow as tf
    if not tf.io.gfile.exists(path):
      return None
    with tf.io.gfile.GFile(path, "r") as f:
      return json.loads(f.read())
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)
