"""Hugging Face BERT directories in and out (bert_tf.checkpoints.huggingface), on small checkpoints
built here in the Hugging Face layout (names, [out, in] dense weights, config.json, tokenizer files)."""

import collections
import json
import logging
import os
import pickle
import shutil
import subprocess
import sys
import types
import zipfile

import numpy as np
import pytest
import tensorflow as tf
from safetensors.numpy import load_file, save_file

from benchmarks.check_hf_parity import bert_tf_hidden_states, max_diff, numpy_bert
from bert_tf.checkpoints import convert, core, huggingface as hf
from bert_tf.configs import BertConfig
from bert_tf.errors import UsageError
from bert_tf.modeling import BertClassifier, BertEncoder, BertPretrainer

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
HIDDEN, LAYERS, HEADS, INTERMEDIATE, POSITIONS = 16, 2, 2, 32, 40


def sentiment_rows(split, n):
  with open(os.path.join(REPO_ROOT, "data", "sentiment", f"{split}.tsv"), encoding="utf-8") as f:
    return [line.rstrip("\n").split("\t") for line in f][1:n + 1]


def small_vocab():
  """Specials, characters and frequent words of the first sentiment rows (96 tokens)."""
  import re
  words = collections.Counter(w for text, _ in sentiment_rows("train", 64)
                              for w in re.findall(r"\w+|[^\w\s]", text.lower()))
  chars = sorted({c for w in words for c in w})
  vocab = SPECIALS + chars + ["##" + c for c in chars]
  vocab += [w for w, _ in words.most_common() if w not in vocab]
  return vocab[:96]


VOCAB = small_vocab()


def hf_config(**overrides):
  config = {"architectures": ["BertForPreTraining"], "model_type": "bert", "vocab_size": len(VOCAB),
            "hidden_size": HIDDEN, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
            "intermediate_size": INTERMEDIATE, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1, "max_position_embeddings": POSITIONS,
            "type_vocab_size": 3, "initializer_range": 0.02, "layer_norm_eps": 1e-7,
            "pad_token_id": 0, "position_embedding_type": "absolute"}
  config.update(overrides)
  return config


def hf_tensors(layout, prefix=None, pooler=True, num_labels=3, seed=0):
  """Random tensors named as transformers saves `layout` (values large enough for the two GELUs
  to differ clearly)."""
  rng = np.random.default_rng(seed)
  if prefix is None:
    prefix = "" if layout == "BertModel" else "bert."

  def rand(*shape, scale=0.3):
    return (rng.standard_normal(shape) * scale).astype(np.float32)

  t = {"embeddings.word_embeddings.weight": rand(len(VOCAB), HIDDEN),
       "embeddings.position_embeddings.weight": rand(POSITIONS, HIDDEN),
       "embeddings.token_type_embeddings.weight": rand(3, HIDDEN),
       "embeddings.LayerNorm.weight": 1 + rand(HIDDEN, scale=0.1),
       "embeddings.LayerNorm.bias": rand(HIDDEN, scale=0.1)}
  for i in range(LAYERS):
    p = f"encoder.layer.{i}."
    for name, (rows, cols) in {"attention.self.query": (HIDDEN, HIDDEN),
                               "attention.self.key": (HIDDEN, HIDDEN),
                               "attention.self.value": (HIDDEN, HIDDEN),
                               "attention.output.dense": (HIDDEN, HIDDEN),
                               "intermediate.dense": (INTERMEDIATE, HIDDEN),
                               "output.dense": (HIDDEN, INTERMEDIATE)}.items():
      t[p + name + ".weight"], t[p + name + ".bias"] = rand(rows, cols), rand(rows, scale=0.1)
    for name in ("attention.output.LayerNorm", "output.LayerNorm"):
      t[p + name + ".weight"], t[p + name + ".bias"] = 1 + rand(HIDDEN, scale=0.1), rand(HIDDEN)
  if pooler:
    t["pooler.dense.weight"], t["pooler.dense.bias"] = rand(HIDDEN, HIDDEN), rand(HIDDEN)
  t = {prefix + n: v for n, v in t.items()}
  t[prefix + "embeddings.position_ids"] = np.arange(POSITIONS, dtype=np.int64)[None]
  if layout in ("BertForPreTraining", "BertForMaskedLM"):
    t.update({"cls.predictions.transform.dense.weight": rand(HIDDEN, HIDDEN),
              "cls.predictions.transform.dense.bias": rand(HIDDEN),
              "cls.predictions.transform.LayerNorm.weight": 1 + rand(HIDDEN, scale=0.1),
              "cls.predictions.transform.LayerNorm.bias": rand(HIDDEN),
              "cls.predictions.bias": rand(len(VOCAB))})
  if layout == "BertForPreTraining":
    t["cls.seq_relationship.weight"], t["cls.seq_relationship.bias"] = rand(2, HIDDEN), rand(2)
  if layout == "BertForSequenceClassification":
    t["classifier.weight"], t["classifier.bias"] = rand(num_labels, HIDDEN), rand(num_labels)
  return t


