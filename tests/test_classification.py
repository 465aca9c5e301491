"""Classification pipeline: pair packing, datasets, fine-tuning, result files, export, the CLI."""

import itertools
import os

import numpy as np
import pytest
import tensorflow as tf

from bert_tf.finetuning import classification as cls
from command_checks import TINY_CONFIG


def _original_truncate(tokens_a, tokens_b, max_length):
  """google-research/bert's `_truncate_seq_pair`, reimplemented as a reference loop."""
  a, b = list(tokens_a), list(tokens_b)
  while len(a) + len(b) > max_length:
    if len(a) > len(b):
      a.pop()
    else:
      b.pop()
  return a, b


def test_truncated_pair_lengths_match_the_original_loop():
  cases = list(itertools.product(range(0, 13), range(0, 13)))
  len_a = tf.constant([c[0] for c in cases])
  len_b = tf.constant([c[1] for c in cases])
  for budget in range(1, 12):
    got_a, got_b = (t.numpy() for t in cls.truncated_pair_lengths(len_a, len_b, budget))
    for i, (la, lb) in enumerate(cases):
      a, b = _original_truncate(range(la), range(lb), budget)
      assert (got_a[i], got_b[i]) == (len(a), len(b)), (la, lb, budget)


def test_pack_inputs_pairs_and_singles():
  ids_a = tf.ragged.constant([[5, 6, 7, 8, 9, 10], [5]])
  ids_b = tf.ragged.constant([[20, 21], [20, 21, 22, 23, 24, 25, 26]])
  packed = cls.pack_inputs(ids_a, ids_b, max_seq_length=8, cls_id=101, sep_id=102)
  # row 0: budget 5, b (2) is short -> a keeps 3; row 1: a keeps 1, b keeps 4.
  assert packed["input_ids"].numpy().tolist() == [[101, 5, 6, 7, 102, 20, 21, 102],
                                                  [101, 5, 102, 20, 21, 22, 23, 102]]
  assert packed["segment_ids"].numpy().tolist() == [[0, 0, 0, 0, 0, 1, 1, 1],
                                                    [0, 0, 0, 1, 1, 1, 1, 1]]
  assert packed["input_mask"].numpy().tolist() == [[1] * 8, [1] * 8]
  single = cls.pack_inputs(tf.ragged.constant([[5, 6, 7, 8, 9, 10, 11], [5, 6]]), None, 6, 101, 102)
  assert single["input_ids"].numpy().tolist() == [[101, 5, 6, 7, 8, 102], [101, 5, 6, 102, 0, 0]]
  assert single["input_mask"].numpy().tolist() == [[1] * 6, [1, 1, 1, 1, 0, 0]]
  assert single["segment_ids"].numpy().tolist() == [[0] * 6] * 2
  assert single["input_ids"].dtype == tf.int32


def test_result_files_are_written_as_the_original(tmp_path):
  path = str(tmp_path / "eval_results.txt")
  cls.write_eval_results(path, {"eval_loss": 0.5, "global_step": 12, "eval_accuracy": 0.75})
  assert open(path).read() == "eval_accuracy = 0.75\neval_loss = 0.5\nglobal_step = 12\n"
  assert cls.read_eval_results(path)["global_step"] == 12
  tsv = str(tmp_path / "test_results.tsv")
  cls.write_test_results(tsv, np.array([[0.25, 0.75], [1.0, 0.0]], np.float32))
  assert open(tsv).read() == "0.25\t0.75\n1.0\t0.0\n"
  assert sorted(os.listdir(tmp_path)) == ["eval_results.txt", "test_results.tsv"]  # no temp files


