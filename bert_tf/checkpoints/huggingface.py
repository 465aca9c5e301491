"""Hugging Face BERT directories in and out of the Keras BERT.

A Hugging Face ("HF") BERT directory holds `config.json`, the weights (`model.safetensors`, a
sharded `model.safetensors.index.json`, or `pytorch_model.bin`) and the tokenizer (`vocab.txt`
and/or `tokenizer.json`, `tokenizer_config.json`). This module

- reads `config.json` into a `BertConfig` (`hidden_act` "gelu" is the exact erf GELU there, our
  "gelu_exact"; "gelu_new"/"gelu_pytorch_tanh" are the tanh approximation, our "gelu");
- loads the weights of the `BertModel`, `BertForPreTraining`, `BertForMaskedLM` and
  `BertForSequenceClassification` layouts (with or without the `bert.` prefix) into a
  `BertEncoder`, `BertPretrainer` or `BertClassifier` (`init_from_hf`, which
  `bert_tf.checkpoints.init_from_checkpoint` calls for such a directory);
- writes any of those models back as an HF directory (`save_hf_directory`, `export_hf`).

The HF names follow from the original TF1 names (`bert_tf.modeling.tf1_names`): `/` becomes `.`,
`layer_N` becomes `layer.N`, LayerNorm `gamma`/`beta` become `weight`/`bias`, and dense kernels
become transposed `weight`s (PyTorch keeps `[out, in]`). Transposes are exact, so HF -> bert_tf ->
HF reproduces every tensor bit for bit.

`safetensors` files are read with the `safetensors` package; `pytorch_model.bin` (the zip format of
torch >= 1.6) is read without torch by a restricted unpickler that only rebuilds plain tensors.
"""

import collections
import dataclasses
import json
import os
import pickle
import re
import zipfile

import numpy as np
import tensorflow as tf
from absl import logging

from bert_tf.configs import BertConfig
from bert_tf.errors import UsageError
from bert_tf.modeling import tf1_names
from bert_tf.utils.io_utils import atomic_output, atomic_write_text

CONFIG_NAME = "config.json"
SAFETENSORS_NAME = "model.safetensors"
SAFETENSORS_INDEX_NAME = "model.safetensors.index.json"
PYTORCH_NAME = "pytorch_model.bin"
VOCAB_NAME = "vocab.txt"
TOKENIZER_NAME = "tokenizer.json"
TOKENIZER_CONFIG_NAME = "tokenizer_config.json"
_WEIGHT_NAMES = (SAFETENSORS_NAME, SAFETENSORS_INDEX_NAME, PYTORCH_NAME)

# HF hidden_act -> BertConfig.hidden_act. HF's "gelu" is the exact (erf) GELU; the three tanh
# variants compute the same formula as the original BERT's (our "gelu").
_ACT_FROM_HF = {"gelu": "gelu_exact", "gelu_python": "gelu_exact", "gelu_new": "gelu",
                "gelu_pytorch_tanh": "gelu", "gelu_fast": "gelu", "relu": "relu", "tanh": "tanh",
                "linear": "linear"}
_ACT_TO_HF = {"gelu_exact": "gelu", "gelu": "gelu_new", "relu": "relu", "tanh": "tanh",
              "linear": "linear"}
# config.json keys -> BertConfig fields, with the defaults of transformers' BertConfig.
_HF_DEFAULTS = {"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
                "num_attention_heads": 12, "intermediate_size": 3072, "hidden_act": "gelu",
                "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
                "max_position_embeddings": 512, "type_vocab_size": 2, "initializer_range": 0.02,
                "layer_norm_eps": 1e-12}
_POSITION_IDS = "embeddings.position_ids"   # a buffer (arange), not a weight
_DECODER_WEIGHT = "cls.predictions.decoder.weight"   # tied to the word embeddings
_DECODER_BIAS = "cls.predictions.decoder.bias"       # tied to cls.predictions.bias
_MAX_LISTED = 12


# ----------------------------------------------------------------------------------------------
# Recognising a directory, reading config and tokenizer files.

def is_hf_directory(path):
  """True if `path` is a local directory that looks like an HF model: a `config.json` or HF weight
  file, and no TensorFlow checkpoint (`*.index`)."""
  if not path or not os.path.isdir(path):
    return False
  names = set(os.listdir(path))
  if any(n.endswith(".index") for n in names):
    return False
  return CONFIG_NAME in names or any(n in names for n in _WEIGHT_NAMES)


