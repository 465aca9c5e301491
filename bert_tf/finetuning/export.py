"""Exports a fine-tuned classifier as a SavedModel that takes raw strings.

The SavedModel holds the WordPiece tokenizer (its vocabulary as an asset), the packing of
`[CLS] a [SEP] b [SEP]` and the classifier, so serving needs no Python preprocessing:

    loaded = tf.saved_model.load(export_dir)
    out = loaded.signatures["serving_default"](text_a=tf.constant(["a fine film"]))
    out["probabilities"]   # float32 [batch, num_labels]
    out["label"]           # string  [batch], the most probable label
    out["label_id"]        # int32   [batch]

Pair tasks take `text_a` and `text_b`. Regression tasks (STS-B) return `predictions` [batch].
`assets.extra/labels.json` records the labels, task and packing options.
"""

import json
import os
import shutil

import tensorflow as tf

from bert_tf.utils.io_utils import temp_path_for

SERVING_SIGNATURE = "serving_default"


class ClassifierServingModule(tf.Module):
  """Raw strings in, probabilities and labels out.

  Args:
    model: a `BertClassifier` (called with training=False).
    encoder: a `classification.TextEncoder` (in-graph tokenizer + packing).
    labels: label strings in id order (empty for regression).
    is_regression: one real-valued output.
    has_text_b: the serving function takes `text_b` too.
  """

  def __init__(self, model, encoder, labels, is_regression, has_text_b):
    super().__init__(name="bert_classifier_serving")
    self.model = model
    self.tokenizer = encoder.tokenizer  # tracked, so its vocabulary tables are saved
    self._encoder = encoder
    self._is_regression = bool(is_regression)
    self._label_names = tf.constant(list(labels) if labels else [""], tf.string)
    text = lambda name: tf.TensorSpec([None], tf.string, name=name)  # noqa: E731
    if has_text_b:
      self.serve = tf.function(self._serve_pair, input_signature=[text("text_a"), text("text_b")])
    else:
      self.serve = tf.function(self._serve_single, input_signature=[text("text_a")])

  def _serve_single(self, text_a):
    return self._outputs(self._encoder(text_a))

  def _serve_pair(self, text_a, text_b):
    return self._outputs(self._encoder(text_a, text_b))

  def _outputs(self, features):
    logits = tf.cast(self.model(features, training=False), tf.float32)  # [batch, num_labels]
    if self._is_regression:
      return {"predictions": logits[:, 0]}  # [batch]
    label_id = tf.argmax(logits, axis=-1, output_type=tf.int32)  # [batch]
    return {
        "probabilities": tf.nn.softmax(logits, axis=-1),  # [batch, num_labels]
        "label_id": label_id,
        "label": tf.gather(self._label_names, label_id),  # [batch]
    }


def float32_copy(model):
  """A float32 twin of a (possibly mixed-precision, distributed) fine-tuned model (a
  `BertClassifier`, or any model whose `from_config(get_config())` rebuilds it), same weights."""
  import keras

  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy("float32")
  try:
    twin = type(model).from_config(model.get_config())
  finally:
    keras.mixed_precision.set_global_policy(previous)
  dummy = {k: tf.zeros([1, 2], tf.int32) for k in ("input_ids", "input_mask", "segment_ids")}
  twin.encoder.skip_padding = model.encoder.skip_padding
  twin(dummy, training=False)
  twin.set_weights(model.get_weights())
  return twin


def export_classifier(export_dir, model, encoder, labels, is_regression, has_text_b, metadata=None):
  """Writes the SavedModel to `export_dir` (replacing what is there only once it is complete).

  Args:
    export_dir: destination folder.
    model: the trained `BertClassifier`.
    encoder: the `classification.TextEncoder` used for training.
    labels: label strings in id order.
    is_regression, has_text_b: see `ClassifierServingModule`.
    metadata: extra JSON-serialisable facts stored in assets.extra/labels.json.

  Returns:
    export_dir.
  """
  module = ClassifierServingModule(float32_copy(model), encoder, labels, is_regression, has_text_b)
  info = dict(metadata or {}, labels=list(labels), is_regression=bool(is_regression),
              has_text_b=bool(has_text_b), max_seq_length=encoder.max_seq_length,
              signature=SERVING_SIGNATURE,
              inputs=["text_a", "text_b"] if has_text_b else ["text_a"])
  return save_serving_module(export_dir, module, info)


def save_serving_module(export_dir, module, info):
  """Saves `module` (its `serve` function as the serving signature) with `info` as
  assets.extra/labels.json, into a temporary folder renamed to `export_dir` once complete."""
  export_dir = export_dir.rstrip("/")
  tmp = temp_path_for(export_dir)
  try:
    tf.saved_model.save(module, tmp, signatures={SERVING_SIGNATURE: module.serve})
    os.makedirs(os.path.join(tmp, "assets.extra"), exist_ok=True)
    with open(os.path.join(tmp, "assets.extra", "labels.json"), "w", encoding="utf-8") as f:
      json.dump(info, f, indent=2)
    _swap_into_place(tmp, export_dir)
  finally:
    if os.path.exists(tmp):
      shutil.rmtree(tmp, ignore_errors=True)
  return export_dir


def _swap_into_place(tmp, final):
  """Renames folder `tmp` to `final`; an existing `final` is moved aside first, then deleted."""
  parent = os.path.dirname(os.path.abspath(final))
  os.makedirs(parent, exist_ok=True)
  old = None
  if os.path.exists(final):
    old = temp_path_for(final) + ".old"
    os.replace(final, old)
  os.replace(tmp, final)
  if old:
    shutil.rmtree(old, ignore_errors=True)
