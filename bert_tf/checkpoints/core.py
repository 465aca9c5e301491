"""Checkpoints in and out of the Keras BERT: original TF1 checkpoints, bert_tf's own, Hugging Face.

Three formats are understood and told apart automatically:
- original google-research/bert (TF1, name-based): variables `bert/...`, `cls/...`, optionally Adam
  slots (`.../adam_m`, `.../adam_v`) and `global_step`, which are ignored;
- bert_tf (TF2, object-based): `tf.train.Checkpoint(model=..., optimizer=..., global_step=...)` as
  written by run_pretraining / run_classifier;
- Hugging Face BERT directories (`config.json` + `model.safetensors` or `pytorch_model.bin`), read
  and written by `bert_tf.checkpoints.huggingface`.

Both are read with `tf.train.load_checkpoint` into a name -> variable plan that is checked as a whole
before anything is assigned: missing, unexpected or wrongly-shaped variables make one `UsageError`
that lists them, never a silent partial load.

Command line:
  python -m bert_tf.checkpoints --import_tf1=bert_model.ckpt --bert_config_file=bert_config.json \\
      --output_dir=converted/
  python -m bert_tf.checkpoints --export_tf1=run/ --output_dir=exported/
  python -m bert_tf.checkpoints --import_hf=hf_model/ --output_dir=converted/
  python -m bert_tf.checkpoints --export_hf=run/ --vocab_file=vocab.txt --output_dir=hf_model/
"""

import collections
import os
import re

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from bert_tf.configs import BertConfig
from bert_tf.errors import UsageError
from bert_tf.utils.io_utils import atomic_write_text, temp_path_for
from bert_tf.modeling import BertPretrainer
from bert_tf.modeling.models import model_parts
from bert_tf.modeling import tf1_names
from bert_tf.modeling.layers import skip_weight_initialization

TF1_CHECKPOINT_NAME = "bert_model.ckpt"
_OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
_DATA_SUFFIX_RE = re.compile(r"\.data-\d{5}-of-\d{5}$")
_MAX_LISTED = 20


# ----------------------------------------------------------------------------------------------
# Finding and opening a checkpoint.

def resolve_checkpoint(path, what="checkpoint"):
  """Turns what a user passes into a checkpoint prefix.

  Args:
    path: a prefix (`.../bert_model.ckpt`, `.../ckpt-1000`), one of its files (`.index`,
      `.data-00000-of-00001`), or a directory (its latest checkpoint, or its single `*.index`).
    what: how to name `path` in error messages (e.g. "--init_checkpoint=...").
  Returns:
    the prefix, whose `.index` file exists.
  """
  if not path:
    raise UsageError(f"{what}: no checkpoint path given")
  prefix = _DATA_SUFFIX_RE.sub("", path[:-len(".index")] if path.endswith(".index") else path)
  if tf.io.gfile.isdir(prefix):
    latest = tf.train.latest_checkpoint(prefix)
    if latest:
      return latest
    indexes = sorted(tf.io.gfile.glob(os.path.join(prefix, "*.index")))
    if len(indexes) == 1:
      return indexes[0][:-len(".index")]
    if not indexes:
      raise UsageError(f"{what}: directory {path} holds no checkpoint (no *.index file)")
    raise UsageError(f"{what}: directory {path} holds several checkpoints and no 'checkpoint' "
                     f"file saying which is latest; name one: "
                     f"{', '.join(i[:-len('.index')] for i in indexes)}")
  if not tf.io.gfile.exists(prefix + ".index"):
    raise UsageError(f"{what}: no checkpoint at {path} ({prefix}.index not found)")
  return prefix