def read_json(path):
  try:
    with open(path, encoding="utf-8") as f:
      values = json.load(f)
  except OSError as e:
    raise UsageError(f"{path}: cannot be read ({e.strerror})") from None
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise UsageError(f"{path}: not valid JSON ({e})") from None
  if not isinstance(values, dict):
    raise UsageError(f"{path}: expected a JSON object")
  return values


def read_hf_config_dict(directory):
  """The raw `config.json` of an HF directory, checked to describe a plain BERT encoder."""
  path = os.path.join(directory, CONFIG_NAME)
  if not os.path.isfile(path):
    raise UsageError(f"{directory}: no {CONFIG_NAME} (a Hugging Face BERT directory needs "
                     f"{CONFIG_NAME} and {SAFETENSORS_NAME} or {PYTORCH_NAME})")
  values = read_json(path)
  model_type = values.get("model_type")
  architectures = values.get("architectures") or []
  if model_type is None and architectures and all(str(a).startswith("Bert") for a in architectures):
    model_type = "bert"  # configs written before model_type existed
  if model_type != "bert":
    raise UsageError(f"{path}: model_type is {model_type!r}, not 'bert'; only BERT checkpoints "
                     f"can be imported")
  act = values.get("hidden_act", "gelu")
  if not isinstance(act, str) or act not in _ACT_FROM_HF:
    raise UsageError(f"{path}: hidden_act {act!r} is not supported (one of "
                     f"{', '.join(_ACT_FROM_HF)})")
  position_type = values.get("position_embedding_type", "absolute")
  if position_type != "absolute":
    raise UsageError(f"{path}: position_embedding_type {position_type!r} is not supported "
                     f"(only 'absolute', as in the original BERT)")
  for key in ("is_decoder", "add_cross_attention"):
    if values.get(key):
      raise UsageError(f"{path}: {key} is true; only the BERT encoder can be imported")
  return values


def read_hf_config(directory):
  """The `BertConfig` of an HF BERT directory's `config.json` (transformers' defaults for absent
  keys; `hidden_act` translated, `layer_norm_eps` kept)."""
  values = read_hf_config_dict(directory)
  fields = {k: values.get(k, default) for k, default in _HF_DEFAULTS.items()}
  fields["hidden_act"] = _ACT_FROM_HF[fields["hidden_act"]]
  return BertConfig.from_dict(fields, source=os.path.join(directory, CONFIG_NAME))


def hf_config_dict(config, architecture, num_labels=None, labels=None):
  """The `config.json` contents of an HF BERT for `config` (a `BertConfig`)."""
  if config.hidden_act not in _ACT_TO_HF:
    raise UsageError(f"hidden_act {config.hidden_act!r} has no Hugging Face equivalent")
  values = {"architectures": [architecture], "model_type": "bert"}
  for key in _HF_DEFAULTS:
    values[key] = getattr(config, key)
  values["hidden_act"] = _ACT_TO_HF[config.hidden_act]
  values.update(pad_token_id=0, position_embedding_type="absolute", use_cache=True)
  if num_labels is not None:
    names = list(labels) if labels and len(labels) == num_labels else [
        f"LABEL_{i}" for i in range(num_labels)]
    values["id2label"] = {str(i): str(n) for i, n in enumerate(names)}
    values["label2id"] = {str(n): i for i, n in enumerate(names)}
    if num_labels == 1:
      values["problem_type"] = "regression"
  return values


def _tokenizer_json_vocab(path):
  """The WordPiece tokens of a `tokenizer.json`, in id order."""
  values = read_json(path)
  model = values.get("model") or {}
  if model.get("type") != "WordPiece" or not isinstance(model.get("vocab"), dict):
    raise UsageError(f"{path}: not a WordPiece tokenizer (model.type is {model.get('type')!r})")
  prefix = model.get("continuing_subword_prefix", "##")
  if prefix != "##":
    raise UsageError(f"{path}: continuing_subword_prefix is {prefix!r}; BERT's WordPiece uses '##'")
  by_id = {}
  for token, index in model["vocab"].items():
    by_id.setdefault(index, token)
  for added in values.get("added_tokens") or []:
    by_id.setdefault(added.get("id"), added.get("content"))
  if sorted(by_id) != list(range(len(by_id))):
    raise UsageError(f"{path}: the vocab ids are not 0..{len(by_id) - 1} without gaps")
  return [by_id[i] for i in range(len(by_id))]


