"""The pretraining loop: learning, strategy/precision/XLA/accumulation equivalences, exact resume,
the NaN guard and the command line."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from bert_tf.pretraining import training
from tests import pretraining_testdata as td


@pytest.fixture(autouse=True)
def _float32_policy_after_each_test():
  yield
  keras.mixed_precision.set_global_policy("float32")


@pytest.fixture(scope="module")
def records(tmp_path_factory):
  """Two shards (24 examples, a manifest each) and a held-out file."""
  folder = tmp_path_factory.mktemp("records")
  paths = [td.write_tfrecord(str(folder / f"train-{i}.tfrecord"), td.make_records(12, seed=i))
           for i in range(2)]
  held_out = td.write_tfrecord(str(folder / "eval.tfrecord"), td.make_records(16, seed=9))
  return ",".join(paths), held_out


@pytest.fixture(scope="module")
def reference_run(records, tmp_path_factory):
  """One device, float32, no XLA, global batch 8, 4 steps: what the equivalence tests compare to."""
  return _train(tmp_path_factory.mktemp("reference"), records[0])


def _params(output_dir, input_file, **overrides):
  values = dict(bert_config=td.tiny_config(), output_dir=str(output_dir), input_file=input_file,
                max_seq_length=td.SEQ_LENGTH, max_predictions_per_seq=td.PREDICTIONS, do_train=True,
                train_batch_size=8, learning_rate=1e-2, num_train_steps=4, num_warmup_steps=1,
                save_checkpoints_steps=100, log_steps=1, steps_per_loop=1, shuffle_buffer_size=32, seed=5)
  values.update(overrides)
  return training.PretrainingParams(**values)


def _train(output_dir, input_file, strategy=None, **overrides):
  """Runs run_pretraining; returns (losses logged per step, final weights by checkpoint key)."""
  params = _params(output_dir, input_file, **overrides)
  training.set_precision_policy(params.mixed_precision)
  training.run_pretraining(params, strategy or training.create_strategy("one_device"))
  return _logged(output_dir, "loss"), _weights(output_dir)


def _logged(output_dir, key):
  with open(os.path.join(output_dir, "train_log.jsonl")) as f:
    return [json.loads(line)[key] for line in f]


def _weights(output_dir):
  """Every variable of the latest checkpoint: model weights (most are keyed under the optimizer,
  which tracks them too), optimizer moments and steps."""
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(output_dir)))
  return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
          if k not in ("_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter/.ATTRIBUTES/VARIABLE_VALUE")}


def _assert_same_weights(a, b, rtol, atol):
  assert a.keys() == b.keys() and len(a) > 10
  for key in a:
    np.testing.assert_allclose(a[key], b[key], rtol=rtol, atol=atol, err_msg=key)


def test_loss_goes_down_on_the_bundled_corpus(tmp_path, data_dir):
  # TFRecords of data/corpus/sample_text.txt written by google-research/bert's own script.
  corpus = os.path.join(data_dir, "google_reference", "sample_text_s128_p20_d5.tfrecord")
  config = td.tiny_config(vocab_size=30522)
  common = dict(bert_config=config, max_seq_length=128, max_predictions_per_seq=20, eval_batch_size=32,
                max_eval_steps=2, train_batch_size=16, learning_rate=1e-2, num_warmup_steps=5)
  before = training.run_pretraining(
      _params(tmp_path / "before", corpus, do_train=False, do_eval=True, **common),
      training.create_strategy("one_device"))
  after = training.run_pretraining(
      _params(tmp_path / "after", corpus, do_eval=True, num_train_steps=40, **common),
      training.create_strategy("one_device"))
  assert before["global_step"] == 0 and after["global_step"] == 40
  assert after["masked_lm_loss"] < before["masked_lm_loss"] - 2.0
  assert after["masked_lm_accuracy"] > before["masked_lm_accuracy"] + 0.03
  with open(tmp_path / "after" / "eval_results.txt") as f:
    lines = f.read().splitlines()
  assert [line.split(" = ")[0] for line in lines] == [
      "global_step", "loss", "masked_lm_accuracy", "masked_lm_loss", "next_sentence_accuracy",
      "next_sentence_loss"]
  assert json.load(open(tmp_path / "after" / "bert_config.json"))["vocab_size"] == 30522
  assert os.listdir(tmp_path / "after" / "train") and os.listdir(tmp_path / "after" / "eval")


def test_mirrored_on_two_devices_matches_one_device(tmp_path, records, reference_run, two_cpu_mirrored):
  assert isinstance(training.create_strategy("mirrored", devices=["/cpu:0", "/cpu:1"]),
                    tf.distribute.MirroredStrategy)
  mirrored = two_cpu_mirrored
  assert mirrored.num_replicas_in_sync == 2
  one_losses, one_weights = reference_run
  two_losses, two_weights = _train(tmp_path, records[0], strategy=mirrored)
  assert len(one_losses) == 4
  np.testing.assert_allclose(two_losses, one_losses, rtol=1e-5)
  _assert_same_weights(two_weights, one_weights, rtol=1e-4, atol=1e-6)


def test_accumulating_k_batches_of_b_matches_one_batch_of_k_times_b(tmp_path, records, reference_run):
  big_losses, big_weights = reference_run  # batch 8
  acc_losses, acc_weights = _train(tmp_path, records[0], train_batch_size=2,
                                   gradient_accumulation_steps=4)
  np.testing.assert_allclose(acc_losses, big_losses, rtol=1e-5)
  _assert_same_weights(acc_weights, big_weights, rtol=1e-4, atol=1e-6)


def test_xla_on_and_off_match(tmp_path, records, reference_run):
  off_losses, off_weights = reference_run
  on_losses, on_weights = _train(tmp_path, records[0], jit_compile=True)
  np.testing.assert_allclose(on_losses, off_losses, rtol=1e-4)
  _assert_same_weights(on_weights, off_weights, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_low_precision_policies_learn(tmp_path, records, precision):
  _, held_out = records
  losses, weights = _train(tmp_path, records[0], mixed_precision=precision, num_train_steps=30,
                           log_steps=10, do_eval=True, eval_input_file=held_out)
  assert keras.mixed_precision.global_policy().compute_dtype == precision
  assert all(np.isfinite(losses)) and losses[-1] < losses[0] - 0.5
  assert all(w.dtype in (np.float32, np.int64) for w in weights.values())  # variables stay float32
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(tmp_path)))
  has_loss_scale = any("dynamic_scale" in k for k in reader.get_variable_to_shape_map())
  assert has_loss_scale == (precision == "float16")


def test_killed_run_resumes_to_the_same_weights(tmp_path, records, monkeypatch):
  # Dropout on, 8 steps crossing epochs (24 examples, batch 8), checkpoints every 3 steps.
  common = dict(bert_config=td.tiny_config(dropout=0.1), num_train_steps=8, save_checkpoints_steps=3,
                steps_per_loop=2)
  full_losses, full_weights = _train(tmp_path / "full", records[0], **common)

  save = training.CheckpointKeeper.save

  def save_then_die(keeper, step):
    path = save(keeper, step)
    if step == 3:
      raise KeyboardInterrupt("killed after the step-3 checkpoint")
    return path

  monkeypatch.setattr(training.CheckpointKeeper, "save", save_then_die)
  with pytest.raises(KeyboardInterrupt):
    _train(tmp_path / "killed", records[0], **common)
  monkeypatch.setattr(training.CheckpointKeeper, "save", save)
  assert tf.train.latest_checkpoint(str(tmp_path / "killed")).endswith("ckpt-3")
  resumed_losses, resumed_weights = _train(tmp_path / "killed", records[0], **common)

  assert _logged(tmp_path / "killed", "step") == _logged(tmp_path / "full", "step") == [2, 3, 5, 6, 8]
  np.testing.assert_array_equal(resumed_losses, full_losses)
  _assert_same_weights(resumed_weights, full_weights, rtol=0, atol=0)
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(tmp_path / "killed")))
  assert reader.get_tensor("global_step/.ATTRIBUTES/VARIABLE_VALUE") == 8


def test_nan_loss_stops_at_its_step_and_keeps_the_last_good_checkpoint(tmp_path, records):
  _train(tmp_path, records[0], num_train_steps=2, save_checkpoints_steps=2)
  poisoned = td.write_tfrecord(str(tmp_path / "nan.tfrecord"), td.make_records(8, nan_weights=True))
  with pytest.raises(training.TrainingDivergedError, match=r"nan at step 3.*ckpt-2"):
    _train(tmp_path, poisoned, num_train_steps=6, save_checkpoints_steps=6, steps_per_loop=3)
  assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-2")


def test_step_clips_the_global_norm_after_the_replica_sum(tmp_path, records):
  model_dir = tmp_path / "clip"
  strategy = training.create_strategy("one_device")
  params = _params(model_dir, records[0])
  from bert_tf.pretraining import input_pipeline
  from bert_tf.modeling import BertPretrainer
  with strategy.scope():
    model = BertPretrainer(params.bert_config)
    sgd = keras.optimizers.SGD(learning_rate=1.0, global_clipnorm=1e-3)
  task = training.PretrainingTask(model, sgd, strategy)
  before = [v.numpy() for v in model.trainable_variables]
  files = input_pipeline.check_pretraining_files(records[0], td.SEQ_LENGTH, td.PREDICTIONS)
  iterator = iter(input_pipeline.distributed_dataset(strategy, files, 8, td.SEQ_LENGTH, td.PREDICTIONS))
  totals, steps, _ = task.train_loop(iterator, tf.constant(1))
  moved = np.sqrt(sum(np.sum((v.numpy() - b) ** 2) for v, b in zip(model.trainable_variables, before)))
  grad_norm = float(totals[training.TRAIN_STATS.index("grad_norm")])
  assert int(steps) == 1 and grad_norm > 1e-2  # the raw gradient is far larger than the clip norm
  np.testing.assert_allclose(moved, 1e-3, rtol=1e-3)


def _cli(*args):
  return subprocess.run([sys.executable, "run_pretraining.py", *args], capture_output=True, text=True,
                        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), timeout=300)


def test_command_line_trains_and_reports_a_manifest_mismatch_on_one_line(tmp_path, records):
  config = tmp_path / "bert_config.json"
  td.tiny_config().to_json_file(str(config))
  common = [f"--bert_config_file={config}", f"--input_file={records[0]}", f"--output_dir={tmp_path / 'out'}",
            "--do_train", "--train_batch_size=4", "--num_train_steps=2", "--num_warmup_steps=0",
            "--max_predictions_per_seq=4"]
  bad = _cli(*common, "--max_seq_length=32")
  assert bad.returncode == 2
  error_lines = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
  assert len(error_lines) == 1 and "train-0.tfrecord" in error_lines[0] and "Traceback" not in bad.stderr
  good = _cli(*common, "--max_seq_length=16", "--do_eval", f"--eval_input_file={records[1]}", "--log_steps=1")
  assert good.returncode == 0, good.stderr[-2000:]
  with open(tmp_path / "out" / "eval_results.txt") as f:
    assert "global_step = 2\n" in f.read()
  assert len(_logged(tmp_path / "out", "loss")) == 2


def test_init_checkpoint_loads_the_weights_of_a_previous_run(tmp_path, records):
  _, held_out = records
  _train(tmp_path / "a", records[0], num_train_steps=2, do_eval=True, eval_input_file=held_out)
  trained = _eval_results(tmp_path / "a")
  fresh = training.run_pretraining(
      _params(tmp_path / "b", records[0], do_train=False, do_eval=True, eval_input_file=held_out,
              init_checkpoint=tf.train.latest_checkpoint(str(tmp_path / "a"))),
      training.create_strategy("one_device"))
  assert fresh["global_step"] == 0  # weights only: a new run, not a resume
  assert fresh["masked_lm_loss"] == pytest.approx(trained["masked_lm_loss"], rel=1e-6)
  assert fresh["next_sentence_loss"] == pytest.approx(trained["next_sentence_loss"], rel=1e-6)


def _eval_results(output_dir):
  with open(os.path.join(output_dir, "eval_results.txt")) as f:
    return {k: float(v) for k, v in (line.split(" = ") for line in f.read().splitlines())}
