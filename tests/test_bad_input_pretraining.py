"""Bad input and faults of run_pretraining.py, run as a user runs it (a subprocess).

Each case asserts the exit status, the one `error:` line naming the flag or file at fault, no
traceback, and that nothing was written (no --output_dir). The errors that the checks before
TensorFlow find also print nothing else: stderr is the error line alone (no CUDA/absl start-up
lines, which only TensorFlow's import prints). Cases that were already handled are in the matrix
too, so that it documents the command's behaviour (docs/errors.md). The numbers are those of
issue 18's list.
"""

import functools
import gzip
import json
import os
import resource
import signal
import subprocess
import sys
import uuid

import pytest

import pretraining_testdata as td
from command_checks import assert_quiet_start_up, assert_resumed_past, error_line, run_command
from conftest import REPO_ROOT

SCRIPT = os.path.join(REPO_ROOT, "run_pretraining.py")
SHAPE = [f"--max_seq_length={td.SEQ_LENGTH}", f"--max_predictions_per_seq={td.PREDICTIONS}"]

_run = functools.partial(run_command, SCRIPT)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  """A tiny config, good records with a manifest, and bad variants of them."""
  root = tmp_path_factory.mktemp("data")
  config = root / "bert_config.json"
  td.tiny_config().to_json_file(str(config))
  small_vocab = root / "small_vocab_config.json"
  td.tiny_config(vocab_size=32).to_json_file(str(small_vocab))
  good = td.write_tfrecord(str(root / "train.tfrecord"), td.make_records(24))
  raw = open(good, "rb").read()
  manifest = json.load(open(good + ".manifest.json"))
  paths = {"root": root, "config": config, "small_vocab": small_vocab, "good": good}

  def variant(name, content, manifest_changes=None):
    path = root / name
    path.write_bytes(content)
    if manifest_changes is not None:
      (root / (name + ".manifest.json")).write_text(json.dumps(dict(manifest, **manifest_changes)))
    paths[name] = str(path)

  variant("empty.tfrecord", b"")                                    # no manifest
  variant("zero.tfrecord", b"", {"num_instances": 0})               # a manifest saying 0
  variant("cut.tfrecord", raw[:len(raw) - 100], {})                 # ends inside a record
  sizes = _record_ends(raw)
  variant("short.tfrecord", raw[:sizes[-2]], {})                    # one record missing
  variant("random.tfrecord", os.urandom(4096))
  variant("text.tfrecord", b"this is text, not records\n" * 20)
  # A gzip file whose records end inside one (read only by TensorFlow). Not a gzip stream cut in
  # the middle: TensorFlow's reader reports one of those only when the cut falls inside a record of
  # what it has decompressed so far, and the bytes (protobuf map order) change from one process to
  # the next, so such a cut is sometimes read as a clean end of file (see docs/errors.md).
  variant("cut.tfrecord.gz", gzip.compress(raw[:len(raw) - 100], mtime=0))
  variant("empty.tfrecord.gz", gzip.compress(b""))
  (root / "folder").mkdir()
  paths["folder"] = str(root / "folder")
  return paths


def _record_ends(raw):
  """Byte offsets where each record of an uncompressed TFRecord ends."""
  import struct
  ends, offset = [], 0
  while offset < len(raw):
    offset += 12 + struct.unpack_from("<Q", raw, offset)[0] + 4
    ends.append(offset)
  return ends


def _args(data, out, input_file=None, do_train=True, **flags):
  values = {"bert_config_file": data["config"], "input_file": input_file or data["good"],
            "output_dir": out, "train_batch_size": 4, "eval_batch_size": 4, "num_train_steps": 2,
            "num_warmup_steps": 0, "save_checkpoints_steps": 1, "max_eval_steps": 2}
  values.update(flags)
  args = [f"--{k}={v}" for k, v in values.items() if v is not None and not isinstance(v, bool)]
  args += [f"--{k}" if v else f"--no{k}" for k, v in values.items() if isinstance(v, bool)]
  return args + SHAPE + (["--do_train"] if do_train else [])