def hf_vocab(directory):
  """(tokens in id order, the file they came from) of an HF directory: `vocab.txt`, else the
  WordPiece vocab in `tokenizer.json`; (None, None) when it has neither."""
  vocab_txt = os.path.join(directory, VOCAB_NAME)
  if os.path.isfile(vocab_txt):
    from bert_tf.text.vocab_file import load_vocab
    vocab = load_vocab(vocab_txt)
    tokens = [None] * (max(vocab.values()) + 1 if vocab else 0)
    for token, index in vocab.items():
      tokens[index] = token
    return tokens, vocab_txt
  tokenizer_json = os.path.join(directory, TOKENIZER_NAME)
  if os.path.isfile(tokenizer_json):
    return _tokenizer_json_vocab(tokenizer_json), tokenizer_json
  return None, None


def hf_vocab_file(directory, output_dir=None):
  """A `vocab.txt` path for an HF directory: its own, or one converted from its `tokenizer.json`.

  The converted vocab is written into `output_dir`, or, when that is None, into a private
  temporary folder (removed when the process exits): a run that has not yet checked all of its
  inputs must not write into its --output_dir; `keep_converted_vocab` copies the vocab there once
  the run starts writing. Raises UsageError when the directory has no vocab.
  """
  tokens, source = hf_vocab(directory)
  if tokens is None:
    raise UsageError(f"{directory}: no {VOCAB_NAME} or {TOKENIZER_NAME}; pass --vocab_file")
  if source.endswith(VOCAB_NAME):
    return source
  if output_dir is None:
    import atexit
    import shutil
    import tempfile
    folder = tempfile.mkdtemp(prefix="bert_tf_vocab_")
    atexit.register(shutil.rmtree, folder, True)
    path = os.path.join(folder, VOCAB_NAME)
    _converted_vocabs[path] = source
  else:
    tf.io.gfile.makedirs(output_dir)
    path = os.path.join(output_dir, VOCAB_NAME)
  atomic_write_text(path, "".join(t + "\n" for t in tokens))
  logging.info("Wrote the vocab of %s to %s", source, path)
  return path


_converted_vocabs = {}  # temporary vocab.txt written by hf_vocab_file -> the tokenizer.json


def keep_converted_vocab(vocab_file, output_dir):
  """Copies a vocab that `hf_vocab_file(directory)` converted into a temporary folder to
  `output_dir/vocab.txt` (atomically: the run's record of the vocab it used) and returns that
  path; any other `vocab_file` is returned as it is, nothing written."""
  source = _converted_vocabs.get(vocab_file)
  if source is None:
    return vocab_file
  path = os.path.join(output_dir, VOCAB_NAME)
  with open(vocab_file, encoding="utf-8") as f:
    atomic_write_text(path, f.read())
  logging.info("Wrote the vocab of %s to %s", source, path)
  return path


def hf_do_lower_case(directory):
  """`do_lower_case` of an HF directory's tokenizer (`tokenizer_config.json`, else the
  `tokenizer.json` normalizer), or None when neither says.

  Returns:
    (value or None, the file that says it or None).
  """
  config_path = os.path.join(directory, TOKENIZER_CONFIG_NAME)
  if os.path.isfile(config_path):
    value = read_json(config_path).get("do_lower_case")
    if isinstance(value, bool):
      return value, config_path
  tokenizer_path = os.path.join(directory, TOKENIZER_NAME)
  if os.path.isfile(tokenizer_path):
    normalizer = read_json(tokenizer_path).get("normalizer") or {}
    if normalizer.get("type") == "BertNormalizer" and isinstance(normalizer.get("lowercase"), bool):
      return normalizer["lowercase"], tokenizer_path
  return None, None


def resolve_do_lower_case(do_lower_case, init_checkpoint, flag="--do_lower_case"):
  """The casing to use with `init_checkpoint`: the flag's value, or (when None) the HF tokenizer's
  (True when neither says).

  A value that contradicts the HF tokenizer's own setting is kept, with a warning (the vocab's
  casing is checked again when the tokenizer loads it).
  """
  stated, source = (hf_do_lower_case(init_checkpoint) if is_hf_directory(init_checkpoint)
                    else (None, None))
  if do_lower_case is None:
    if stated is not None:
      logging.info("do_lower_case=%s, from %s", stated, source)
    return True if stated is None else stated
  if stated is not None and stated != do_lower_case:
    logging.warning("%s=%s contradicts %s (do_lower_case=%s): words will be tokenized differently "
                    "than in pretraining; leave %s out to follow the checkpoint",
                    flag, do_lower_case, source, stated, flag)
  return do_lower_case