class _OpenCheckpoint:
  """A checkpoint reader plus what kind of checkpoint it is."""

  def __init__(self, path, what="checkpoint"):
    self.prefix = resolve_checkpoint(path, what)
    self.what = what
    try:
      self.reader = tf.train.load_checkpoint(self.prefix)
    except (tf.errors.OpError, ValueError) as e:
      raise UsageError(f"{what}: cannot read checkpoint {self.prefix}: {e}") from None
    self.shapes = {k: tuple(v) for k, v in self.reader.get_variable_to_shape_map().items()}
    self.graph = self._object_graph() if _OBJECT_GRAPH_KEY in self.shapes else None
    if "bert/embeddings/word_embeddings" in self.shapes:
      self.format = "tf1"
    elif self.graph is not None and self._node(("model",)) is not None:
      self.format = "bert_tf"
    else:
      raise UsageError(
          f"{what}: {self.prefix} is neither an original BERT checkpoint (no "
          f"bert/embeddings/word_embeddings) nor a bert_tf checkpoint (no 'model' object)")

  def _object_graph(self):
    from tensorflow.core.protobuf import trackable_object_graph_pb2
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(self.reader.get_tensor(_OBJECT_GRAPH_KEY))
    return graph

  def _node(self, path):
    """The object-graph node id reached from the root by following `path` (names), or None."""
    node_id = 0
    for name in path:
      children = {c.local_name: c.node_id for c in self.graph.nodes[node_id].children}
      if name not in children:
        return None
      node_id = children[name]
    return node_id

  def variables_under(self, path):
    """{relative path "a/b/c": checkpoint key} of every variable below the object at `path`."""
    start = self._node(path)
    if start is None:
      return {}
    keys, seen = {}, {start}
    queue = collections.deque([(start, ())])
    while queue:
      node_id, rel = queue.popleft()
      node = self.graph.nodes[node_id]
      for attribute in node.attributes:
        if attribute.name == "VARIABLE_VALUE":
          keys["/".join(rel)] = attribute.checkpoint_key
      for child in node.children:
        if child.node_id not in seen:
          seen.add(child.node_id)
          queue.append((child.node_id, rel + (child.local_name,)))
    return keys

  def global_step(self):
    """The training step stored in the checkpoint, or None."""
    if self.format == "tf1":
      key = "global_step" if "global_step" in self.shapes else None
    else:
      key = self.variables_under(("global_step",)).get("")
    return int(self.reader.get_tensor(key)) if key else None


def is_tf1_checkpoint(path):
  """True if `path` (prefix, file or directory) is an original google-research/bert checkpoint."""
  return _OpenCheckpoint(path).format == "tf1"


def checkpoint_contents(path, what=None):
  """What a TF1 or bert_tf checkpoint holds, to rebuild the model it was saved from.

  Returns:
    (prefix, "pretrainer" | "classifier" | "encoder", number of labels of a classifier or None).
  """
  ckpt = _OpenCheckpoint(path, what or path)
  if ckpt.format == "tf1":
    if any(n.startswith("cls/") for n in ckpt.shapes):
      return ckpt.prefix, "pretrainer", None
    if "output_weights" in ckpt.shapes:  # the original run_classifier.py's output layer
      return ckpt.prefix, "classifier", ckpt.shapes["output_weights"][0]
    return ckpt.prefix, "encoder", None
  if ckpt._node(("model", "masked_lm")) is not None:
    return ckpt.prefix, "pretrainer", None
  kernel = ckpt.variables_under(("model", "classifier")).get("kernel")
  if kernel is not None:
    return ckpt.prefix, "classifier", ckpt.shapes[kernel][-1]
  return ckpt.prefix, "encoder", None


# ----------------------------------------------------------------------------------------------
# Plans: checkpoint key -> (variable, transposed?), checked as a whole, then assigned.

_Target = collections.namedtuple("_Target", ["variable", "transpose"])


def _target_shape(target):
  shape = tuple(target.variable.shape)
  return shape[::-1] if target.transpose else shape


def _listing(label, items):
  shown = ", ".join(items[:_MAX_LISTED])
  more = f" ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
  return f"{len(items)} {label}: {shown}{more}"


