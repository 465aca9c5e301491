"""Bad input and faults of run_classifier.py, run as a user runs it (a subprocess).

Each case asserts the exit status, the one `error:` line naming the flag, file or line at fault,
and that nothing was written (no --output_dir, no labels.json). Errors found before TensorFlow is
imported also print nothing else: no start-up noise. Cases that were already handled are in the
matrix too, so that it documents the command's behaviour (docs/errors.md).
"""

import functools
import json
import os
import shutil

import pytest

from command_checks import (TINY_CONFIG, assert_quiet_start_up, assert_resumed_past, error_line,
                            run_command)
from conftest import DATA_DIR, REPO_ROOT

VOCAB = os.path.join(DATA_DIR, "vocab", "bert-base-uncased-vocab.txt")
SCRIPT = os.path.join(REPO_ROOT, "run_classifier.py")

_run = functools.partial(run_command, SCRIPT)


def _sentiment(folder, sizes):
  """train/dev/test.tsv of the bundled SST-2-style data, `sizes` rows each (+ the header)."""
  folder.mkdir(parents=True, exist_ok=True)
  for split, n in sizes.items():
    with open(os.path.join(DATA_DIR, "sentiment", f"{split}.tsv"), encoding="utf-8") as f:
      lines = f.readlines()[:n + 1]
    (folder / f"{split}.tsv").write_text("".join(lines), encoding="utf-8")
  return folder


def _base(tmp_path, data, **flags):
  config = tmp_path / "bert_config.json"
  if not config.exists():
    config.write_text(json.dumps(TINY_CONFIG))
  values = {"task_name": "sst-2", "data_dir": data, "vocab_file": VOCAB,
            "bert_config_file": config, "output_dir": tmp_path / "out", "max_seq_length": 16,
            "train_batch_size": 4, "eval_batch_size": 4}
  values.update(flags)
  args = [f"--{k}={v}" for k, v in values.items() if v is not None and not isinstance(v, bool)]
  return args + [f"--{k}" if v else f"--no{k}" for k, v in values.items() if isinstance(v, bool)]



def test_flag_file_and_row_errors_come_before_tensorflow_without_noise(tmp_path):
  """Issues 9 and 10: every flag, file and row (dev and test included) is checked before
  TensorFlow is imported and before anything is written; stderr holds the error line alone."""
  data = _sentiment(tmp_path / "data", {"train": 12, "dev": 8, "test": 8})
  bad_dev = _sentiment(tmp_path / "bad_dev", {"train": 12, "dev": 8})
  with open(bad_dev / "dev.tsv", "a", encoding="utf-8") as f:
    f.write("a sentence without its label\n")  # line 10: header + 8 rows + this
  bad_test = _sentiment(tmp_path / "bad_test", {"train": 12, "test": 4})
  with open(bad_test / "test.tsv", "a", encoding="utf-8") as f:
    f.write("\t1\n")  # line 6: an empty sentence
  not_a_dir = tmp_path / "file_not_dir"
  not_a_dir.write_text("x")
  out = tmp_path / "out"
  cases = [
      # Already handled (now without TensorFlow's start-up).
      (_base(tmp_path, data), "at least one of --do_train, --do_eval, --do_predict or "
                              "--export_dir is needed"),
      (_base(tmp_path, tmp_path / "missing", do_train=True),
       f"--data_dir={tmp_path / 'missing'}: not a directory"),
      (_base(tmp_path, data, do_train=True, vocab_file=tmp_path / "vocab.txt"),
       f"--vocab_file={tmp_path / 'vocab.txt'}: file not found"),
      (_base(tmp_path, data, do_train=True, task_name="sst-3"),
       "--task_name='sst-3' is not one of: cola, mnli, mrpc, xnli, sst-2, qnli, qqp, rte, wnli, "
       "sts-b, generic"),
      (_base(tmp_path, data, do_train=True, train_batch_size=0),
       "--train_batch_size must be >= 1, got 0"),
      (_base(tmp_path, data, do_train=True, warmup_proportion=1.5),
       "--warmup_proportion must be in [0, 1), got 1.5"),
      # New before TensorFlow: a missing config or checkpoint, an output path that is a file.
      (_base(tmp_path, data, do_train=True, bert_config_file=tmp_path / "none.json"),
       f"--bert_config_file={tmp_path / 'none.json'}: file not found"),
      (_base(tmp_path, data, do_train=True, init_checkpoint=tmp_path / "ckpt" / "model.ckpt"),
       f"--init_checkpoint={tmp_path / 'ckpt' / 'model.ckpt'}: no such checkpoint (neither a "
       f"folder nor {tmp_path / 'ckpt' / 'model.ckpt'}.index exists)"),
      (_base(tmp_path, data, do_train=True, output_dir=not_a_dir),
       f"--output_dir={not_a_dir}: exists and is not a directory"),
      # Issue 9: dev.tsv and test.tsv were read only after training.
      (_base(tmp_path, bad_dev, do_train=True, do_eval=True),
       f"{bad_dev / 'dev.tsv'}:10: expected 2 tab-separated fields, found 1"),
      (_base(tmp_path, bad_test, do_train=True, do_predict=True),
       f"{bad_test / 'test.tsv'}:6: empty text in column 'sentence'"),
  ]
  for args, message in cases:
    proc = _run(args)
    assert proc.returncode == 2, (args, proc.stderr[-3000:])
    assert error_line(proc) == message
    assert proc.stderr == f"error: {message}\n"  # no CUDA / absl start-up lines
    assert proc.stdout == ""
    assert not out.exists(), args