# ----------------------------------------------------------------------------------------------
# Weight files: safetensors (one file or shards) and torch zip pickles, behind one interface.

class _SafetensorsFiles:
  """name -> tensor over one safetensors file or the shards of an index (memory-mapped).

  Args:
    describe: the file (or index) to name in errors.
    paths_by_name: {tensor name: shard path} of an index; None for the single file `describe`.
  """

  def __init__(self, describe, paths_by_name=None):
    from safetensors import SafetensorError, safe_open
    self.describe = describe
    self._handles, self._file_of, self._shapes = {}, {}, {}
    wanted = set(paths_by_name.values()) if paths_by_name is not None else {describe}
    for path in sorted(wanted):
      try:
        handle = safe_open(path, framework="np")
        self._handles[path] = handle
        for name in handle.keys():
          if paths_by_name is None or paths_by_name.get(name) == path:
            self._file_of[name] = path
            self._shapes[name] = tuple(handle.get_slice(name).get_shape())
      except (SafetensorError, OSError) as e:
        raise UsageError(f"{path}: not a readable safetensors file ({e}); truncated or "
                         f"corrupt? copy or download it again") from None
    if paths_by_name is not None:
      absent = sorted(set(paths_by_name) - set(self._file_of))
      if absent:
        raise UsageError(f"{describe}: {len(absent)} tensors are not in their shards: "
                         f"{_listing(absent)}")

  def shapes(self):
    return dict(self._shapes)

  def get(self, name):
    from safetensors import SafetensorError
    path = self._file_of[name]
    try:
      return self._handles[path].get_tensor(name)
    except (SafetensorError, OSError, TypeError, ValueError) as e:
      raise UsageError(f"{path}: cannot read tensor {name} ({e})") from None


def _safetensors_index(path):
  values = read_json(path)
  weight_map = values.get("weight_map")
  if not isinstance(weight_map, dict) or not weight_map:
    raise UsageError(f"{path}: no weight_map")
  folder = os.path.dirname(path)
  paths = {}
  for name, shard in weight_map.items():
    shard_path = os.path.join(folder, str(shard))
    if not os.path.isfile(shard_path):
      raise UsageError(f"{path}: shard {shard} (of {name}) not found")
    paths[name] = shard_path
  return _SafetensorsFiles(path, paths)


# Storage classes of torch's pickles -> numpy dtypes.
_TORCH_STORAGES = {"FloatStorage": np.float32, "DoubleStorage": np.float64,
                   "HalfStorage": np.float16, "LongStorage": np.int64, "IntStorage": np.int32,
                   "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
                   "BoolStorage": np.bool_, "BFloat16Storage": "bfloat16"}


class _StorageType:
  def __init__(self, name):
    dtype = _TORCH_STORAGES[name]
    if dtype == "bfloat16":
      import ml_dtypes  # a dependency of TensorFlow
      dtype = ml_dtypes.bfloat16
    self.dtype = np.dtype(dtype)


def _rebuild_tensor(storage, offset, size, stride, *unused):
  size, stride = tuple(size), tuple(stride)
  if len(size) != len(stride) or any(s < 0 for s in size + stride) or offset < 0:
    raise pickle.UnpicklingError("malformed tensor")
  last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset - 1
  if last >= storage.size:
    raise pickle.UnpicklingError("tensor reaches past its storage")
  item = storage.itemsize
  view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                         strides=[s * item for s in stride])
  return np.array(view)


def _rebuild_parameter(data, *unused):
  return data


class _TorchStateUnpickler(pickle.Unpickler):
  """Unpickles a torch state dict, allowing nothing but tensors, storages and ordered dicts."""

  _ALLOWED = {("collections", "OrderedDict"): collections.OrderedDict,
              ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
              ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
              ("torch._utils", "_rebuild_parameter"): _rebuild_parameter}

  def __init__(self, file, archive, root):
    super().__init__(file)
    self._archive, self._root, self._storages = archive, root, {}

  def find_class(self, module, name):
    if (module, name) in self._ALLOWED:
      return self._ALLOWED[(module, name)]
    if module == "torch" and name in _TORCH_STORAGES:
      return _StorageType(name)
    raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only tensors are read)")

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)):
      raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
    _, storage_type, key, _, _ = pid
    if key not in self._storages:
      data = self._archive.read(f"{self._root}/data/{key}")
      self._storages[key] = np.frombuffer(data, dtype=storage_type.dtype)
    return self._storages[key]