def test_flag_and_file_errors_come_before_tensorflow_without_noise(data, tmp_path):
  """Issue 18, cases 1, 3, 5, 7, 9, 10 and 11: found before TensorFlow is imported (stderr is the
  error line alone) and before anything is written."""
  out = tmp_path / "out"
  d = data
  config = d["config"]
  last = _record_ends(open(d["good"], "rb").read())[-2]  # where the last record starts
  not_a_dir = tmp_path / "a_file"
  not_a_dir.write_text("x")
  cases = [
      # Already handled (now without TensorFlow's start-up).
      (_args(d, out, do_train=False), "at least one of --do_train or --do_eval must be true"),
      (_args(d, out, train_batch_size=0), "--train_batch_size must be >= 1, got 0"),
      (_args(d, out, bert_config_file=None), "--bert_config_file is required"),
      (_args(d, out, input_file=tmp_path / "none*.tfrecord"),
       f"--input_file: no file matches {str(tmp_path / 'none*.tfrecord')!r}"),
      (_args(d, out) + ["--max_seq_length=32"],
       f"{d['good']}: written with max_seq_length={td.SEQ_LENGTH} max_predictions_per_seq="
       f"{td.PREDICTIONS} (its manifest), but training uses --max_seq_length=32 "
       f"--max_predictions_per_seq={td.PREDICTIONS}; pass the values the data was made with"),
      (_args(d, out) + ["--max_seq_length=256"],
       f"--max_seq_length (256) is longer than max_position_embeddings (128) of {config}"),
      # Before TensorFlow now: a missing config or checkpoint, an output path that is a file.
      (_args(d, out, bert_config_file=tmp_path / "none.json"),
       f"--bert_config_file={tmp_path / 'none.json'}: file not found"),
      (_args(d, out, init_checkpoint=tmp_path / "ckpt" / "model.ckpt"),
       f"--init_checkpoint={tmp_path / 'ckpt' / 'model.ckpt'}: no such checkpoint (neither a "
       f"folder nor {tmp_path / 'ckpt' / 'model.ckpt'}.index exists)"),
      (_args(d, not_a_dir), f"--output_dir={not_a_dir}: exists and is not a directory"),
      # 1: no records (it looped forever on empty epochs).
      (_args(d, out, input_file=d["empty.tfrecord"]),
       f"--input_file: the training files hold no records: {d['empty.tfrecord']}"),
      (_args(d, out, input_file=f"{d['zero.tfrecord']},{d['empty.tfrecord']}"),
       f"--input_file: the training files hold no records: {d['zero.tfrecord']}, "
       f"{d['empty.tfrecord']}"),
      # 3: truncated (a raw DataLossError without the file's name, or nothing at all).
      (_args(d, out, input_file=d["cut.tfrecord"]),
       f"{d['cut.tfrecord']}: truncated or corrupt TFRecord (record 24 at byte {last} needs "
       f"{os.path.getsize(d['good']) - last} bytes, only "
       f"{os.path.getsize(d['cut.tfrecord']) - last} remain); write it again or leave it out of "
       "the input"),
      (_args(d, out, input_file=d["short.tfrecord"]),
       f"{d['short.tfrecord']}: truncated or corrupt TFRecord (its manifest says 24 records, the "
       "file holds 23); write it again or leave it out of the input"),
      # 5: ids beyond the config's vocab_size (an InvalidArgumentError after the model was built).
      (_args(d, out, bert_config_file=d["small_vocab"]),
       f"{d['small_vocab']}: vocab_size is 32, but {d['good']}.manifest.json says its records "
       f"use a vocab of {td.VOCAB_SIZE} ids; use the config of the model the data was made for "
       "(or data made with its vocab)"),
      # 7: evaluating random weights, exit 0.
      (_args(d, out, do_train=False, do_eval=True),
       f"--do_eval: --output_dir={out} holds no checkpoint to evaluate and no --init_checkpoint "
       "is given (random weights would give meaningless numbers); train first or pass "
       "--init_checkpoint"),
      # 11: a folder, random bytes, text.
      (_args(d, out, input_file=d["folder"]),
       f"--input_file: {d['folder']} is a directory; name the files in it, e.g. "
       f"{d['folder']}/*.tfrecord"),
      (_args(d, out, input_file=d["random.tfrecord"]),
       f"{d['random.tfrecord']}: not a TFRecord file (its first record header fails its "
       "checksum) (if it is gzip-compressed, give it a .gz suffix)"),
      (_args(d, out, input_file=d["text.tfrecord"]),
       f"{d['text.tfrecord']}: not a TFRecord file (its first record header fails its "
       "checksum) (if it is gzip-compressed, give it a .gz suffix)"),
  ]
  for args, message in cases:
    proc = _run(args)
    assert proc.returncode == 2, (args, proc.stderr[-3000:])
    assert error_line(proc) == message, args
    assert proc.stderr == f"error: {message}\n", args  # no TensorFlow start-up lines
    assert proc.stdout == ""
    assert not out.exists(), args