def _check_plan(ckpt, plan, available, config_notes):
  """Raises one UsageError describing every mismatch between `plan` and `available`.

  Args:
    ckpt: the `_OpenCheckpoint`.
    plan: {name: _Target} that must all be loaded.
    available: {name: shape} the checkpoint offers in the part being loaded.
    config_notes: sentences explaining config disagreements (vocab size, layer count, width).
  """
  missing = [n for n in plan if n not in available]
  unexpected = sorted(n for n in available if n not in plan)
  wrong = [f"{n} (checkpoint {list(available[n])}, model {list(_target_shape(t))})"
           for n, t in plan.items() if n in available and available[n] != _target_shape(t)]
  if not (missing or unexpected or wrong):
    return
  parts = list(config_notes)
  if missing:
    parts.append(_listing("missing from the checkpoint", missing))
  if unexpected:
    parts.append(_listing("unexpected in the checkpoint", unexpected))
  if wrong:
    parts.append(_listing("with the wrong shape", wrong))
  where = ckpt.what if ckpt.what == ckpt.prefix else f"{ckpt.what}: checkpoint {ckpt.prefix}"
  raise UsageError(f"{where} does not fit the model: " + "; ".join(parts))


def _assign(ckpt, plan, keys=None):
  """Copies checkpoint values into the planned variables (keys maps plan names to tensor keys)."""
  for name, target in plan.items():
    value = ckpt.reader.get_tensor(keys[name] if keys else name)
    if target.transpose:
      value = np.transpose(value)
    target.variable.assign(np.asarray(value, dtype=target.variable.dtype))


def _config_notes(config, config_source, vocab_shape, num_layers):
  """Plain sentences for the usual cause of a mismatch: a config that is not the checkpoint's."""
  notes = []
  if vocab_shape is not None:
    if vocab_shape[0] != config.vocab_size:
      notes.append(f"the checkpoint has vocab_size {vocab_shape[0]} but {config_source} says "
                   f"vocab_size={config.vocab_size}")
    if len(vocab_shape) > 1 and vocab_shape[1] != config.hidden_size:
      notes.append(f"the checkpoint has hidden_size {vocab_shape[1]} but {config_source} says "
                   f"hidden_size={config.hidden_size}")
  if num_layers != config.num_hidden_layers:
    notes.append(f"the checkpoint has {num_layers} layers but {config_source} says "
                 f"num_hidden_layers={config.num_hidden_layers}")
  return notes




# ----------------------------------------------------------------------------------------------
# Original TF1 checkpoints.

def _load_tf1(ckpt, model, config_source, require_heads):
  encoder, pretrainer, classifier = model_parts(model)
  weights = {n: s for n, s in ckpt.shapes.items() if not tf1_names.is_optimizer_state(n)}
  plan = {n: _Target(v, False) for n, v in tf1_names.encoder_variables(encoder).items()}
  scope = {n: s for n, s in weights.items() if n.startswith("bert/")}
  loaded = ["encoder"]

  if pretrainer is not None:
    has_heads = any(n.startswith("cls/") for n in weights)
    if has_heads or require_heads:
      plan.update({n: _Target(v, False)
                   for n, v in tf1_names.pretraining_head_variables(pretrainer).items()})
      scope = weights
      loaded.append("pretraining heads")
    else:
      logging.warning("%s has no cls/ variables: loading the encoder only; the pretraining heads "
                      "keep their fresh initial values", ckpt.prefix)
  elif classifier is not None:
    head = {n: _Target(getattr(classifier.classifier, attr), transpose)
            for n, (attr, transpose) in tf1_names.CLASSIFIER_OUTPUT.items()}
    if all(n in weights and weights[n] == _target_shape(t) for n, t in head.items()):
      plan.update(head)
      scope = dict(scope, **{n: weights[n] for n in head})
      loaded.append("classifier output layer")

  config = encoder.bert_config
  notes = _config_notes(config, config_source, weights.get("bert/embeddings/word_embeddings"),
                        tf1_names.layer_count(weights))
  _check_plan(ckpt, plan, scope, notes)
  _assign(ckpt, plan)
  return loaded