class _TorchZipFile:
  """name -> tensor of a `pytorch_model.bin` in torch's zip format, read without torch."""

  def __init__(self, path):
    self.describe = path
    if not zipfile.is_zipfile(path):
      raise UsageError(f"{path}: not a zip-format torch file (torch < 1.6 legacy format, or "
                       f"truncated); re-save it with torch >= 1.6 or convert it to safetensors")
    try:
      with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if len(pickles) != 1:
          raise UsageError(f"{path}: expected one */data.pkl in the archive, found {len(pickles)}")
        root = pickles[0][:-len("/data.pkl")]
        order = f"{root}/byteorder"
        if order in archive.namelist() and archive.read(order).strip() != b"little":
          raise UsageError(f"{path}: big-endian tensors are not supported")
        with archive.open(pickles[0]) as f:
          state = _TorchStateUnpickler(f, archive, root).load()
    except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, KeyError, ValueError,
            TypeError, OSError) as e:
      raise UsageError(f"{path}: cannot read the torch state dict ({e})") from None
    if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
      raise UsageError(f"{path}: not a state dict of tensors")
    self._tensors = dict(state)

  def shapes(self):
    return {n: tuple(t.shape) for n, t in self._tensors.items()}

  def get(self, name):
    return self._tensors[name]


def open_hf_weights(directory):
  """The weights of an HF directory: `model.safetensors`, its sharded index, or
  `pytorch_model.bin` (first found). Raises UsageError naming the directory when none exists."""
  for name, opener in ((SAFETENSORS_NAME, _SafetensorsFiles),
                       (SAFETENSORS_INDEX_NAME, _safetensors_index),
                       (PYTORCH_NAME, _TorchZipFile)):
    path = os.path.join(directory, name)
    if os.path.isfile(path):
      return opener(path)
  raise UsageError(f"{directory}: no weights ({', '.join(_WEIGHT_NAMES)})")


# ----------------------------------------------------------------------------------------------
# Names: our variables <-> HF tensor names.

def hf_name_for_tf1(tf1_name):
  """(HF name without the `bert.` prefix, transposed?) of an original TF1 variable name."""
  special = {"cls/predictions/output_bias": "cls.predictions.bias",
             "cls/seq_relationship/output_weights": "cls.seq_relationship.weight",
             "cls/seq_relationship/output_bias": "cls.seq_relationship.bias"}
  if tf1_name in special:
    return special[tf1_name], False
  name = tf1_name[len("bert/"):] if tf1_name.startswith("bert/") else tf1_name
  parts = re.sub(r"layer_(\d+)", r"layer.\1", name).split("/")
  last, transpose = parts[-1], False
  if last == "kernel":
    parts[-1], transpose = "weight", True
  elif last == "gamma":
    parts[-1] = "weight"
  elif last == "beta":
    parts[-1] = "bias"
  elif last.endswith("_embeddings"):
    parts.append("weight")
  return ".".join(parts), transpose


@dataclasses.dataclass
class _Slot:
  variable: object
  transpose: bool
  part: str        # "encoder", "pooler", "masked-LM head", "next-sentence head", "classifier"


def _slots(model):
  """{HF name (no `bert.` prefix for encoder names): _Slot} of a supported model."""
  from bert_tf.modeling.models import model_parts
  encoder, pretrainer, classifier = model_parts(model)
  slots = {}
  for tf1_name, variable in tf1_names.encoder_variables(encoder).items():
    name, transpose = hf_name_for_tf1(tf1_name)
    slots[name] = _Slot(variable, transpose, "pooler" if name.startswith("pooler.") else "encoder")
  if pretrainer is not None:
    for tf1_name, variable in tf1_names.pretraining_head_variables(pretrainer).items():
      name, transpose = hf_name_for_tf1(tf1_name)
      part = "next-sentence head" if "seq_relationship" in name else "masked-LM head"
      slots[name] = _Slot(variable, transpose, part)
  if classifier is not None:
    slots["classifier.weight"] = _Slot(classifier.classifier.kernel, True, "classifier")
    slots["classifier.bias"] = _Slot(classifier.classifier.bias, False, "classifier")
  return slots