@pytest.fixture
def read_only_dir(tmp_path):
  """A folder this process cannot write: a read-only tmpfs as root (chmod does not stop root),
  a chmod 555 folder otherwise."""
  path = tmp_path / f"ro-{uuid.uuid4().hex[:6]}"
  path.mkdir()
  if os.geteuid() != 0:
    path.chmod(0o555)
    yield path
    path.chmod(0o755)
    return
  proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)],
                        capture_output=True, text=True)
  if proc.returncode != 0:
    pytest.skip(f"cannot mount a read-only tmpfs here ({proc.stderr.strip()})")
  yield path
  subprocess.run(["umount", str(path)], check=True)


def test_a_read_only_output_dir_is_refused_before_tensorflow(data, read_only_dir):
  """Issue 18, case 6: a raw traceback at the first write."""
  why = "a read-only file system" if os.geteuid() == 0 else "no write permission"
  proc = _run(_args(data, read_only_dir))
  assert proc.returncode == 2
  assert proc.stderr == f"error: --output_dir={read_only_dir}: not writable ({why})\n"
  nested = read_only_dir / "run1"
  proc = _run(_args(data, nested))
  assert proc.stderr == (f"error: --output_dir={nested}: not writable ({read_only_dir}: {why})\n")


def _file_size_limit(max_bytes):
  """preexec_fn: writes past `max_bytes` fail with EFBIG ("File too large"), as on a full disk."""
  def apply():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the writer
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
  return apply


def test_a_checkpoint_that_cannot_be_written_is_one_line_and_leaves_no_partial_checkpoint(
    data, tmp_path):
  """A full disk while training (here the file size limit, as any CI can set it): the checkpoint
  write failed with a traceback and left its ckpt-N_temp folder."""
  out = tmp_path / "out"
  proc = _run(_args(data, out), preexec_fn=_file_size_limit(50000))  # a checkpoint is ~90 KB
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert error_line(proc) == (f"--output_dir={out}: cannot write (File too large); free space "
                               "or choose another folder; no checkpoint was written")
  assert not [n for n in os.listdir(out) if n.startswith("ckpt")], os.listdir(out)


def test_a_bad_init_checkpoint_is_refused_before_anything_is_written(data, tmp_path):
  """Issue 18, case 9: the output folder was created before --init_checkpoint failed to load."""
  broken = tmp_path / "ckpt"
  broken.mkdir()
  (broken / "model.ckpt.index").write_bytes(b"not a checkpoint index")
  out = tmp_path / "out"
  proc = _run(_args(data, out, init_checkpoint=broken / "model.ckpt"))
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert error_line(proc) == (f"{broken / 'model.ckpt'}: cannot read checkpoint "
                               f"{broken / 'model.ckpt'}: file is too short to be an sstable")
  assert_quiet_start_up(proc)
  assert not out.exists()


def test_a_truncated_gzip_file_is_named_when_training_reaches_its_end(data, tmp_path):
  """Case 3 for a gzip file without a manifest, which only TensorFlow reads: TensorFlow's
  DataLossError names a byte offset only."""
  out = tmp_path / "out"
  proc = _run(_args(data, out, input_file=data["cut.tfrecord.gz"], num_train_steps=10,
                    save_checkpoints_steps=100))
  assert proc.returncode == 2, proc.stderr[-3000:]
  message = error_line(proc)
  assert message.startswith(f"{data['cut.tfrecord.gz']}: truncated or corrupt TFRecord (")
  assert message.endswith("); write it again or leave it out of the input")
  assert_quiet_start_up(proc)
  assert not out.exists() or not [n for n in os.listdir(out) if n.startswith("ckpt-")]


