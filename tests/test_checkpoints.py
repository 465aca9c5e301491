"""Tests of bert_tf.checkpoints: parity with the original code's outputs, strict loading errors,
TF1 -> Keras -> TF1 round trip, bert_tf checkpoints, and the command line."""

import glob
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from bert_tf import checkpoints
from bert_tf.configs import BertConfig
from bert_tf.errors import UsageError
from bert_tf.modeling import BertClassifier, BertEncoder, BertPretrainer, pretraining_losses

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE_ROOT = os.path.join(REPO_ROOT, "data", "google_reference")
# Every directory holding a TF1 checkpoint, its bert_config.json and an expected.npz is checked.
REFERENCE_DIRS = sorted(os.path.dirname(p)
                        for p in glob.glob(os.path.join(REFERENCE_ROOT, "*", "expected.npz")))
TF1_DIR = os.path.join(REFERENCE_ROOT, "tf1_checkpoint")
INPUT_KEYS = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids",
              "masked_lm_weights", "next_sentence_labels")


def read_all(prefix):
  reader = tf.train.load_checkpoint(prefix)
  return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def write_tf1(prefix, tensors):
  names = sorted(tensors)
  tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                    tensors=[tf.constant(tensors[n]) for n in names])
  return prefix


def features_of(expected):
  return {k: expected[k] for k in INPUT_KEYS}


def test_reference_directories_exist():
  assert TF1_DIR in REFERENCE_DIRS


@pytest.mark.parametrize("ref_dir", REFERENCE_DIRS, ids=os.path.basename)
def test_matches_original_implementation(ref_dir):
  expected = np.load(os.path.join(ref_dir, "expected.npz"))
  model = checkpoints.load_google_checkpoint(ref_dir, os.path.join(ref_dir, "bert_config.json"))
  features = features_of(expected)
  out = model(features, training=False)
  losses = pretraining_losses(features, out)
  vocab = model.bert_config.vocab_size
  got = {
      "sequence_output": out["sequence_output"],
      "pooled_output": out["pooled_output"],
      "mlm_log_probs": tf.reshape(tf.nn.log_softmax(out["mlm_logits"]), [-1, vocab]),
      "nsp_log_probs": tf.nn.log_softmax(out["nsp_logits"]),
      "mlm_loss": losses["masked_lm_loss"],
      "nsp_loss": losses["next_sentence_loss"],
  }
  for name, value in got.items():
    assert value.dtype == tf.float32
    np.testing.assert_allclose(value, expected[name], rtol=0, atol=1e-5, err_msg=name)


@pytest.fixture(scope="module")
def reference_tensors():
  return read_all(os.path.join(TF1_DIR, "bert_model.ckpt"))


def test_is_tf1_checkpoint(tmp_path):
  assert checkpoints.is_tf1_checkpoint(TF1_DIR)
  assert checkpoints.is_tf1_checkpoint(os.path.join(TF1_DIR, "bert_model.ckpt.index"))
  config = BertConfig.from_json_file(os.path.join(TF1_DIR, "bert_config.json"))
  path = checkpoints.save_bert_tf_checkpoint(BertPretrainer(config), str(tmp_path))
  assert not checkpoints.is_tf1_checkpoint(path)
  os.makedirs(tmp_path / "empty")
  with pytest.raises(UsageError, match="holds no checkpoint"):
    checkpoints.is_tf1_checkpoint(str(tmp_path / "empty"))


def test_tampered_checkpoint_lists_every_problem(tmp_path, reference_tensors):
  tensors = dict(reference_tensors)
  del tensors["bert/encoder/layer_1/attention/self/key/bias"]
  tensors["bert/encoder/layer_0/attention/self/extra/kernel"] = np.zeros([48, 48], "float32")
  tensors["cls/predictions/transform/dense/kernel"] = np.zeros([48, 47], "float32")
  tensors["bert/pooler/dense/kernel/adam_m"] = np.zeros([48, 48], "float32")  # ignored
  prefix = write_tf1(str(tmp_path / "bert_model.ckpt"), tensors)
  with pytest.raises(UsageError) as error:
    checkpoints.load_google_checkpoint(prefix, os.path.join(TF1_DIR, "bert_config.json"))
  message = str(error.value)
  assert "\n" not in message and prefix in message
  assert "1 missing from the checkpoint: bert/encoder/layer_1/attention/self/key/bias" in message
  assert "1 unexpected in the checkpoint: bert/encoder/layer_0/attention/self/extra/kernel" in message
  assert ("cls/predictions/transform/dense/kernel (checkpoint [48, 47], model [48, 48])"
          in message)
  assert "adam_m" not in message