_HEAD_PREFIXES = ("cls.", "classifier.")
_ENCODER_PREFIXES = ("embeddings.", "encoder.", "pooler.")


def _layout(shapes, describe):
  """Sorts a file's tensor names.

  Returns:
    (prefix "bert." or "", {name as in `_slots`: file name} of the encoder and head tensors,
    [file names of anything else]).
  """
  if "bert.embeddings.word_embeddings.weight" in shapes:
    prefix = "bert."
  elif "embeddings.word_embeddings.weight" in shapes:
    prefix = ""
  else:
    raise UsageError(f"{describe}: no embeddings.word_embeddings.weight (with or without the "
                     f"'bert.' prefix): not a BERT checkpoint")
  names, others = {}, []
  for file_name in shapes:
    if file_name.startswith(prefix) and file_name[len(prefix):].startswith(_ENCODER_PREFIXES):
      name = file_name[len(prefix):]
    elif file_name.startswith(_HEAD_PREFIXES):
      name = file_name
    else:
      others.append(file_name)
      continue
    # Checkpoints converted from TF1 by old transformers versions kept LayerNorm gamma/beta.
    name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", name)
    name = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name)
    names[name] = file_name
  if _DECODER_BIAS in names and "cls.predictions.bias" not in names:
    names["cls.predictions.bias"] = names[_DECODER_BIAS]  # files that only kept the alias
  return prefix, names, others


def _listing(items):
  items = list(items)
  shown = ", ".join(items[:_MAX_LISTED])
  return shown + (f" ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


def _check_config(model_config, directory, config_source):
  """The model's config must compute what config.json describes (dropout may differ)."""
  hf = read_hf_config(directory)
  differ = [f"{k} {getattr(model_config, k)!r} vs {getattr(hf, k)!r}"
            for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                      "intermediate_size", "hidden_act", "max_position_embeddings",
                      "type_vocab_size", "layer_norm_eps")
            if getattr(model_config, k) != getattr(hf, k)]
  if differ:
    raise UsageError(f"{config_source} does not match {os.path.join(directory, CONFIG_NAME)}: "
                     f"{'; '.join(differ)} (leave --bert_config_file out to use the HF config)")


def _check_vocab(directory, rows):
  tokens, source = hf_vocab(directory)
  if tokens is not None and len(tokens) != rows:
    raise UsageError(f"{source}: {len(tokens)} tokens but the word embeddings have {rows} rows")