def test_two_replica_step_equals_one_device_step(two_cpu_mirrored):
  """Mirrored training sums gradients over replicas before clipping: same weights as one device."""
  import keras

  from bert_tf.configs import BertConfig
  from bert_tf.modeling import BertClassifier
  cpus = tf.config.list_logical_devices("CPU")
  assert len(cpus) >= 2, "tests/conftest.py should split the CPU into two logical devices"
  config = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0, max_position_embeddings=16,
                      type_vocab_size=2)
  rng = np.random.default_rng(3)
  features = {"input_ids": tf.constant(rng.integers(1, 40, (8, 8)), tf.int32),
              "input_mask": tf.ones([8, 8], tf.int32), "segment_ids": tf.zeros([8, 8], tf.int32)}
  labels = tf.constant(rng.integers(0, 3, 8), tf.int32)
  initial, trained = None, []
  for strategy in (tf.distribute.OneDeviceStrategy(cpus[0].name),
                   two_cpu_mirrored):
    with strategy.scope():
      model = BertClassifier(config, 3)
      model(features)
      if initial is None:
        initial = model.get_weights()
      model.set_weights(initial)
      optimizer = keras.optimizers.SGD(learning_rate=1.0)  # no Adam normalisation: scale shows
      optimizer.build(model.trainable_variables)
    # clip_norm small: clipping each replica's half gradient separately would give other weights.
    tuner = cls.FineTuner(model, optimizer, strategy, False, 8, clip_norm=0.05)
    data = tf.data.Dataset.from_tensors((features, labels)).repeat()
    tuner.make_train_function()(iter(strategy.experimental_distribute_dataset(data)), tf.constant(2))
    assert int(optimizer.iterations.numpy()) == 2
    trained.append(model.get_weights())
  for one, two, start in zip(*trained, initial):
    np.testing.assert_allclose(two, one, atol=2e-6)
  assert any(np.abs(one - start).max() > 1e-3 for one, start in zip(trained[0], initial))


# ---------------------------------------------------------------------------------------------
# Tokenization in tf.data = FullTokenizer + the original's convert_single_example
# ---------------------------------------------------------------------------------------------

VOCAB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "vocab",
                     "bert-base-uncased-vocab.txt")


def _original_features(tokenizer, tokens_a, tokens_b, max_seq_length):
  """google-research/bert's convert_single_example (ids, mask, segments), on FullTokenizer tokens."""
  if tokens_b:
    tokens_a, tokens_b = _original_truncate(tokens_a, tokens_b, max_seq_length - 3)
  else:
    tokens_a = tokens_a[:max_seq_length - 2]
  tokens = ["[CLS]"] + tokens_a + ["[SEP]"]
  segments = [0] * len(tokens)
  if tokens_b:
    tokens += tokens_b + ["[SEP]"]
    segments += [1] * (len(tokens_b) + 1)
  ids = tokenizer.convert_tokens_to_ids(tokens)
  pad = max_seq_length - len(ids)
  return ids + [0] * pad, [1] * len(ids) + [0] * pad, segments + [0] * pad


@pytest.fixture(scope="module")
def full_tokenizer():
  from bert_tf.text.tokenization import FullTokenizer
  return FullTokenizer(VOCAB, do_lower_case=True)


def test_dataset_features_match_the_original_conversion(data_dir, full_tokenizer):
  from bert_tf.finetuning.classifier_data import InputExample
  rows = [line.rstrip("\n").split("\t") for line in
          open(os.path.join(data_dir, "sentiment", "dev.tsv"), encoding="utf-8")][1:41]
  examples = [InputExample(f"dev-{i}", rows[i][0], rows[i + 1][0] if i % 3 else None, rows[i][1])
              for i in range(39)]
  examples.append(InputExample("x", "Naïve CAFÉ déjà-vu 東京!", "Überraschung… ok", "1"))
  encoder = cls.load_text_encoder(VOCAB, True, max_seq_length=24)
  tokenizer = full_tokenizer
  singles = [e for e in examples if e.text_b is None]
  pairs = [e for e in examples if e.text_b is not None]
  texts = [e.text_a for e in examples] + [e.text_b or "" for e in examples]
  tokens = dict(zip(texts, tokenizer.tokenize_batch(texts)))  # one batched call: fast
  for group, use_b in ((singles, False), (pairs, True)):
    ds = cls.inference_dataset(group, encoder, use_b, batch_size=7)
    got = {k: np.concatenate([b[k].numpy() for b in ds]) for k in
           ("input_ids", "input_mask", "segment_ids", "example_id")}
    assert got["example_id"].tolist() == list(range(len(group))) + [-1] * (-len(group) % 7)
    for i, e in enumerate(group):
      ids, mask, segments = _original_features(
          tokenizer, tokens[e.text_a], tokens[e.text_b] if use_b else None, 24)
      assert got["input_ids"][i].tolist() == ids, e
      assert got["input_mask"][i].tolist() == mask
      assert got["segment_ids"][i].tolist() == segments