def test_config_disagreement_is_explained(tmp_path):
  config = BertConfig.from_json_file(os.path.join(TF1_DIR, "bert_config.json"))
  values = config.to_dict()
  values.update(vocab_size=600, num_hidden_layers=2)
  config_file = str(tmp_path / "bert_config.json")
  BertConfig.from_dict(values).to_json_file(config_file)
  with pytest.raises(UsageError) as error:
    checkpoints.load_google_checkpoint(TF1_DIR, config_file)
  message = str(error.value)
  assert f"the checkpoint has vocab_size 512 but {config_file} says vocab_size=600" in message
  assert f"the checkpoint has 3 layers but {config_file} says num_hidden_layers=2" in message
  assert "unexpected in the checkpoint: bert/encoder/layer_2/" in message


def test_optimizer_slots_and_step_are_ignored(tmp_path, reference_tensors):
  tensors = dict(reference_tensors)
  for name in list(reference_tensors):
    if name != "global_step":
      tensors[name + "/adam_m"] = np.zeros_like(reference_tensors[name])
      tensors[name + "/adam_v"] = np.ones_like(reference_tensors[name])
  tensors["bert/pooler/dense/kernel/lamb_m"] = np.zeros([48, 48], "float32")
  tensors["current_loss_scale"] = np.float32(2.0 ** 15)
  prefix = write_tf1(str(tmp_path / "model.ckpt-7"), tensors)
  model = checkpoints.load_google_checkpoint(prefix, os.path.join(TF1_DIR, "bert_config.json"))
  np.testing.assert_array_equal(model.encoder.pooler.kernel,
                                reference_tensors["bert/pooler/dense/kernel"])


def test_round_trip_tf1_keras_tf1_is_bit_exact(tmp_path, reference_tensors):
  model = checkpoints.load_google_checkpoint(TF1_DIR, os.path.join(TF1_DIR, "bert_config.json"))
  step = int(reference_tensors["global_step"])
  prefix = checkpoints.export_tf1_checkpoint(model, str(tmp_path), global_step=step)
  assert tf.train.latest_checkpoint(str(tmp_path)) == prefix
  assert BertConfig.from_json_file(str(tmp_path / "bert_config.json")) == model.bert_config
  exported = read_all(prefix)
  assert sorted(exported) == sorted(reference_tensors)
  for name, value in reference_tensors.items():
    assert exported[name].dtype == value.dtype, name
    assert exported[name].tobytes() == value.tobytes(), name
  assert not glob.glob(str(tmp_path / ".*tmp*"))

  # The name-based TF1 Saver (what the original code uses) restores it into graph variables.
  graph = tf.Graph()
  with graph.as_default():
    zeros = tf.compat.v1.zeros_initializer()  # restored over; no random op (determinism is on)
    variables = {name: tf.compat.v1.get_variable(name, shape=value.shape, dtype=value.dtype,
                                                 initializer=zeros)
                 for name, value in reference_tensors.items()}
    saver = tf.compat.v1.train.Saver(var_list=variables)
    with tf.compat.v1.Session(graph=graph) as session:
      saver.restore(session, prefix)
      name = "bert/encoder/layer_2/output/LayerNorm/gamma"
      np.testing.assert_array_equal(session.run(variables[name]), reference_tensors[name])


def bert_tf_checkpoint_with_optimizer(model, directory):
  """A checkpoint in run_pretraining's layout, optimizer slots included."""
  optimizer = keras.optimizers.Adam()
  optimizer.build(model.trainable_variables)
  step = tf.Variable(42, dtype=tf.int64)
  checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, global_step=step)
  return tf.train.CheckpointManager(checkpoint, directory, max_to_keep=1).save()