def init_from_hf(model, directory, *, strict=False, config_source=None):
  """Loads an HF BERT directory into a built `BertEncoder`, `BertPretrainer` or `BertClassifier`.

  The encoder must be complete. A missing pooler or pretraining head (a `BertModel` or
  `BertForMaskedLM` checkpoint loaded into a pretrainer) keeps its fresh initial values and is
  named in one warning, or is an error with `strict`. A classifier's output layer is loaded only
  from a `BertForSequenceClassification` checkpoint with the same number of labels. Tensors of
  other heads are not used. Wrong shapes, tensors of the encoder the model does not have, and a
  vocab whose size differs from the embeddings are errors.

  Args:
    model: the model to fill.
    directory: the HF directory.
    strict: make missing parts an error.
    config_source: how to name the model's config in errors.
  Returns:
    dict with `format` ("huggingface"), `checkpoint` (the weight file), `loaded` (part names) and
    `missing` (HF names initialised fresh).
  """
  config_source = config_source or "the model's config"
  _check_config(model.bert_config, directory, config_source)
  weights = open_hf_weights(directory)
  where = weights.describe
  shapes = weights.shapes()
  prefix, names, others = _layout(shapes, where)
  slots = _slots(model)
  rows = shapes[prefix + "embeddings.word_embeddings.weight"][0]
  _check_vocab(directory, rows)

  wrong, unexpected = [], []
  for name, file_name in names.items():
    slot = slots.get(name)
    if slot is None:
      if not name.startswith(_HEAD_PREFIXES) and name != _POSITION_IDS:
        unexpected.append(file_name)
      continue
    want = tuple(slot.variable.shape)[::-1] if slot.transpose else tuple(slot.variable.shape)
    if shapes[file_name] != want and slot.part != "classifier":
      wrong.append(f"{file_name} (checkpoint {list(shapes[file_name])}, model {list(want)})")
  if wrong or unexpected:
    parts = []
    if wrong:
      parts.append(f"{len(wrong)} with the wrong shape: {_listing(wrong)}")
    if unexpected:
      parts.append(f"{len(unexpected)} not in a BERT encoder of this config: {_listing(unexpected)}")
    raise UsageError(f"{where} does not fit {config_source}: {'; '.join(parts)}")

  missing_encoder = [prefix + n for n, s in slots.items() if s.part == "encoder" and n not in names]
  if missing_encoder:
    raise UsageError(f"{where}: {len(missing_encoder)} encoder tensors missing: "
                     f"{_listing(missing_encoder)}")
  plan = {n: s for n, s in slots.items() if n in names}
  if "classifier.weight" in plan:
    want = tuple(plan["classifier.weight"].variable.shape)[::-1]
    if shapes[names["classifier.weight"]] != want or "classifier.bias" not in plan:
      logging.info("%s: its classifier has %s labels, not %d; the output layer starts fresh",
                   where, shapes[names["classifier.weight"]][0], want[0])
      plan.pop("classifier.weight")
      plan.pop("classifier.bias", None)
  _check_tied(weights, names, plan, where)

  missing = collections.OrderedDict()
  for name, slot in slots.items():
    if name not in plan and slot.part != "classifier":
      missing.setdefault(slot.part, []).append(
          name if name.startswith(_HEAD_PREFIXES) else prefix + name)
  if missing:
    summary = "; ".join(f"{part} ({_listing(ns)})" for part, ns in missing.items())
    if strict:
      raise UsageError(f"{where} lacks parts of the model (--strict_checkpoint): {summary}")
    logging.warning("%s lacks parts of the model, initialised fresh: %s", where, summary)

  for name, slot in plan.items():
    value = tf.constant(np.asarray(weights.get(names[name]), dtype=slot.variable.dtype))
    if slot.transpose:
      value = tf.transpose(value)  # TensorFlow's transpose: several times numpy's strided copy
    slot.variable.assign(value)
  loaded = list(dict.fromkeys(s.part for s in plan.values()))
  unused = sorted(others + [f for n, f in names.items() if n not in plan and n not in (
      _POSITION_IDS, _DECODER_WEIGHT, _DECODER_BIAS)])
  if unused:
    logging.info("%s: not used by this model: %s", where, _listing(unused))
  return {"format": "huggingface", "checkpoint": where, "loaded": loaded,
          "missing": [n for ns in missing.values() for n in ns]}


def _check_tied(weights, names, plan, where):
  """The decoder aliases of the masked-LM head, when a file stores them, must equal what they are
  tied to (we keep one copy)."""
  if "cls.predictions.bias" not in plan:
    return  # the masked-LM head is not loaded
  for alias, target in ((_DECODER_WEIGHT, "embeddings.word_embeddings.weight"),
                        (_DECODER_BIAS, "cls.predictions.bias")):
    if alias in names and target in names and target in plan:
      if not np.array_equal(weights.get(names[alias]), weights.get(names[target])):
        raise UsageError(f"{where}: {names[alias]} differs from {names[target]}; untied "
                         f"masked-LM output weights are not supported")


# ----------------------------------------------------------------------------------------------
# Whole models in and out.

def hf_layout_kind(directory):
  """("pretrainer" | "classifier" | "encoder", number of labels or None) of an HF directory,
  from the tensors its weight file holds."""
  shapes = open_hf_weights(directory).shapes()
  if any(n.startswith("cls.predictions.") or n.startswith("cls.seq_relationship.") for n in shapes):
    return "pretrainer", None
  if "classifier.weight" in shapes:
    return "classifier", shapes["classifier.weight"][0]
  return "encoder", None