# ---------------------------------------------------------------------------------------------
# A whole in-process run: generic pair task, encoder from the original TF1 checkpoint, export
# ---------------------------------------------------------------------------------------------

TF1_DIR = os.path.join(os.path.dirname(VOCAB), "..", "google_reference", "tf1_checkpoint")


def _sentiment_rows(data_dir, split, n):
  with open(os.path.join(data_dir, "sentiment", f"{split}.tsv"), encoding="utf-8") as f:
    return [line.rstrip("\n").split("\t") for line in f][1:n + 1]


def _small_vocab(path, texts, size):
  """A WordPiece vocab of `size` entries for these texts: specials, characters, frequent words."""
  import collections
  import re
  words = collections.Counter(w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower()))
  chars = sorted({c for w in words for c in w})
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars]
  vocab += [w for w, _ in words.most_common() if w not in vocab][:size - len(vocab)]
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(vocab[:size]) + "\n")


@pytest.fixture(scope="module")
def pair_run(tmp_path_factory):
  """Fine-tunes a generic CSV pair task from the TF1 reference checkpoint, evaluates, predicts,
  exports. Tiny learning rate: the encoder weights stay within 1e-4 of the checkpoint."""
  import csv

  from bert_tf.finetuning.classification import RunOptions, run_classifier
  data = os.path.join(os.path.dirname(VOCAB), "..")
  root = tmp_path_factory.mktemp("pair_run")
  rows = _sentiment_rows(data, "train", 120)
  splits = {"train": rows[:64], "dev": rows[64:88], "test": rows[88:108]}
  for split, part in splits.items():
    with open(root / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
      writer = csv.writer(f)
      writer.writerow(["premise", "hypothesis"] + (["verdict"] if split != "test" else []))
      for i, (text, label) in enumerate(part):
        extra = [] if split == "test" else [{"0": "neg", "1": "pos"}[label]]
        writer.writerow([text, part[(i + 1) % len(part)][0]] + extra)
  _small_vocab(str(root / "vocab.txt"), [r[0] for r in rows], 512)
  opts = RunOptions(
      task_name="generic", data_dir=str(root), vocab_file=str(root / "vocab.txt"),
      output_dir=str(root / "out"), bert_config_file=os.path.join(TF1_DIR, "bert_config.json"),
      init_checkpoint=TF1_DIR, max_seq_length=32, do_train=True, do_eval=True, do_predict=True,
      train_batch_size=8, eval_batch_size=8, predict_batch_size=8, learning_rate=1e-6,
      num_train_epochs=1.0, save_checkpoints_steps=4, text_a_column="premise",
      text_b_column="hypothesis", label_column="verdict", export_dir=str(root / "export"))
  results = run_classifier(opts)
  return root, opts, results, splits


def test_pair_run_writes_results_labels_and_checkpoints(pair_run):
  root, opts, results, splits = pair_run
  from bert_tf.finetuning.classifier_data import load_labels
  written = cls.read_eval_results(os.path.join(opts.output_dir, "eval_results.txt"))
  assert set(written) == {"eval_accuracy", "eval_loss", "global_step", "loss"}
  assert written["global_step"] == 64 // 8 and written == pytest.approx(results)
  assert 0.0 <= written["eval_accuracy"] <= 1.0 and written["eval_loss"] > 0
  assert load_labels(os.path.join(opts.output_dir, "labels.json"))["labels"] == ["neg", "pos"]
  probs = np.loadtxt(os.path.join(opts.output_dir, "test_results.tsv"), delimiter="\t")
  assert probs.shape == (len(splits["test"]), 2)  # 20 rows: the padded last batch is dropped
  np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
  assert tf.train.latest_checkpoint(opts.output_dir).endswith("ckpt-8")
  assert os.path.exists(os.path.join(opts.output_dir, "ckpt-4.index"))


def test_encoder_comes_from_the_tf1_checkpoint(pair_run):
  _, opts, _, _ = pair_run
  from bert_tf.configs import BertConfig
  from bert_tf.modeling import BertClassifier
  model = BertClassifier(BertConfig.from_json_file(opts.bert_config_file), 2)
  model({k: tf.zeros([1, 4], tf.int32) for k in ("input_ids", "input_mask", "segment_ids")})
  embedding = [w for w in model.encoder.weights if "word_embeddings" in w.path][0]
  before = embedding.numpy().copy()
  tf.train.Checkpoint(model=model).restore(
      tf.train.latest_checkpoint(opts.output_dir)).expect_partial()
  original = tf.train.load_variable(os.path.join(TF1_DIR, "bert_model.ckpt"),
                                    "bert/embeddings/word_embeddings")
  np.testing.assert_allclose(embedding.numpy(), original, atol=1e-4)  # 8 steps at lr 1e-6
  assert np.abs(before - original).max() > 1e-2  # a random init would not pass


def test_export_in_a_fresh_process_matches_the_in_process_model(pair_run):
  import json
  import subprocess
  import sys
  root, opts, _, splits = pair_run
  texts_a = [t for t, _ in splits["test"]]
  texts_b = [splits["test"][(i + 1) % len(texts_a)][0] for i in range(len(texts_a))]
  script = (
      "import json, sys\n"
      "import tensorflow as tf, tensorflow_text  # registers the tokenizer ops\n"
      "a, b = json.load(sys.stdin)\n"
      f"m = tf.saved_model.load({opts.export_dir!r})\n"
      "out = m.signatures['serving_default'](text_a=tf.constant(a), text_b=tf.constant(b))\n"
      "print(json.dumps({k: v.numpy().tolist() for k, v in out.items() if k != 'label'} | "
      "{'label': [s.decode() for s in out['label'].numpy()]}))\n")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run([sys.executable, "-c", script], input=json.dumps([texts_a, texts_b]),
                        capture_output=True, text=True, env=env, timeout=240, cwd=str(root))
  assert proc.returncode == 0, proc.stderr[-3000:]
  served = json.loads(proc.stdout.strip().splitlines()[-1])
  in_process = np.loadtxt(os.path.join(opts.output_dir, "test_results.tsv"), delimiter="\t")
  np.testing.assert_allclose(np.array(served["probabilities"]), in_process, atol=1e-5)
  assert served["label_id"] == np.argmax(in_process, axis=1).tolist()
  assert served["label"] == [["neg", "pos"][i] for i in served["label_id"]]
  with open(os.path.join(opts.export_dir, "assets.extra", "labels.json")) as f:
    info = json.load(f)
  assert info["labels"] == ["neg", "pos"] and info["inputs"] == ["text_a", "text_b"]


def test_a_second_run_resumes_from_the_output_dir(pair_run, caplog):
  import dataclasses
  import logging
  from bert_tf.finetuning.classification import run_classifier
  _, opts, _, _ = pair_run
  caplog.set_level(logging.INFO, logger="absl")
  more = dataclasses.replace(opts, num_train_epochs=2.0, do_eval=False, do_predict=False,
                             export_dir=None)
  run_classifier(more)
  assert "Resuming from" in caplog.text and "ckpt-8" in caplog.text
  assert "Initializing the encoder" not in caplog.text
  assert tf.train.latest_checkpoint(opts.output_dir).endswith("ckpt-16")

# ---------------------------------------------------------------------------------------------
# The command line, end to end on a slice of the bundled sentiment data
# ---------------------------------------------------------------------------------------------

def _run_cli(repo_root, args, cwd):
  import subprocess
  import sys
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable, os.path.join(repo_root, "run_classifier.py")] + args,
                        capture_output=True, text=True, env=env, timeout=300, cwd=cwd)