def test_gzip_files_without_records_are_refused_before_the_model_is_built(data):
  """Case 1 for gzip files without a manifest (an empty stream), which only TensorFlow reads;
  the training stream over them waited forever for its first batch."""
  from bert_tf.errors import UsageError
  from bert_tf.pretraining import input_pipeline
  files = input_pipeline.check_pretraining_files(data["empty.tfrecord.gz"], td.SEQ_LENGTH,
                                                 td.PREDICTIONS)
  assert files[0].num_instances == 0 or files[0].num_instances is None
  with pytest.raises(UsageError) as error:
    input_pipeline.require_records(files, "--input_file", "training")
  assert str(error.value) == (f"--input_file: the training files hold no records: "
                              f"{data['empty.tfrecord.gz']}")
  good = input_pipeline.check_pretraining_files(
      f"{data['empty.tfrecord.gz']},{data['good']}", td.SEQ_LENGTH, td.PREDICTIONS)
  input_pipeline.require_records(good, "--input_file", "training")  # one file with records


def _checkpoints(output_dir, steps):
  """Checkpoints of the tiny model at `steps` in `output_dir`, as run_pretraining writes them
  (built in this process: no training needed to test restoring)."""
  from bert_tf.pretraining import training
  params = training.PretrainingParams(
      bert_config=td.tiny_config(), output_dir=str(output_dir), do_eval=True,
      max_seq_length=td.SEQ_LENGTH, max_predictions_per_seq=td.PREDICTIONS)
  strategy = training.create_strategy("one_device")
  task, checkpoint = training.build_pretraining(params, strategy)
  keeper = training.CheckpointKeeper(checkpoint, str(output_dir), strategy)
  for step in steps:
    task.global_step.assign(step)
    keeper.save(step)


def test_a_truncated_latest_checkpoint_falls_back_to_the_previous_one(data, tmp_path):
  """Issue 18, case 4: a raw IndexError from restore_latest, naming no checkpoint. A preempted
  writer leaves the newest checkpoint cut short: the run resumes from the one before, saying so."""
  out = tmp_path / "out"
  _checkpoints(out, [1, 2])
  index = out / "ckpt-2.index"
  index.write_bytes(index.read_bytes()[:300])
  proc = _run(_args(data, out, do_train=False, do_eval=True))
  assert_resumed_past(proc, out / "ckpt-2", out / "ckpt-1")
  assert "global_step = 1\n" in (out / "eval_results.txt").read_text()
  assert_quiet_start_up(proc)


def test_no_checkpoint_that_can_be_read_is_an_error_naming_the_newest(tmp_path):
  """Case 4 when every checkpoint is broken: an error, not random weights."""
  from bert_tf.checkpoints.resume import checkpoint_candidates
  from bert_tf.errors import UsageError
  from bert_tf.pretraining import training
  out = tmp_path / "out"
  _checkpoints(out, [1, 2])
  index = out / "ckpt-2.index"
  index.write_bytes(index.read_bytes()[:300])
  data_file = out / "ckpt-1.data-00000-of-00001"
  data_file.write_bytes(data_file.read_bytes()[:100])
  params = training.PretrainingParams(bert_config=td.tiny_config(), output_dir=str(out),
                                      do_eval=True)
  strategy = training.create_strategy("one_device")
  _, checkpoint = training.build_pretraining(params, strategy)
  keeper = training.CheckpointKeeper(checkpoint, str(out), strategy)
  assert checkpoint_candidates(str(out)) == [str(out / "ckpt-2"), str(out / "ckpt-1")]
  with pytest.raises(UsageError) as error:
    keeper.restore_latest()
  message = str(error.value)
  assert message.startswith(f"--output_dir={out}: no checkpoint can be restored (the newest, "
                            f"{out / 'ckpt-2'}: ")
  assert message.endswith("; 2 tried); delete the broken ones or choose another --output_dir")