def load_hf_model(directory, *, strict=False):
  """Builds the bert_tf model of an HF directory's layout and loads it.

  Returns:
    (model, info): a `BertPretrainer` (BertForPreTraining / BertForMaskedLM), `BertClassifier`
    (BertForSequenceClassification) or `BertEncoder` (BertModel), and `init_from_hf`'s dict.
  """
  from bert_tf.modeling import BertClassifier, BertEncoder, BertPretrainer
  from bert_tf.modeling.layers import skip_weight_initialization
  config = read_hf_config(directory)
  kind, num_labels = hf_layout_kind(directory)

  def build():
    if kind == "pretrainer":
      return BertPretrainer(config)
    if kind == "classifier":
      return BertClassifier(config, num_labels)
    return BertEncoder(config)

  with skip_weight_initialization():  # cheap: weights are overwritten...
    model = build()
  try:
    info = init_from_hf(model, directory, strict=True,
                        config_source=os.path.join(directory, CONFIG_NAME))
  except UsageError:
    if strict:
      raise
    model = build()  # ...unless some part is missing: then it keeps real fresh values
    info = init_from_hf(model, directory, config_source=os.path.join(directory, CONFIG_NAME))
  return model, info


def _architecture(model):
  from bert_tf.modeling.models import model_parts
  _, pretrainer, classifier = model_parts(model)
  if pretrainer is not None:
    return "BertForPreTraining", "bert."
  if classifier is not None:
    return "BertForSequenceClassification", "bert."
  return "BertModel", ""


def hf_tensors(model):
  """{HF name: numpy array} of a model, in the layout of its HF architecture (`bert.` prefix for
  the models with heads), with the `embeddings.position_ids` buffer."""
  _, prefix = _architecture(model)
  tensors = {}
  for name, slot in _slots(model).items():
    value = np.asarray(slot.variable.numpy())
    if slot.transpose:
      value = np.ascontiguousarray(value.T)
    full = name if name.startswith(_HEAD_PREFIXES) else prefix + name
    tensors[full] = value
  max_positions = tuple(tensors[prefix + "embeddings.position_embeddings.weight"].shape)[0]
  tensors[prefix + _POSITION_IDS] = np.arange(max_positions, dtype=np.int64)[np.newaxis]
  return tensors


def save_hf_directory(model, output_dir, vocab_file, do_lower_case=True, labels=None):
  """Writes a model as an HF BERT directory: `config.json`, `model.safetensors`, `vocab.txt`,
  `tokenizer_config.json`.

  `config.json` is written last, each file under a temporary name first: a directory only looks
  like a complete HF model once everything is in place.

  Args:
    model: a `BertEncoder` (-> BertModel), `BertPretrainer` (-> BertForPreTraining) or
      `BertClassifier` (-> BertForSequenceClassification).
    output_dir: the directory (created; must not already hold an HF model).
    vocab_file: the model's WordPiece vocab; its size must equal the embedding rows.
    do_lower_case: written to `tokenizer_config.json`.
    labels: optional label names of a classifier (`id2label`).
  Returns:
    the path of `model.safetensors`.
  """
  from safetensors.numpy import save_file
  from bert_tf.modeling.models import model_parts
  from bert_tf.text.vocab_file import load_vocab
  encoder, _, classifier = model_parts(model)
  config = encoder.bert_config
  for name in (CONFIG_NAME, SAFETENSORS_NAME):
    if os.path.exists(os.path.join(output_dir, name)):
      raise UsageError(f"{output_dir} already holds {name}; choose an empty directory")
  vocab = load_vocab(vocab_file)
  if len(vocab) != config.vocab_size:
    raise UsageError(f"{vocab_file}: {len(vocab)} tokens but the model's vocab_size is "
                     f"{config.vocab_size}")
  architecture, _ = _architecture(model)
  os.makedirs(output_dir, exist_ok=True)
  weights_path = os.path.join(output_dir, SAFETENSORS_NAME)
  with atomic_output(weights_path) as tmp:
    save_file(hf_tensors(model), tmp, metadata={"format": "pt"})
  tokens = [None] * len(vocab)
  for token, index in vocab.items():
    tokens[index] = token
  atomic_write_text(os.path.join(output_dir, VOCAB_NAME), "".join(t + "\n" for t in tokens))
  tokenizer_config = {"tokenizer_class": "BertTokenizer", "do_lower_case": bool(do_lower_case),
                      "model_max_length": config.max_position_embeddings,
                      "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                      "cls_token": "[CLS]", "mask_token": "[MASK]"}
  atomic_write_text(os.path.join(output_dir, TOKENIZER_CONFIG_NAME),
                    json.dumps(tokenizer_config, indent=2) + "\n")
  num_labels = classifier.num_classes if classifier is not None else None
  atomic_write_text(os.path.join(output_dir, CONFIG_NAME),
                    json.dumps(hf_config_dict(config, architecture, num_labels, labels),
                               indent=2) + "\n")
  return weights_path