def test_non_utf8_bytes_are_a_warning_naming_the_file_and_first_line(tmp_path):
  """Issue 8: the bytes became U+FFFD silently. The run below also stops at a bad dev.tsv, before
  TensorFlow: the warning for train.tsv is printed first."""
  data = _sentiment(tmp_path / "data", {"train": 12, "dev": 4})
  train = data / "train.tsv"
  lines = train.read_bytes().split(b"\n")
  lines[3] = lines[3].replace(b" ", b" \xe9 ", 1)  # line 4: Latin-1 bytes in a UTF-8 file
  lines[7] = lines[7].replace(b" ", b" \xff ", 1)
  train.write_bytes(b"\n".join(lines))
  with open(data / "dev.tsv", "a", encoding="utf-8") as f:
    f.write("no label\n")
  proc = _run(_base(tmp_path, data, do_train=True, do_eval=True))
  assert proc.returncode == 2
  assert error_line(proc) == f"{data / 'dev.tsv'}:6: expected 2 tab-separated fields, found 1"
  warnings = [line for line in proc.stderr.splitlines() if "UTF-8" in line]
  assert len(warnings) == 1 and warnings[0].endswith(
      f"] {train}:4: not valid UTF-8 (2 line(s) in the file, this one first); their bad bytes "
      "became U+FFFD"), proc.stderr


def test_a_bad_init_checkpoint_is_refused_before_anything_is_written(tmp_path):
  """Issue 9: labels.json (and the output folder) were written before --init_checkpoint failed
  to load. One TensorFlow run: the checkpoint exists, so only loading it can tell."""
  data = _sentiment(tmp_path / "data", {"train": 12, "dev": 4})
  broken = tmp_path / "ckpt"
  broken.mkdir()
  (broken / "model.ckpt.index").write_bytes(b"not a checkpoint index")
  proc = _run(_base(tmp_path, data, do_train=True, do_eval=True,
                    init_checkpoint=broken / "model.ckpt"))
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert error_line(proc) == (f"{broken / 'model.ckpt'}: cannot read checkpoint "
                               f"{broken / 'model.ckpt'}: file is too short to be an sstable")
  assert_quiet_start_up(proc)  # TensorFlow loaded, without its start-up lines
  assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A fine-tuned --output_dir with checkpoints at steps 1, 2 and 3 (12 examples, batch 4)."""
  from bert_tf.finetuning.classification import RunOptions, run_classifier
  root = tmp_path_factory.mktemp("trained")
  data = _sentiment(root / "data", {"train": 12, "dev": 4})
  config = root / "bert_config.json"
  config.write_text(json.dumps(TINY_CONFIG))
  out = root / "out"
  run_classifier(RunOptions(task_name="sst-2", data_dir=str(data), vocab_file=VOCAB,
                            bert_config_file=str(config), output_dir=str(out), max_seq_length=16,
                            do_train=True, train_batch_size=4, num_train_epochs=1.0,
                            save_checkpoints_steps=1))
  assert sorted(p.name for p in out.glob("ckpt-*.index")) == [f"ckpt-{i}.index" for i in (1, 2, 3)]
  return {"data": data, "config": config, "out": out}


def _copy_run(trained, tmp_path):
  out = tmp_path / "out"
  shutil.copytree(trained["out"], out)
  shutil.copy(trained["config"], tmp_path / "bert_config.json")
  return out


def _truncate(path, size):
  path.write_bytes(path.read_bytes()[:size])


def test_a_truncated_latest_checkpoint_falls_back_to_the_previous_one(trained, tmp_path):
  """As run_pretraining: the newest checkpoint was cut short (a preempted writer); the run said
  "does not fit this model/task" and stopped. It now resumes from the one before, saying so, and
  TensorFlow's start-up lines stay out of stderr."""
  out = _copy_run(trained, tmp_path)
  _truncate(out / "ckpt-3.index", 300)
  proc = _run(_base(tmp_path, trained["data"], do_eval=True))
  assert_resumed_past(proc, out / "ckpt-3", out / "ckpt-2")
  assert "global_step = 2\n" in (out / "eval_results.txt").read_text()
  assert_quiet_start_up(proc)