def load_google_checkpoint(checkpoint_path, bert_config_file):
  """Builds a `BertPretrainer` holding an original google-research/bert checkpoint.

  Every `bert/...` and `cls/...` variable must be present with the config's shapes and nothing else
  may be there (Adam slots and `global_step` are ignored).

  Args:
    checkpoint_path: the TF1 checkpoint (prefix such as `.../bert_model.ckpt`, a file of it, or its
      directory).
    bert_config_file: its `bert_config.json`.
  Returns:
    a `BertPretrainer` whose outputs match the original model's.
  """
  return _pretrainer_from_tf1(_OpenCheckpoint(checkpoint_path, checkpoint_path), bert_config_file)


def _pretrainer_from_tf1(ckpt, bert_config_file):
  config = BertConfig.from_json_file(bert_config_file)
  if ckpt.format != "tf1":
    raise UsageError(f"{ckpt.what}: is a bert_tf checkpoint, not an original TF1 one; "
                     f"use init_from_checkpoint (or --init_checkpoint) for it")
  with skip_weight_initialization():  # every weight is overwritten below
    pretrainer = BertPretrainer(config)
  _load_tf1(ckpt, pretrainer, bert_config_file, require_heads=True)
  return pretrainer


# ----------------------------------------------------------------------------------------------
# bert_tf checkpoints.

def _model_variables(root):
  """{path "a/b/c": variable} for every variable reachable from `root` by checkpoint edges."""
  view = tf.train.TrackableView(root)
  found, seen = {}, {id(root)}
  queue = collections.deque([(root, ())])
  while queue:
    obj, rel = queue.popleft()
    for name, child in view.children(obj).items():
      if id(child) in seen:
        continue
      seen.add(id(child))
      if isinstance(child, (tf.Variable, keras.Variable)):
        found["/".join(rel + (name,))] = child
      else:
        queue.append((child, rel + (name,)))
  return found


def _load_part(ckpt, ckpt_path, module):
  """Plans loading `module`'s variables from the checkpoint object at `ckpt_path` (names).

  Returns:
    (plan {name: _Target}, keys {name: checkpoint key}, available {name: shape}), with names
    relative to the checkpoint's `model` object.
  """
  keys = ckpt.variables_under(ckpt_path)
  prefix = "/".join(ckpt_path[1:])
  prefix = prefix + "/" if prefix else ""
  plan = {prefix + n: _Target(v, False) for n, v in _model_variables(module).items()}
  keys = {prefix + n: k for n, k in keys.items()}
  available = {n: ckpt.shapes[k] for n, k in keys.items()}
  return plan, keys, available


def _load_bert_tf(ckpt, model, config_source, require_heads):
  encoder, pretrainer, classifier = model_parts(model)
  model_node = ("model",)
  # A checkpoint of a pretrainer or classifier keeps the encoder under model/encoder; one saved
  # from a bare BertEncoder has it at model/.
  has_encoder_child = ckpt._node(("model", "encoder")) is not None
  encoder_node = model_node + ("encoder",) if has_encoder_child else model_node
  plan, keys, available = _load_part(ckpt, encoder_node, encoder)
  loaded = ["encoder"]

  if pretrainer is not None:
    has_heads = ckpt._node(("model", "masked_lm")) is not None or ckpt._node(
        ("model", "next_sentence")) is not None
    if has_heads or require_heads:
      plan, keys, available = _load_part(ckpt, model_node, pretrainer)
      loaded.append("pretraining heads")
    else:
      logging.warning("%s has no pretraining heads: loading the encoder only", ckpt.prefix)
  elif classifier is not None and ckpt._node(("model", "classifier")) is not None:
    head_plan, head_keys, head_available = _load_part(ckpt, ("model", "classifier"),
                                                      classifier.classifier)
    if all(head_available.get(n) == _target_shape(t) for n, t in head_plan.items()):
      plan.update(head_plan)
      keys.update(head_keys)
      available.update(head_available)
      loaded.append("classifier output layer")
    else:
      logging.info("%s: classifier output layer has other shapes (another task?); not loaded",
                   ckpt.prefix)

  enc_prefix = "encoder/" if encoder_node != model_node else ""
  vocab_key = keys.get(enc_prefix + "embeddings/word_embeddings")
  layers = {m.group(1) for m in (re.match(re.escape(enc_prefix) + r"layer_(\d+)/", n)
                                 for n in available) if m}
  notes = _config_notes(encoder.bert_config, config_source,
                        ckpt.shapes[vocab_key] if vocab_key else None, len(layers))
  _check_plan(ckpt, plan, available, notes)
  _assign(ckpt, plan, keys)
  return loaded