def test_a_checkpoint_of_another_config_is_named_not_skipped_as_broken(tmp_path):
  """A readable checkpoint whose shapes differ from the model (the config changed) is not a
  truncated one: the older checkpoints would not fit either, so there is no fallback."""
  import dataclasses

  from bert_tf.errors import UsageError
  from bert_tf.pretraining import training
  out = tmp_path / "out"
  _checkpoints(out, [1, 2])
  params = training.PretrainingParams(
      bert_config=dataclasses.replace(td.tiny_config(), intermediate_size=48),
      output_dir=str(out), do_eval=True)
  strategy = training.create_strategy("one_device")
  _, checkpoint = training.build_pretraining(params, strategy)
  with pytest.raises(UsageError) as error:
    training.CheckpointKeeper(checkpoint, str(out), strategy).restore_latest()
  message = str(error.value)
  assert message.startswith(f"{out / 'ckpt-2'}: does not match the model of the bert config ("), message
  assert message.endswith("); use the config it was trained with or another --output_dir")


# ----------------------------------------------------------------------------------------------
# The checks without a command line.

def test_crc32c_is_the_castagnoli_checksum_tfrecords_use(data):
  from bert_tf.pretraining import run_checks
  assert run_checks.crc32c(b"123456789") == 0xE3069283  # the standard check value
  raw = open(data["good"], "rb").read()
  assert run_checks.masked_crc32c(raw[:8]) == int.from_bytes(raw[8:12], "little")
  assert run_checks.count_tfrecord_records(data["good"]) == 24


def test_past_the_framing_budget_manifest_counts_are_trusted(data, monkeypatch):
  """Large inputs: only the first FRAMING_CHECK_MAX_BYTES are walked; a truncated file after
  them is reported when training reads it (see the gzip case above)."""
  from bert_tf.errors import UsageError
  from bert_tf.pretraining import run_checks
  spec = f"{data['good']},{data['short.tfrecord']}"
  args = ("--input_file", td.SEQ_LENGTH, td.PREDICTIONS, td.VOCAB_SIZE, "config", "training")
  with pytest.raises(UsageError, match="its manifest says 24 records, the file holds 23"):
    run_checks.check_input_files(spec, *args)
  monkeypatch.setattr(run_checks, "FRAMING_CHECK_MAX_BYTES", 100)
  checked = run_checks.check_input_files(spec, *args)
  assert [f.num_records for f in checked] == [24, 24]


def test_a_data_loss_error_is_traced_to_its_file(data):
  """TensorFlow's DataLossError names a byte offset only; the message names the file."""
  import tensorflow as tf
  from bert_tf.pretraining import run_checks
  error = tf.errors.DataLossError(None, None, "truncated record at 1234")
  assert run_checks.data_loss_message(error, [data["good"], data["short.tfrecord"]]) == (
      f"{data['good']}, {data['short.tfrecord']}: truncated or corrupt TFRecord data (truncated "
      "record at 1234)")  # the framing is whole: the bytes inside a record were bad
  message = run_checks.data_loss_message(error, [f"{data['good']},{data['cut.tfrecord.gz']}"])
  assert message.startswith(f"{data['cut.tfrecord.gz']}: truncated or corrupt TFRecord (")


def test_ids_beyond_the_vocab_are_found_in_the_first_record_without_a_manifest(tmp_path):
  """Case 5 for files without a manifest: the first record's largest id against vocab_size."""
  from bert_tf.errors import UsageError
  from bert_tf.pretraining import input_pipeline
  path = td.write_tfrecord(str(tmp_path / "x.tfrecord"), td.make_records(4), manifest=False)
  files = input_pipeline.check_pretraining_files(path, td.SEQ_LENGTH, td.PREDICTIONS)
  input_pipeline.check_vocab_size(files, td.VOCAB_SIZE)
  largest = max(max(r) for r in (
      td.features_lib.decode_pretraining_example(td.make_records(4)[0])[k]
      for k in ("input_ids", "masked_lm_ids")))
  with pytest.raises(UsageError) as error:
    input_pipeline.check_vocab_size(files, largest)
  assert str(error.value) == (f"{path}: its first record holds token id {largest}, but "
                              f"vocab_size of --bert_config_file is {largest}; use the config of "
                              "the model the data was made for (or data made with its vocab)")