def test_no_checkpoint_that_can_be_read_is_an_error_naming_the_newest(trained, tmp_path):
  from bert_tf.errors import UsageError
  from bert_tf.finetuning.classification import RunOptions, run_classifier
  out = _copy_run(trained, tmp_path)
  _truncate(out / "ckpt-3.index", 300)
  _truncate(out / "ckpt-2.data-00000-of-00001", 100)
  (out / "ckpt-1.index").unlink()
  opts = RunOptions(task_name="sst-2", data_dir=str(trained["data"]), vocab_file=VOCAB,
                    bert_config_file=str(tmp_path / "bert_config.json"), output_dir=str(out),
                    max_seq_length=16, do_eval=True, eval_batch_size=4)
  with pytest.raises(UsageError) as error:
    run_classifier(opts)
  message = str(error.value)
  assert message.startswith(f"--output_dir={out}: no checkpoint can be restored (the newest, "
                            f"{out / 'ckpt-3'}: "), message
  assert message.endswith("; 3 tried); delete the broken ones or choose another --output_dir")
  assert not (out / "eval_results.txt").exists()


def test_a_checkpoint_of_another_model_is_still_refused_not_skipped(trained, tmp_path):
  """Readable checkpoints of another config are not 'broken': the older ones would not fit either."""
  from bert_tf.errors import UsageError
  from bert_tf.finetuning.classification import RunOptions, run_classifier
  out = _copy_run(trained, tmp_path)
  config = tmp_path / "other_config.json"
  config.write_text(json.dumps(dict(TINY_CONFIG, intermediate_size=48)))
  opts = RunOptions(task_name="sst-2", data_dir=str(trained["data"]), vocab_file=VOCAB,
                    bert_config_file=str(config), output_dir=str(out), max_seq_length=16,
                    do_eval=True, eval_batch_size=4)
  with pytest.raises(UsageError) as error:
    run_classifier(opts)
  message = str(error.value)
  assert message.startswith(f"--output_dir={out}: its checkpoint {out / 'ckpt-3'} does not fit "
                            "this model/task ("), message
  assert message.endswith("); use a new --output_dir") and "cannot be restored" not in message


def test_an_init_checkpoint_of_another_shape_is_one_line_without_start_up_noise(trained, tmp_path):
  """An error found after TensorFlow loads: stderr holds no TensorFlow INFO start-up lines."""
  config = tmp_path / "other_config.json"
  config.write_text(json.dumps(dict(TINY_CONFIG, intermediate_size=48)))
  proc = _run(_base(tmp_path, trained["data"], do_train=True, bert_config_file=config,
                    init_checkpoint=trained["out"] / "ckpt-3"))
  assert proc.returncode == 2, proc.stderr[-3000:]
  message = error_line(proc)
  assert "intermediate" in message and "48" in message and "32" in message, message
  assert_quiet_start_up(proc)
  assert not (tmp_path / "out").exists()