# ----------------------------------------------------------------------------------------------
# Either format.

def init_from_checkpoint(model, path, *, require_heads=False, strict=False, config_source=None):
  """Loads an original TF1 checkpoint, a bert_tf one or a Hugging Face BERT directory (detected
  automatically) into `model`.

  What applies is loaded: into a `BertPretrainer` the encoder and both pretraining heads (only the
  encoder, with a warning, if the checkpoint has no heads at all); into a `BertClassifier` the encoder,
  plus the output layer if the checkpoint has one of the same shape (a fine-tuned checkpoint of the
  same task); into a `BertEncoder` the encoder. Optimizer state is never loaded. A Hugging Face
  directory may also lack the pooler or one head: those keep their fresh values, named in one
  warning (see `huggingface.init_from_hf`).

  Args:
    model: a built `BertPretrainer`, `BertClassifier` or `BertEncoder`.
    path: checkpoint prefix, one of its files, or a directory (latest checkpoint, or a Hugging Face
      model).
    require_heads: for a pretrainer, fail instead of loading the encoder only.
    strict: fail instead of leaving any part of the model (pooler, heads) at fresh values
      (`--strict_checkpoint`); implies `require_heads`.
    config_source: how to name the model's config in error messages.
  Returns:
    dict with `format` ("tf1", "bert_tf" or "huggingface"), `checkpoint` (the prefix or weight
    file) and `loaded` (part names).
  """
  from bert_tf.checkpoints import huggingface
  source = config_source or "the model's config"
  if huggingface.is_hf_directory(path):
    info = huggingface.init_from_hf(model, path, strict=strict, config_source=source)
    logging.info("Loaded %s from Hugging Face checkpoint %s", ", ".join(info["loaded"]),
                 info["checkpoint"])
    return info
  require_heads = require_heads or strict
  ckpt = _OpenCheckpoint(path, path)
  if ckpt.format == "tf1":
    loaded = _load_tf1(ckpt, model, source, require_heads)
  else:
    loaded = _load_bert_tf(ckpt, model, source, require_heads)
  logging.info("Loaded %s from %s checkpoint %s", ", ".join(loaded), ckpt.format, ckpt.prefix)
  return {"format": ckpt.format, "checkpoint": ckpt.prefix, "loaded": loaded}


def export_tf1_checkpoint(pretrainer, output_dir, config=None, global_step=None):
  """Writes a pretrainer as an original-format checkpoint: `bert_model.ckpt.*`, `checkpoint`,
  `bert_config.json` in `output_dir`.

  The files only get their final names once completely written.

  Args:
    pretrainer: a `BertPretrainer`.
    output_dir: directory to write (created if needed).
    config: the `BertConfig` to write (default: the pretrainer's).
    global_step: optional step, stored as the int64 `global_step` variable like the original.
  Returns:
    the checkpoint prefix (`output_dir/bert_model.ckpt`).
  """
  config = config or pretrainer.bert_config
  tf.io.gfile.makedirs(output_dir)
  tensors = {name: tf.convert_to_tensor(variable.value)
             for name, variable in tf1_names.pretrainer_variables(pretrainer).items()}
  if global_step is not None:
    tensors["global_step"] = tf.constant(global_step, tf.int64)
  names = sorted(tensors)
  prefix = os.path.join(output_dir, TF1_CHECKPOINT_NAME)
  tmp_prefix = temp_path_for(prefix)
  with tf.device("CPU:0"):
    tf.raw_ops.SaveV2(prefix=tmp_prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tensors[n] for n in names])
  # Data first, index last: a prefix only looks complete once both are in place.
  for suffix in (".data-00000-of-00001", ".index"):
    tf.io.gfile.rename(tmp_prefix + suffix, prefix + suffix, overwrite=True)
  config.to_json_file(os.path.join(output_dir, "bert_config.json"))
  atomic_write_text(os.path.join(output_dir, "checkpoint"),
                    f'model_checkpoint_path: "{TF1_CHECKPOINT_NAME}"\n'
                    f'all_model_checkpoint_paths: "{TF1_CHECKPOINT_NAME}"\n')
  return prefix