def write_hf_dir(path, layout="BertForPreTraining", tensors=None, config=None, vocab="txt",
                 do_lower_case=True, **tensor_args):
  os.makedirs(path, exist_ok=True)
  tensors = hf_tensors(layout, **tensor_args) if tensors is None else tensors
  save_file(tensors, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(config or hf_config(architectures=[layout]), f)
  if vocab == "txt":
    with open(os.path.join(path, "vocab.txt"), "w", encoding="utf-8") as f:
      f.write("".join(t + "\n" for t in VOCAB))
  elif vocab == "json":
    tokenizer = {"version": "1.0",
                 "added_tokens": [{"id": i, "content": t, "special": True}
                                  for i, t in enumerate(SPECIALS)],
                 "normalizer": {"type": "BertNormalizer", "lowercase": do_lower_case},
                 "model": {"type": "WordPiece", "unk_token": "[UNK]",
                           "continuing_subword_prefix": "##",
                           "vocab": {t: i for i, t in enumerate(VOCAB)}}}
    with open(os.path.join(path, "tokenizer.json"), "w", encoding="utf-8") as f:
      json.dump(tokenizer, f)
  if do_lower_case is not None and vocab == "txt":
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
      json.dump({"do_lower_case": do_lower_case, "tokenizer_class": "BertTokenizer"}, f)
  return str(path)


def batch(rows=4, length=12, seed=1):
  rng = np.random.default_rng(seed)
  ids = rng.integers(5, len(VOCAB), size=(rows, length)).astype(np.int32)
  ids[:, 0] = VOCAB.index("[CLS]")
  mask = np.ones_like(ids)
  mask[1, 7:] = mask[3, 4:] = 0
  segments = np.zeros_like(ids)
  segments[:, 6:] = 1
  segments[2, 9:] = 2
  return ids, mask, segments


def assign_checks(model, tensors, prefix):
  """Spot checks that model variables hold the HF tensors (transposed where PyTorch is [out, in])."""
  enc = model if isinstance(model, BertEncoder) else model.encoder
  np.testing.assert_array_equal(enc.embeddings.word_embeddings.numpy(),
                                tensors[prefix + "embeddings.word_embeddings.weight"])
  np.testing.assert_array_equal(enc.blocks[1].intermediate.kernel.numpy(),
                                tensors[prefix + "encoder.layer.1.intermediate.dense.weight"].T)
  np.testing.assert_array_equal(enc.blocks[0].output_layer_norm.gamma.numpy(),
                                tensors[prefix + "encoder.layer.0.output.LayerNorm.weight"])


# ----------------------------------------------------------------------------------------------
# config.json, vocab and casing


def test_config_json_maps_faithfully(tmp_path):
  expect = {"gelu": "gelu_exact", "gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "relu": "relu"}
  for act, ours in expect.items():
    d = tmp_path / act
    d.mkdir()
    (d / "config.json").write_text(json.dumps(hf_config(hidden_act=act)))
    config = hf.read_hf_config(str(d))
    assert config.hidden_act == ours
    assert (config.layer_norm_eps, config.type_vocab_size, config.max_position_embeddings) == (
        1e-7, 3, POSITIONS)
  # A non-default epsilon survives bert_config.json; the default keeps the original eleven fields.
  config.to_json_file(str(tmp_path / "bert_config.json"))
  assert BertConfig.from_json_file(str(tmp_path / "bert_config.json")) == config
  assert "layer_norm_eps" not in BertConfig(vocab_size=10).to_dict()
  # ... and back: config.json of an export names the HF activation.
  assert hf.hf_config_dict(config, "BertModel")["hidden_act"] == "relu"
  assert hf.hf_config_dict(BertConfig(vocab_size=9, hidden_act="gelu"), "BertModel")[
      "hidden_act"] == "gelu_new"


def test_vocab_and_casing_from_tokenizer_json(tmp_path, caplog):
  d = write_hf_dir(tmp_path / "hf", vocab="json", do_lower_case=False)
  assert not os.path.exists(os.path.join(d, "vocab.txt"))
  path = hf.hf_vocab_file(d, str(tmp_path / "out"))
  assert open(path, encoding="utf-8").read().splitlines() == VOCAB
  assert hf.hf_do_lower_case(d) == (False, os.path.join(d, "tokenizer.json"))
  assert hf.resolve_do_lower_case(None, d) is False
  with caplog.at_level(logging.WARNING):
    assert hf.resolve_do_lower_case(True, d) is True  # the user's explicit choice stays...
  assert "contradicts" in caplog.text and "tokenizer.json" in caplog.text  # ...with a warning
  assert hf.resolve_do_lower_case(None, str(tmp_path)) is True  # not an HF directory: default


# ----------------------------------------------------------------------------------------------
# Import: layouts, parity, missing parts


@pytest.mark.parametrize("act", ["gelu", "gelu_new"])
def test_hidden_states_match_an_independent_numpy_bert(tmp_path, act):
  config = hf_config(hidden_act=act, architectures=["BertModel"])
  tensors = hf_tensors("BertModel")
  d = write_hf_dir(tmp_path / "hf", tensors=tensors, config=config)
  model, info = hf.load_hf_model(d)
  assert isinstance(model, BertEncoder) and info["missing"] == []
  ids, mask, segments = batch()
  ours = bert_tf_hidden_states(model, ids, mask, segments)
  reference = numpy_bert(tensors, config, ids, mask, segments)
  assert max_diff(*ours, *reference, mask) <= 1e-5
  # The other GELU is measurably different, so the mapping is what makes this pass.
  other = numpy_bert(tensors, dict(config, hidden_act="gelu_new" if act == "gelu" else "gelu"),
                     ids, mask, segments)
  assert max_diff(*ours, *other, mask) > 1e-4


@pytest.mark.parametrize("layout,prefix", [("BertModel", ""), ("BertModel", "bert."),
                                           ("BertForPreTraining", "bert."),
                                           ("BertForMaskedLM", "bert."),
                                           ("BertForSequenceClassification", "bert.")])
def test_each_layout_loads_into_a_pretrainer(tmp_path, layout, prefix, caplog):
  tensors = hf_tensors(layout, prefix=prefix)
  d = write_hf_dir(tmp_path / "hf", layout, tensors=tensors)
  model = BertPretrainer(BertConfig.from_dict(hf.read_hf_config(d).to_dict()))
  with caplog.at_level(logging.WARNING):
    info = core.init_from_checkpoint(model, d)
  assert info["format"] == "huggingface" and info["checkpoint"].endswith("model.safetensors")
  assign_checks(model, tensors, prefix)
  warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
  if layout == "BertForPreTraining":
    assert info["missing"] == [] and not warnings
    np.testing.assert_array_equal(model.masked_lm.transform.kernel.numpy(),
                                  tensors["cls.predictions.transform.dense.weight"].T)
    np.testing.assert_array_equal(model.next_sentence.output_weights.numpy(),
                                  tensors["cls.seq_relationship.weight"])
    np.testing.assert_array_equal(model.masked_lm.output_bias.numpy(),
                                  tensors["cls.predictions.bias"])
  else:
    # What the file lacks is listed in one warning line, and keeps its fresh initial values.
    assert len(warnings) == 1 and "\n" not in warnings[0].getMessage()
    assert "next-sentence head (cls.seq_relationship.weight" in warnings[0].getMessage()
    assert "cls.seq_relationship.bias" in info["missing"]
    assert np.abs(model.next_sentence.output_weights.numpy()).max() > 0
    if layout != "BertForMaskedLM":
      assert "masked-LM head" in warnings[0].getMessage()


def test_tied_decoder_copies_are_checked(tmp_path):
  tensors = hf_tensors("BertForMaskedLM")
  # Older saves: the decoder weight stored beside the embeddings, the bias only as the decoder's.
  tensors["cls.predictions.decoder.weight"] = tensors["bert.embeddings.word_embeddings.weight"]
  tensors["cls.predictions.decoder.bias"] = tensors.pop("cls.predictions.bias")
  d = write_hf_dir(tmp_path / "tied", "BertForMaskedLM", tensors=tensors)
  model = BertPretrainer(hf.read_hf_config(d))
  assert "masked-LM head" in core.init_from_checkpoint(model, d)["loaded"]
  np.testing.assert_array_equal(model.masked_lm.output_bias.numpy(),
                                tensors["cls.predictions.decoder.bias"])
  tensors["cls.predictions.decoder.weight"] = tensors["cls.predictions.decoder.weight"] + 1
  d = write_hf_dir(tmp_path / "untied", "BertForMaskedLM", tensors=tensors)
  with pytest.raises(UsageError, match="decoder.weight differs from .*word_embeddings"):
    core.init_from_checkpoint(model, d)


def test_classifier_loads_its_head_only_with_the_same_labels(tmp_path):
  tensors = hf_tensors("BertForSequenceClassification", num_labels=3)
  d = write_hf_dir(tmp_path / "hf", "BertForSequenceClassification", tensors=tensors)
  config = hf.read_hf_config(d)
  same = BertClassifier(config, 3)
  assert "classifier" in core.init_from_checkpoint(same, d)["loaded"]
  np.testing.assert_array_equal(same.classifier.kernel.numpy(), tensors["classifier.weight"].T)
  other = BertClassifier(config, 2)  # another task: a fresh output layer, no error
  fresh = other.classifier.kernel.numpy().copy()
  info = core.init_from_checkpoint(other, d)
  assert "classifier" not in info["loaded"] and info["missing"] == []
  np.testing.assert_array_equal(other.classifier.kernel.numpy(), fresh)
  assign_checks(other, tensors, "bert.")


def test_missing_pooler_warns_and_strict_mode_refuses(tmp_path, caplog):
  d = write_hf_dir(tmp_path / "hf", "BertModel", pooler=False)
  config = hf.read_hf_config(d)
  model = BertClassifier(config, 2)
  with caplog.at_level(logging.WARNING):
    info = core.init_from_checkpoint(model, d)
  assert info["missing"] == ["pooler.dense.weight", "pooler.dense.bias"]
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert len(warnings) == 1 and "pooler (pooler.dense.weight, pooler.dense.bias)" in warnings[0]
  assert np.abs(model.encoder.pooler.kernel.numpy()).max() > 0  # fresh random, not zeros
  with pytest.raises(UsageError, match=r"lacks parts .*--strict_checkpoint.*pooler"):
    core.init_from_checkpoint(BertClassifier(config, 2), d, strict=True)
  # load_hf_model builds without random draws only when nothing is missing.
  model, info = hf.load_hf_model(d)
  assert np.abs(model.pooler.kernel.numpy()).max() > 0


def test_pytorch_bin_reads_like_safetensors(tmp_path, monkeypatch):
  tensors = hf_tensors("BertForPreTraining")
  st = write_hf_dir(tmp_path / "st", tensors=tensors)
  pt = tmp_path / "pt"
  shutil.copytree(st, pt)
  os.remove(pt / "model.safetensors")
  write_torch_zip(str(pt / "pytorch_model.bin"), tensors, monkeypatch)
  a, _ = hf.load_hf_model(st)
  b, _ = hf.load_hf_model(str(pt))
  for x, y in zip(a.weights, b.weights):
    np.testing.assert_array_equal(x.numpy(), y.numpy())
  # Only tensors are rebuilt: any other global is refused, with the file named.
  evil = tmp_path / "evil"
  shutil.copytree(pt, evil)
  with zipfile.ZipFile(evil / "pytorch_model.bin", "w") as z:
    z.writestr("archive/data.pkl", b"cos\nsystem\n(S'echo hacked'\ntR.")
  with pytest.raises(UsageError, match=r"pytorch_model.bin: .*refusing to load os.system"):
    hf.load_hf_model(str(evil))


def write_torch_zip(path, tensors, monkeypatch):
  """Writes `tensors` as torch.save does (zip + pickle protocol 2 + one storage file per tensor),
  without torch: stand-in `torch` modules give the pickle the names torch's loader expects. The
  storages are written transposed and read back through their strides, as torch can store them."""
  torch_mod, utils_mod = types.ModuleType("torch"), types.ModuleType("torch._utils")

  def rebuild(*args):
    raise AssertionError("never called")

  rebuild.__module__, rebuild.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
  utils_mod._rebuild_tensor_v2 = rebuild
  storage_classes = {}
  for name in ("FloatStorage", "LongStorage"):
    storage_classes[name] = type(name, (), {"__module__": "torch"})
    setattr(torch_mod, name, storage_classes[name])
  torch_mod._utils = utils_mod
  monkeypatch.setitem(sys.modules, "torch", torch_mod)
  monkeypatch.setitem(sys.modules, "torch._utils", utils_mod)

  class Storage:
    def __init__(self, key, data):
      self.key, self.data = key, data

  class Tensor:
    def __init__(self, key, value):
      self.key, self.value = key, value

    def __reduce__(self):
      if self.value.ndim == 2:  # storage holds the transpose: strides (1, rows)
        data, stride = np.ascontiguousarray(self.value.T), (1, self.value.shape[0])
      else:
        data = self.value
        stride = tuple(int(s // self.value.itemsize) for s in self.value.strides)
      return rebuild, (Storage(self.key, data), 0, self.value.shape, stride, False,
                       collections.OrderedDict())

  class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
      if isinstance(obj, Storage):
        kind = "LongStorage" if obj.data.dtype == np.int64 else "FloatStorage"
        return ("storage", storage_classes[kind], obj.key, "cpu", obj.data.size)
      return None

  import io
  state = collections.OrderedDict((n, Tensor(str(i), v)) for i, (n, v) in enumerate(tensors.items()))
  buffer = io.BytesIO()
  Pickler(buffer, protocol=2).dump(state)
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("archive/data.pkl", buffer.getvalue())
    z.writestr("archive/byteorder", "little")
    for tensor in state.values():
      data = tensor.__reduce__()[1][0].data
      z.writestr(f"archive/data/{tensor.key}", np.ascontiguousarray(data).tobytes())


# ----------------------------------------------------------------------------------------------
# Export and round trip


@pytest.mark.parametrize("layout", ["BertForPreTraining", "BertModel",
                                    "BertForSequenceClassification"])
def test_round_trip_hf_bert_tf_hf_is_bit_exact(tmp_path, layout):
  d = write_hf_dir(tmp_path / "hf", layout)
  ckpt = convert.import_hf(d, str(tmp_path / "bert_tf"))
  assert os.path.exists(str(tmp_path / "bert_tf" / "bert_config.json"))
  convert.export_hf(ckpt, None, str(tmp_path / "again"))
  before = load_file(os.path.join(d, "model.safetensors"))
  after = load_file(str(tmp_path / "again" / "model.safetensors"))
  assert sorted(after) == sorted(before)
  for name, value in before.items():
    assert after[name].dtype == value.dtype and after[name].shape == value.shape, name
    assert after[name].tobytes() == value.tobytes(), name
  config = json.loads((tmp_path / "again" / "config.json").read_text())
  original = json.loads((tmp_path / "hf" / "config.json").read_text())
  for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
              "intermediate_size", "hidden_act", "max_position_embeddings", "type_vocab_size",
              "layer_norm_eps", "architectures", "model_type"):
    assert config[key] == original[key], key
  assert (tmp_path / "again" / "vocab.txt").read_text().splitlines() == VOCAB
  assert json.loads((tmp_path / "again" / "tokenizer_config.json").read_text())["do_lower_case"]


def test_exported_pretrainer_reloads_with_the_same_outputs(tmp_path):
  config = BertConfig(vocab_size=len(VOCAB), hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                      num_attention_heads=HEADS, intermediate_size=INTERMEDIATE,
                      max_position_embeddings=POSITIONS, type_vocab_size=3)
  pretrainer = BertPretrainer(config)
  run_dir = tmp_path / "run"
  core.save_bert_tf_checkpoint(pretrainer, str(run_dir), 7)
  (run_dir / "vocab.txt").write_text("".join(t + "\n" for t in VOCAB))
  out = tmp_path / "hf"
  proc = subprocess.run([sys.executable, "-m", "bert_tf.checkpoints", f"--export_hf={run_dir}",
                         f"--output_dir={out}"], capture_output=True, text=True, cwd=REPO_ROOT,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert json.loads((out / "config.json").read_text())["architectures"] == ["BertForPreTraining"]
  again, info = hf.load_hf_model(str(out))
  assert isinstance(again, BertPretrainer) and info["missing"] == []
  ids, mask, segments = batch()
  features = {"input_ids": ids, "input_mask": mask, "segment_ids": segments,
              "masked_lm_positions": np.array([[1, 2]] * len(ids), np.int32)}
  for key in ("sequence_output", "mlm_logits", "nsp_logits"):
    np.testing.assert_array_equal(again(features)[key].numpy(), pretrainer(features)[key].numpy())
  # Into an existing HF directory: refused, nothing overwritten.
  with pytest.raises(UsageError, match="already holds config.json"):
    convert.export_hf(str(run_dir), None, str(out))


# ----------------------------------------------------------------------------------------------
# Bad input: one line naming the file


def test_bad_directories_are_one_line_errors_naming_the_file(tmp_path):
  good = write_hf_dir(tmp_path / "good", "BertModel")
  model = BertEncoder(hf.read_hf_config(good))

  def broken(name, edit):
    d = tmp_path / name
    shutil.copytree(good, d)
    edit(d)
    return str(d)

  cases = [
      (broken("no_config", lambda d: os.remove(d / "config.json")), r"no_config: no config\.json"),
      (broken("no_weights", lambda d: os.remove(d / "model.safetensors")),
       r"no_weights: no weights \(model\.safetensors"),
      (broken("roberta", lambda d: (d / "config.json").write_text(
          json.dumps(hf_config(model_type="roberta")))),
       r"roberta/config\.json: model_type is 'roberta', not 'bert'"),
      (broken("vocab", lambda d: (d / "vocab.txt").write_text("".join(
          t + "\n" for t in VOCAB[:-3]))),
       r"vocab/vocab\.txt: 93 tokens but the word embeddings have 96 rows"),
      (broken("truncated", lambda d: os.truncate(d / "model.safetensors",
                                                 os.path.getsize(d / "model.safetensors") // 2)),
       r"truncated/model\.safetensors: not a readable safetensors file"),
  ]
  for path, pattern in cases:
    with pytest.raises(UsageError, match=pattern) as e:
      core.init_from_checkpoint(model, path)
    assert "\n" not in str(e.value)

  # A tensor of the wrong shape is named, with both shapes.
  tensors = hf_tensors("BertModel")
  tensors["encoder.layer.1.intermediate.dense.weight"] = np.zeros((48, HIDDEN), np.float32)
  wrong = write_hf_dir(tmp_path / "wrong", "BertModel", tensors=tensors)
  with pytest.raises(UsageError, match=r"encoder\.layer\.1\.intermediate\.dense\.weight "
                                       r"\(checkpoint \[48, 16\], model \[32, 16\]\)"):
    core.init_from_checkpoint(model, wrong)
  # A model config that computes differently from config.json (here: the GELU) is refused.
  tanh = BertEncoder(BertConfig.from_dict(dict(hf.read_hf_config(good).to_dict(), hidden_act="gelu")))
  with pytest.raises(UsageError, match=r"does not match .*config\.json: hidden_act 'gelu' vs "
                                       r"'gelu_exact'"):
    core.init_from_checkpoint(tanh, good, config_source="--bert_config_file=x.json")


def test_command_line_error_is_one_line(tmp_path):
  d = write_hf_dir(tmp_path / "hf", "BertModel", config=hf_config(model_type="distilbert"))
  proc = subprocess.run([sys.executable, "-m", "bert_tf.checkpoints", f"--import_hf={d}",
                         f"--output_dir={tmp_path / 'out'}"], capture_output=True, text=True,
                        cwd=REPO_ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=300)
  assert proc.returncode == 2
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ") and "config.json: model_type is 'distilbert'" in last
  assert "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------------------------
# run_classifier from a Hugging Face directory


def test_run_classifier_fine_tunes_from_a_hf_directory(tmp_path):
  from bert_tf.finetuning.classification import RunOptions, run_classifier
  tensors = hf_tensors("BertModel")
  d = write_hf_dir(tmp_path / "hf", "BertModel", tensors=tensors, vocab="json")
  data = tmp_path / "data"
  data.mkdir()
  for split, rows in (("train", sentiment_rows("train", 64)), ("dev", sentiment_rows("dev", 24))):
    (data / f"{split}.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{l}\n" for t, l in rows))
  out = tmp_path / "out"
  # No --vocab_file, --bert_config_file or --do_lower_case: all come from the directory.
  opts = RunOptions(task_name="sst-2", data_dir=str(data), vocab_file=None, output_dir=str(out),
                    init_checkpoint=d, do_lower_case=None, max_seq_length=16, do_train=True,
                    do_eval=True, train_batch_size=16, eval_batch_size=8, learning_rate=1e-7,
                    num_train_epochs=1.0, strict_checkpoint=True)
  results = run_classifier(opts)
  assert results["global_step"] == 4 and 0 <= results["eval_accuracy"] <= 1
  assert (out / "vocab.txt").read_text().splitlines() == VOCAB
  model = BertClassifier(hf.read_hf_config(d), 2)
  tf.train.Checkpoint(model=model).restore(tf.train.latest_checkpoint(str(out))).expect_partial()
  np.testing.assert_allclose(model.encoder.embeddings.word_embeddings.numpy(),
                             tensors["embeddings.word_embeddings.weight"], atol=1e-5)


def test_a_bad_input_found_after_the_vocab_conversion_leaves_no_output_dir(tmp_path):
  """Issue 18, case 9: vocab.txt, converted from tokenizer.json, was written into --output_dir
  before every input was checked (here: too few examples for one batch, found after it)."""
  from bert_tf.finetuning.classification import RunOptions, run_classifier
  d = write_hf_dir(tmp_path / "hf", "BertModel", vocab="json")
  data = tmp_path / "data"
  data.mkdir()
  (data / "train.tsv").write_text("sentence\tlabel\n" + "".join(
      f"{t}\t{l}\n" for t, l in sentiment_rows("train", 12)))
  out = tmp_path / "out"
  opts = RunOptions(task_name="sst-2", data_dir=str(data), vocab_file=None, output_dir=str(out),
                    init_checkpoint=d, do_lower_case=None, max_seq_length=16, do_train=True,
                    train_batch_size=16, num_train_epochs=1.0)
  with pytest.raises(UsageError, match=r"^12 training examples make no whole batch of "
                                       r"--train_batch_size=16$"):
    run_classifier(opts)
  assert not out.exists()


def test_demo_fine_tunes_from_a_hf_directory(tmp_path):
  d = write_hf_dir(tmp_path / "hf", "BertModel")
  out = tmp_path / "demo"
  proc = subprocess.run([sys.executable, "-m", "bert_tf.cli.demo", f"--init_from={d}", "--quick",
                         f"--data_dir={os.path.join(REPO_ROOT, 'data')}",
                         f"--demo_output_dir={out}"], capture_output=True, text=True,
                        cwd=REPO_ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=600)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  summary = json.loads((out / "summary.json").read_text())
  assert set(summary["runs"]) == {"pretrained", "random init"}
  for run in summary["runs"].values():
    assert 0 <= run["dev_accuracy"] <= 1 and run["wall_time_s"] > 0
  assert "--init_checkpoint=" in proc.stdout and "dev accuracy" in proc.stdout
  # The random-init control ran with the directory's own config, written as bert_config.json.
  assert BertConfig.from_json_file(str(out / "bert_config.json")) == hf.read_hf_config(d)


def test_run_pretraining_continues_from_a_hf_directory(tmp_path):
  from tests.pretraining_testdata import PREDICTIONS, SEQ_LENGTH, make_records, write_tfrecord
  d = write_hf_dir(tmp_path / "hf", "BertForMaskedLM")
  records = write_tfrecord(str(tmp_path / "train.tfrecord"), make_records(16))
  out = tmp_path / "out"
  # No --bert_config_file: config.json is the config; the missing next-sentence head is warned.
  proc = subprocess.run([sys.executable, "run_pretraining.py", f"--init_checkpoint={d}",
                         f"--input_file={records}", f"--output_dir={out}", "--do_train",
                         "--train_batch_size=8", "--num_train_steps=2", "--num_warmup_steps=1",
                         f"--max_seq_length={SEQ_LENGTH}", f"--max_predictions_per_seq={PREDICTIONS}",
                         "--save_checkpoints_steps=2"], capture_output=True, text=True,
                        cwd=REPO_ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "lacks parts of the model, initialised fresh: next-sentence head" in proc.stderr
  written = BertConfig.from_json_file(str(out / "bert_config.json"))
  assert written == hf.read_hf_config(d) and written.layer_norm_eps == 1e-7
  assert tf.train.latest_checkpoint(str(out)).endswith("ckpt-2")


def test_run_ner_leaves_no_output_dir_when_a_check_after_the_vocab_conversion_fails(tmp_path):
  """Issue 18, case 9, for run_ner: the vocab converted from tokenizer.json and the output folder
  are written only once the training windows are known to fill a batch."""
  from bert_tf.finetuning import tagging
  d = write_hf_dir(tmp_path / "hf", "BertModel", vocab="json")
  data = tmp_path / "ner"
  data.mkdir()
  (data / "train.txt").write_text("the O\nbank B-org\n\nit O\nrains O\n")
  out = tmp_path / "out"
  opts = tagging.NerOptions(data_dir=str(data), vocab_file=None, output_dir=str(out),
                            init_checkpoint=d, do_lower_case=None, max_seq_length=16,
                            do_train=True, train_batch_size=16, num_train_epochs=1.0)
  with pytest.raises(UsageError, match=r"^2 training windows make no whole batch of "
                                       r"--train_batch_size=16$"):
    tagging.run_ner(opts)
  assert not out.exists()