def _sentiment_slice(data_dir, root, sizes):
  os.makedirs(root, exist_ok=True)
  for split, n in sizes.items():
    with open(os.path.join(data_dir, "sentiment", f"{split}.tsv"), encoding="utf-8") as f:
      lines = f.readlines()[:n + 1]  # header + n rows
    with open(os.path.join(root, f"{split}.tsv"), "w", encoding="utf-8") as f:
      f.writelines(lines)


def test_run_classifier_cli_end_to_end(tmp_path, data_dir, repo_root):
  import json
  _sentiment_slice(data_dir, str(tmp_path / "data"), {"train": 96, "dev": 40, "test": 30})
  (tmp_path / "bert_config.json").write_text(json.dumps(TINY_CONFIG))
  out = tmp_path / "out"
  proc = _run_cli(repo_root, [
      "--task_name=sst-2", f"--data_dir={tmp_path / 'data'}", f"--vocab_file={VOCAB}",
      f"--bert_config_file={tmp_path / 'bert_config.json'}", "--do_train", "--do_eval",
      "--do_predict", f"--output_dir={out}", "--max_seq_length=24", "--train_batch_size=16",
      "--eval_batch_size=16", "--predict_batch_size=16", "--num_train_epochs=1",
      "--learning_rate=1e-3", "--save_checkpoints_steps=100"], cwd=str(tmp_path))
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = cls.read_eval_results(str(out / "eval_results.txt"))
  assert results["global_step"] == 96 // 16
  assert {"eval_accuracy", "eval_loss", "loss"} <= set(results)
  rows = (out / "test_results.tsv").read_text().splitlines()
  assert len(rows) == 30 and all(len(r.split("\t")) == 2 for r in rows)
  assert os.path.exists(out / "ckpt-6.index") and os.listdir(out / "eval")
  assert json.loads((out / "labels.json").read_text())["labels"] == ["0", "1"]