def test_ids_beyond_the_vocab_past_the_first_record_are_named_when_training_meets_them(data,
                                                                                        tmp_path):
  """Case 5 when neither a manifest nor the first record tells: the raw InvalidArgumentError of
  the embedding lookup becomes a line naming the config."""
  records = td.make_records(1) + td.make_records(16, seed=3, vocab_size=400)
  path = td.write_tfrecord(str(tmp_path / "big_ids.tfrecord"), records, manifest=False)
  out = tmp_path / "out"
  proc = _run(_args(data, out, input_file=path, num_train_steps=4, shuffle_buffer_size=1))
  assert proc.returncode == 2, proc.stderr[-3000:]
  message = error_line(proc)
  assert message.startswith(f"{data['config']}: vocab_size is {td.VOCAB_SIZE}, but the input "
                            "holds larger token ids (indices[")
  assert message.endswith(f" is not in [0, {td.VOCAB_SIZE})); use the config of the model the "
                          "data was made for")
  assert not [n for n in os.listdir(out) if n.startswith("ckpt-")]


def test_the_checks_before_tensorflow_do_not_import_it(data, tmp_path):
  """Case 10 itself: the start-up lines are filtered once TensorFlow loads, so the quiet stderr of
  the matrix does not prove by itself that it was not loaded; sys.modules does."""
  probe = ("import sys\n"
           "from bert_tf.cli import run_pretraining\n"
           "run_pretraining.define_flags()\n"
           "try:\n"
           "  run_pretraining.run()\n"
           "except SystemExit as e:\n"
           "  print(e.code, 'tensorflow' in sys.modules, 'keras' in sys.modules)\n")
  for input_file in (data["cut.tfrecord"], data["zero.tfrecord"], data["good"]):
    args = _args(data, tmp_path / "out", input_file=input_file, do_train=False, do_eval=True)
    proc = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=REPO_ROOT), timeout=120)
    assert proc.stdout == "2 False False\n", proc.stderr[-3000:]
    assert proc.stderr.startswith("error: ")


def test_a_hugging_face_init_checkpoint_stands_for_the_config_before_tensorflow(data, tmp_path):
  """Without --bert_config_file, a Hugging Face --init_checkpoint's config.json gives the limits
  the files are checked against (its position table, its vocab)."""
  import types
  from bert_tf.errors import UsageError
  from bert_tf.pretraining import run_checks
  hf = tmp_path / "hf"
  hf.mkdir()
  (hf / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": 32,
                                              "max_position_embeddings": 512}))
  flags = dict(bert_config_file=None, init_checkpoint=str(hf), input_file=data["good"],
               eval_input_file=None, output_dir=str(tmp_path / "out"), do_train=True,
               do_eval=False, train_batch_size=4, eval_batch_size=4, num_train_steps=2,
               save_checkpoints_steps=1, max_eval_steps=1, max_seq_length=td.SEQ_LENGTH,
               max_predictions_per_seq=td.PREDICTIONS, steps_per_loop=1, log_steps=1,
               keep_checkpoint_max=1, gradient_accumulation_steps=1)
  with pytest.raises(UsageError) as error:
    run_checks.check_inputs(types.SimpleNamespace(**flags))
  assert str(error.value).startswith(f"{hf / 'config.json'}: vocab_size is 32, but ")
  (hf / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": 30522,
                                              "max_position_embeddings": 8}))
  with pytest.raises(UsageError) as error:
    run_checks.check_inputs(types.SimpleNamespace(**flags))
  assert str(error.value) == (f"--max_seq_length ({td.SEQ_LENGTH}) is longer than "
                              f"max_position_embeddings (8) of {hf / 'config.json'}")
  (hf / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": 30522}))
  checked = run_checks.check_inputs(types.SimpleNamespace(**flags))
  assert [f.num_records for f in checked.train_files] == [24]
  assert not (tmp_path / "out").exists()