def save_bert_tf_checkpoint(pretrainer, output_dir, global_step=0):
  """Writes a pretrainer in bert_tf's layout (`tf.train.Checkpoint(model=..., global_step=...)`,
  prefix `ckpt`) plus `bert_config.json`; returns the checkpoint path."""
  step = tf.Variable(global_step, dtype=tf.int64, trainable=False)
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=pretrainer, global_step=step),
                                       output_dir, max_to_keep=1, checkpoint_name="ckpt")
  path = manager.save(checkpoint_number=global_step)
  pretrainer.bert_config.to_json_file(os.path.join(output_dir, "bert_config.json"))
  return path


def config_file_for(prefix, config_file, what):
  if config_file:
    return config_file
  beside = os.path.join(os.path.dirname(prefix), "bert_config.json")
  if tf.io.gfile.exists(beside):
    return beside
  raise UsageError(f"{what}: no bert_config.json next to checkpoint {prefix}; pass "
                   f"--bert_config_file")


def _refuse_existing(output_dir, pattern, what):
  if tf.io.gfile.glob(os.path.join(output_dir, pattern)):
    raise UsageError(f"--output_dir={output_dir} already holds {what}; choose an empty directory")

def import_tf1(checkpoint_path, bert_config_file, output_dir, what=None):
  """Converts an original TF1 checkpoint into a bert_tf checkpoint in `output_dir`; returns its path.

  Args:
    checkpoint_path: the TF1 checkpoint (prefix, file or directory).
    bert_config_file: its config, or None for the `bert_config.json` beside it.
    output_dir: where to write `ckpt-<global_step>` and `bert_config.json`; must hold no checkpoint.
    what: how to name the checkpoint in errors (default: the path).
  """
  what = what or checkpoint_path
  ckpt = _OpenCheckpoint(checkpoint_path, what)
  if ckpt.format != "tf1":
    raise UsageError(f"{what}: is already a bert_tf checkpoint, not an original TF1 one")
  _refuse_existing(output_dir, "ckpt-*.index", "a bert_tf checkpoint")
  config_file = config_file_for(ckpt.prefix, bert_config_file, what)
  pretrainer = _pretrainer_from_tf1(ckpt, config_file)
  return save_bert_tf_checkpoint(pretrainer, output_dir, ckpt.global_step() or 0)

def export_tf1(checkpoint_path, bert_config_file, output_dir, what=None):
  """Writes a bert_tf (or TF1) pretraining checkpoint as an original TF1 one; returns its prefix.

  Args:
    checkpoint_path: the checkpoint (prefix, file or directory such as a run_pretraining output).
    bert_config_file: its config, or None for the `bert_config.json` beside it.
    output_dir: where to write `bert_model.ckpt.*`, `checkpoint`, `bert_config.json`; must not
      already hold a `bert_model.ckpt`.
    what: how to name the checkpoint in errors (default: the path).
  """
  what = what or checkpoint_path
  ckpt = _OpenCheckpoint(checkpoint_path, what)
  _refuse_existing(output_dir, TF1_CHECKPOINT_NAME + ".index", "a TF1 checkpoint")
  config_file = config_file_for(ckpt.prefix, bert_config_file, what)
  config = BertConfig.from_json_file(config_file)
  with skip_weight_initialization():  # every weight is overwritten below
    pretrainer = BertPretrainer(config)
  init_from_checkpoint(pretrainer, ckpt.prefix, require_heads=True, config_source=config_file)
  return export_tf1_checkpoint(pretrainer, output_dir, config, ckpt.global_step())