def test_init_from_both_formats(tmp_path, reference_tensors):
  config_file = os.path.join(TF1_DIR, "bert_config.json")
  config = BertConfig.from_json_file(config_file)
  expected = np.load(os.path.join(TF1_DIR, "expected.npz"))
  inputs = {k: expected[k] for k in ("input_ids", "input_mask", "segment_ids")}

  # TF1 -> classifier: the encoder reproduces the original's sequence output.
  classifier = BertClassifier(config, num_classes=3)
  info = checkpoints.init_from_checkpoint(classifier, TF1_DIR)
  assert info["format"] == "tf1" and info["loaded"] == ["encoder"]
  np.testing.assert_allclose(classifier.encoder(inputs)["sequence_output"],
                             expected["sequence_output"], atol=1e-5)

  # bert_tf pretrainer checkpoint (with optimizer state) -> pretrainer, classifier, encoder.
  source = checkpoints.load_google_checkpoint(TF1_DIR, config_file)
  path = bert_tf_checkpoint_with_optimizer(source, str(tmp_path / "run"))
  assert not checkpoints.is_tf1_checkpoint(str(tmp_path / "run"))
  pretrainer = BertPretrainer(config)
  info = checkpoints.init_from_checkpoint(pretrainer, str(tmp_path / "run"))
  assert info == {"format": "bert_tf", "checkpoint": path,
                  "loaded": ["encoder", "pretraining heads"]}
  for got, want in zip(pretrainer.weights, source.weights):
    np.testing.assert_array_equal(got, want)
  for target in (BertClassifier(config, num_classes=2), BertEncoder(config)):
    info = checkpoints.init_from_checkpoint(target, path)
    encoder = target if isinstance(target, BertEncoder) else target.encoder
    assert info["loaded"] == ["encoder"]
    np.testing.assert_allclose(encoder(inputs)["sequence_output"], expected["sequence_output"],
                               atol=1e-5)

  # The documented low-level way to take only the encoder also works on this layout.
  encoder = BertEncoder(config, name="encoder")
  tf.train.Checkpoint(model=tf.train.Checkpoint(encoder=encoder)).restore(path).expect_partial()
  np.testing.assert_array_equal(encoder.pooler.kernel, source.encoder.pooler.kernel)

  # A fine-tuned classifier checkpoint restores its output layer too, when the shapes agree.
  classifier.classifier.kernel.assign(np.full([48, 3], 0.5, "float32"))
  tuned = str(tmp_path / "tuned")
  tf.train.CheckpointManager(tf.train.Checkpoint(model=classifier), tuned, 1).save()
  same_task, other_task = BertClassifier(config, 3), BertClassifier(config, 5)
  assert checkpoints.init_from_checkpoint(same_task, tuned)["loaded"] == [
      "encoder", "classifier output layer"]
  np.testing.assert_array_equal(same_task.classifier.kernel, classifier.classifier.kernel)
  assert checkpoints.init_from_checkpoint(other_task, tuned)["loaded"] == ["encoder"]


def test_bert_tf_checkpoint_mismatch_is_reported(tmp_path):
  config = BertConfig.from_json_file(os.path.join(TF1_DIR, "bert_config.json"))
  path = bert_tf_checkpoint_with_optimizer(BertPretrainer(config), str(tmp_path))
  values = dict(config.to_dict(), num_hidden_layers=4, intermediate_size=64)
  with pytest.raises(UsageError) as error:
    checkpoints.init_from_checkpoint(BertEncoder(BertConfig.from_dict(values)), path)
  message = str(error.value)
  assert "the checkpoint has 3 layers but the model's config says num_hidden_layers=4" in message
  assert "missing from the checkpoint: encoder/layer_3/" in message
  assert "encoder/layer_0/intermediate/kernel (checkpoint [48, 96], model [48, 64])" in message
  with pytest.raises(UsageError, match="no checkpoint at"):
    checkpoints.init_from_checkpoint(BertEncoder(config), str(tmp_path / "missing.ckpt"))


def run_cli(*args):
  return subprocess.run([sys.executable, "-m", "bert_tf.checkpoints", *args], capture_output=True,
                        text=True, cwd=REPO_ROOT, timeout=120)


def test_command_line_import_then_export(tmp_path, reference_tensors):
  imported, exported = str(tmp_path / "imported"), str(tmp_path / "exported")
  result = run_cli(f"--import_tf1={TF1_DIR}/bert_model.ckpt", f"--output_dir={imported}")
  assert result.returncode == 0, result.stderr
  assert os.path.exists(os.path.join(imported, "bert_config.json"))
  assert not checkpoints.is_tf1_checkpoint(imported)
  config = BertConfig.from_json_file(os.path.join(TF1_DIR, "bert_config.json"))
  # export: the config is found beside the bert_tf checkpoint.
  result = run_cli(f"--export_tf1={imported}", f"--output_dir={exported}")
  assert result.returncode == 0, result.stderr
  round_tripped = read_all(os.path.join(exported, "bert_model.ckpt"))
  assert sorted(round_tripped) == sorted(reference_tensors)
  assert all(round_tripped[n].tobytes() == v.tobytes() for n, v in reference_tensors.items())
  assert BertConfig.from_json_file(os.path.join(exported, "bert_config.json")) == config

  with pytest.raises(UsageError, match=f"--output_dir={exported} already holds a TF1 checkpoint"):
    checkpoints.export_tf1(imported, None, exported)
  with pytest.raises(UsageError, match="is already a bert_tf checkpoint"):
    checkpoints.import_tf1(imported, None, str(tmp_path / "again"))
  bare = write_tf1(str(tmp_path / "bare" / "bert_model.ckpt"), reference_tensors)
  with pytest.raises(UsageError, match="no bert_config.json next to checkpoint"):
    checkpoints.import_tf1(bare, None, str(tmp_path / "again"))