def test_run_classifier_cli_reports_a_bad_line_on_one_line(tmp_path, repo_root):
  (tmp_path / "data").mkdir()
  (tmp_path / "data" / "train.tsv").write_text("sentence\tlabel\ngood\t1\nbad\trow\t0\n")
  (tmp_path / "bert_config.json").write_text(__import__("json").dumps(TINY_CONFIG))
  proc = _run_cli(repo_root, [
      "--task_name=sst-2", f"--data_dir={tmp_path / 'data'}", f"--vocab_file={VOCAB}",
      f"--bert_config_file={tmp_path / 'bert_config.json'}", "--do_train",
      "--max_seq_length=24", f"--output_dir={tmp_path / 'out'}"], cwd=str(tmp_path))
  assert proc.returncode == 2
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
  assert errors == [f"error: {tmp_path / 'data' / 'train.tsv'}:3: expected 2 tab-separated "
                    "fields, found 3"], proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr


def test_run_options_errors_name_the_flag(tmp_path, data_dir):
  import dataclasses
  import json
  import re

  from bert_tf.finetuning.classification import RunOptions, run_classifier
  from bert_tf.errors import UsageError
  (tmp_path / "bert_config.json").write_text(json.dumps(TINY_CONFIG))
  base = RunOptions(task_name="sst-2", data_dir=os.path.join(data_dir, "sentiment"),
                    vocab_file=VOCAB, output_dir=str(tmp_path / "out"),
                    bert_config_file=str(tmp_path / "bert_config.json"), max_seq_length=24)
  cases = [
      (dict(), "at least one of --do_train"),
      (dict(do_eval=True), "holds no checkpoint and no --init_checkpoint"),
      (dict(do_train=True, max_seq_length=64), "--max_seq_length=64 is longer than"),
      (dict(do_train=True, task_name="sst-3"), "--task_name='sst-3'"),
      (dict(do_train=True, warmup_proportion=1.5), "--warmup_proportion"),
      (dict(do_train=True, bert_config_file=None), "--bert_config_file is required"),
  ]
  for change, message in cases:
    with pytest.raises(UsageError, match=re.escape(message)):
      run_classifier(dataclasses.replace(base, **change))
  assert not os.path.exists(tmp_path / "out")  # nothing written for a refused run
