"""One run per --output_dir (the lock file) and stopping on SIGTERM/SIGINT with a checkpoint.

The lock tests need no TensorFlow. The signal tests run the real commands as subprocesses: a tiny
run with many steps, SIGTERM once it has logged a step, then the same command again, which must
resume from the checkpoint the signal left and finish. Exact resumption (same weights as an
uninterrupted run) is checked in-process for run_pretraining.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from bert_tf.errors import StoppedBySignal, UsageError
from bert_tf.utils import run_lock

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IN_USE = re.compile(r"--output_dir=(?P<dir>\S+) is in use by pid (?P<pid>\d+) on host (?P<host>\S+) "
                    r"since (?P<since>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) \(lock file (?P<file>\S+)\); "
                    r"wait for that run to end, stop it, or pick another --output_dir$")


def _lock_file(folder):
  return os.path.join(str(folder), run_lock.LOCK_NAME)


def _dead_pid():
  proc = subprocess.Popen([sys.executable, "-c", "pass"])
  proc.wait()
  return proc.pid


# ---------------------------------------------------------------------------------------------
# The lock
# ---------------------------------------------------------------------------------------------

def test_a_held_lock_refuses_a_second_run_with_its_pid_host_and_start(tmp_path):
  first = run_lock.RunLock(tmp_path).acquire()
  owner = json.loads(open(_lock_file(tmp_path)).read())
  assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
  with pytest.raises(UsageError) as refused:
    run_lock.RunLock(tmp_path).acquire()
  match = IN_USE.match(str(refused.value))
  assert match, str(refused.value)
  assert match["dir"] == str(tmp_path) and match["file"] == _lock_file(tmp_path)
  assert (int(match["pid"]), match["host"], match["since"]) == (os.getpid(), owner["host"],
                                                                owner["started"])
  with pytest.raises(UsageError, match="is in use by pid"):  # the quick check says the same
    run_lock.check_not_locked(str(tmp_path))
  first.release()
  assert not os.path.exists(_lock_file(tmp_path))
  run_lock.check_not_locked(str(tmp_path))
  with run_lock.RunLock(tmp_path):  # free again
    assert os.path.exists(_lock_file(tmp_path))


def test_the_quick_check_creates_nothing(tmp_path):
  run_lock.check_not_locked(str(tmp_path))
  run_lock.check_not_locked(str(tmp_path / "not_yet"))
  assert os.listdir(tmp_path) == []


def test_the_lock_of_a_dead_process_of_this_host_is_taken_over_with_one_warning(tmp_path, caplog):
  pid = _dead_pid()
  with open(_lock_file(tmp_path), "w") as f:
    json.dump({"pid": pid, "host": socket.gethostname(), "started": "2026-01-01T00:00:00Z"}, f)
  caplog.set_level("WARNING", logger="absl")
  with run_lock.RunLock(tmp_path):
    assert json.loads(open(_lock_file(tmp_path)).read())["pid"] == os.getpid()
  warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
  assert len(warnings) == 1
  assert (f"taking over the lock file {_lock_file(tmp_path)} of pid {pid} on host "
          f"{socket.gethostname()} (since 2026-01-01T00:00:00Z), which is no longer running"
          == warnings[0])


def test_the_lock_of_another_host_is_refused_with_how_to_remove_it(tmp_path):
  with open(_lock_file(tmp_path), "w") as f:
    json.dump({"pid": 4242, "host": "other-host", "started": "2026-01-01T00:00:00Z"}, f)
  with pytest.raises(UsageError) as refused:
    run_lock.RunLock(tmp_path).acquire()
  assert str(refused.value) == (
      f"--output_dir={tmp_path} is locked by pid 4242 on host other-host since "
      f"2026-01-01T00:00:00Z (lock file {_lock_file(tmp_path)}); this host "
      f"({socket.gethostname()}) cannot tell whether that run still goes: if it has ended, "
      f"delete {_lock_file(tmp_path)} and run again")
  assert json.loads(open(_lock_file(tmp_path)).read())["host"] == "other-host"  # left as it was


def test_hold_is_released_when_the_decorated_call_fails(tmp_path):
  @run_lock.released_at_return
  def run(fail):
    run_lock.hold(str(tmp_path))
    assert os.path.exists(_lock_file(tmp_path))
    if fail:
      raise UsageError("bad input")
    return "done"

  with pytest.raises(UsageError, match="bad input"):
    run(fail=True)
  assert not os.path.exists(_lock_file(tmp_path))
  assert run(fail=False) == "done" and not os.path.exists(_lock_file(tmp_path))


def test_a_read_only_output_dir_is_reported_on_one_line(tmp_path):
  if os.geteuid() == 0:
    pytest.skip("root writes into read-only folders")
  os.chmod(tmp_path, 0o500)
  try:
    with pytest.raises(UsageError, match=r"cannot create the lock file .*Permission denied"):
      run_lock.RunLock(tmp_path).acquire()
  finally:
    os.chmod(tmp_path, 0o700)


# ---------------------------------------------------------------------------------------------
# The commands
# ---------------------------------------------------------------------------------------------

def _env():
  return dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")


def _error_lines(stderr):
  return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def pretraining_inputs(tmp_path_factory):
  from tests import pretraining_testdata as td
  folder = tmp_path_factory.mktemp("pretraining_inputs")
  records = td.write_tfrecord(str(folder / "train.tfrecord"), td.make_records(24, seed=1))
  td.tiny_config().to_json_file(str(folder / "bert_config.json"))
  return [f"--bert_config_file={folder / 'bert_config.json'}", f"--input_file={records}",
          "--do_train", "--train_batch_size=4", "--num_warmup_steps=0",
          f"--max_seq_length={td.SEQ_LENGTH}", f"--max_predictions_per_seq={td.PREDICTIONS}",
          "--log_steps=1", "--save_checkpoints_steps=1000", "--shuffle_buffer_size=24"]


def test_a_second_run_pretraining_on_a_locked_output_dir_is_refused(tmp_path, pretraining_inputs):
  out = tmp_path / "out"
  out.mkdir()
  with run_lock.RunLock(out):  # this test process plays the first run
    proc = subprocess.run([sys.executable, "run_pretraining.py", *pretraining_inputs,
                           f"--output_dir={out}", "--num_train_steps=2"], cwd=REPO_ROOT,
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert os.listdir(out) == [run_lock.LOCK_NAME]  # nothing of the second run
  assert proc.returncode == 2
  errors = _error_lines(proc.stderr)
  assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
  match = IN_USE.match(errors[0][len("error: "):])
  assert match and int(match["pid"]) == os.getpid() and match["dir"] == str(out), errors[0]


@pytest.mark.parametrize("command,data_flags", [
    ("run_classifier.py", ["--task_name=sst-2", "--data_dir=data/sentiment"]),
    ("run_ner.py", ["--data_dir=data/ner"])])
def test_the_fine_tuning_commands_refuse_a_locked_output_dir_too(tmp_path, command, data_flags):
  # Valid inputs (the bundled data), so that the lock is what stops the run.
  inputs = data_flags + ["--vocab_file=data/vocab/bert-base-uncased-vocab.txt",
                         "--bert_config_file=configs/demo_bert_config.json", "--do_train"]
  with run_lock.RunLock(tmp_path):
    proc = subprocess.run([sys.executable, command, f"--output_dir={tmp_path}", *inputs],
                          cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=120)
  errors = _error_lines(proc.stderr)
  assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-2000:]
  assert IN_USE.match(errors[0][len("error: "):]), errors[0]


class _Run:
  """A command started in the background; its stderr lines collected as they come."""

  def __init__(self, args):
    self.lines = []
    self.proc = subprocess.Popen([sys.executable, *args], cwd=REPO_ROOT, env=_env(),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    self._reader = threading.Thread(target=self._read, daemon=True)
    self._reader.start()

  def _read(self):
    for line in self.proc.stderr:
      self.lines.append(line.rstrip("\n"))

  def wait_for(self, pattern, timeout=120):
    """Waits until a stderr line matches `pattern` (the process must still be running)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
      if any(re.search(pattern, line) for line in list(self.lines)):
        return
      if self.proc.poll() is not None:
        break
      time.sleep(0.05)
    self.proc.kill()
    pytest.fail(f"no line matching {pattern!r}; stderr:\n" + "\n".join(self.lines[-40:]))

  def finish(self, timeout=120):
    try:
      self.proc.wait(timeout=timeout)
    finally:
      if self.proc.poll() is None:
        self.proc.kill()
    self._reader.join(timeout=10)
    return self.proc.returncode, "\n".join(self.lines)


def _latest_checkpoint(folder):
  import tensorflow as tf
  return tf.train.latest_checkpoint(str(folder))


def _sigterm_then_resume(args, out, started_pattern, total_steps):
  """Starts `args`, sends SIGTERM once a stderr line matches `started_pattern`, checks the stop
  (exit code, the one error line, the checkpoint at its step, the lock gone), then runs `args`
  again to the end. Returns (the step it stopped at, its checkpoint, the second run's stderr)."""
  run = _Run(args)
  run.wait_for(started_pattern)
  run.proc.send_signal(signal.SIGTERM)
  code, stderr = run.finish()
  errors = _error_lines(stderr)
  assert code == 128 + signal.SIGTERM and len(errors) == 1, stderr[-3000:]
  assert "Traceback" not in stderr
  match = re.fullmatch(r"error: stopped by SIGTERM at step (\d+); checkpoint written to (\S+); "
                       r"run the same command to resume", errors[0])
  assert match, errors[0]
  step, checkpoint = int(match[1]), match[2]
  assert 0 < step < total_steps and checkpoint == str(out / f"ckpt-{step}")
  assert _latest_checkpoint(out) == checkpoint
  assert not os.path.exists(_lock_file(out))

  again = subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=_env(), capture_output=True,
                         text=True, timeout=120)
  assert again.returncode == 0, again.stderr[-3000:]
  assert _latest_checkpoint(out) == str(out / f"ckpt-{total_steps}")
  return step, checkpoint, again.stderr


def test_sigterm_stops_run_pretraining_with_a_checkpoint_and_the_same_command_resumes(
    tmp_path, pretraining_inputs):
  out = tmp_path / "out"
  args = ["run_pretraining.py", *pretraining_inputs, f"--output_dir={out}",
          "--num_train_steps=300"]
  step, checkpoint, resumed = _sigterm_then_resume(args, out, r"training\.py:\d+\] step \d+: loss=",
                                                   300)
  assert f"resumed from {checkpoint} at step {step}" in resumed
  with open(out / "train_log.jsonl") as f:
    assert [json.loads(line)["step"] for line in f] == list(range(1, 301))


def test_sigterm_stops_run_classifier_with_a_checkpoint_and_the_same_command_resumes(tmp_path):
  from tests.test_classification import TINY_CONFIG, VOCAB, _sentiment_slice
  _sentiment_slice(os.path.join(REPO_ROOT, "data"), str(tmp_path / "data"), {"train": 64})
  (tmp_path / "bert_config.json").write_text(json.dumps(TINY_CONFIG))
  out = tmp_path / "out"
  args = ["run_classifier.py", "--task_name=sst-2", f"--data_dir={tmp_path / 'data'}",
          f"--vocab_file={VOCAB}", f"--bert_config_file={tmp_path / 'bert_config.json'}",
          "--do_train", f"--output_dir={out}", "--max_seq_length=16", "--train_batch_size=8",
          "--num_train_epochs=40", "--learning_rate=1e-3", "--log_steps=1",
          "--save_checkpoints_steps=1000"]  # 64 / 8 * 40 = 320 steps
  step, checkpoint, resumed = _sigterm_then_resume(args, out, r"\] step \d+/320 ", 320)
  assert f"Resuming from {checkpoint}" in resumed
  assert re.search(rf"\] step {step + 1}/320 ", resumed)  # continues there, not at step 1


# ---------------------------------------------------------------------------------------------
# In-process: the stopped and resumed run ends with the weights of an uninterrupted one
# ---------------------------------------------------------------------------------------------

def test_sigint_during_pretraining_checkpoints_its_step_and_resume_is_exact(tmp_path, monkeypatch):
  signum = signal.SIGINT  # (the command-line tests above send SIGTERM)
  import numpy as np
  from bert_tf.pretraining import training
  from tests import test_training as tt
  records = tt.td.write_tfrecord(str(tmp_path / "train.tfrecord"), tt.td.make_records(24, seed=3))
  common = dict(bert_config=tt.td.tiny_config(dropout=0.1), num_train_steps=6,
                save_checkpoints_steps=100, steps_per_loop=1)
  _, full_weights = tt._train(tmp_path / "full", records, **common)

  write = training.TrainLog.write

  def write_then_signal(log, record):
    write(log, record)
    if record["step"] == 2:
      os.kill(os.getpid(), signum)  # arrives mid-run, as from `kill` or Ctrl-C

  handlers = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)]
  monkeypatch.setattr(training.TrainLog, "write", write_then_signal)
  with pytest.raises(StoppedBySignal) as stopped:
    tt._train(tmp_path / "stopped", records, **common)
  monkeypatch.setattr(training.TrainLog, "write", write)
  assert [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)] == handlers
  assert (stopped.value.step, stopped.value.exit_code) == (2, 128 + signum)
  assert stopped.value.checkpoint == str(tmp_path / "stopped" / "ckpt-2")
  assert _latest_checkpoint(tmp_path / "stopped") == stopped.value.checkpoint
  assert not os.path.exists(_lock_file(tmp_path / "stopped"))

  _, resumed_weights = tt._train(tmp_path / "stopped", records, **common)
  assert tt._logged(tmp_path / "stopped", "step") == list(range(1, 7))
  assert resumed_weights.keys() == full_weights.keys()
  for key in full_weights:
    np.testing.assert_array_equal(resumed_weights[key], full_weights[key], err_msg=key)


# ---------------------------------------------------------------------------------------------
# The signal plumbing, without TensorFlow
# ---------------------------------------------------------------------------------------------

def test_the_first_signal_is_a_request_and_the_second_one_acts_at_once():
  from bert_tf.utils.stop_signals import StopRequests
  before = signal.getsignal(signal.SIGTERM)
  with pytest.raises(StoppedBySignal) as stopped:
    with StopRequests() as stop:
      os.kill(os.getpid(), signal.SIGTERM)
      assert stop.signum == signal.SIGTERM  # recorded, the process goes on
      assert signal.getsignal(signal.SIGTERM) == signal.getsignal(signal.SIGINT) == signal.SIG_DFL
  # Not consumed by a loop: raised on the way out, without a step.
  assert stopped.value.step is None and str(stopped.value) == (
      "stopped by SIGTERM; run the same command to resume from the last checkpoint in --output_dir")
  assert signal.getsignal(signal.SIGTERM) == before


def test_sigterm_outside_the_training_loop_ends_the_command_with_one_line():
  script = ("import os, signal, time\n"
            "from bert_tf.errors import run_main\n"
            "def main(argv):\n"
            "  os.kill(os.getpid(), signal.SIGTERM)\n"
            "  time.sleep(30)\n"
            "run_main(main, stop_on_sigterm=True)\n")
  proc = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=_env(),
                        capture_output=True, text=True, timeout=60)
  assert proc.returncode == 143
  assert proc.stderr.strip() == ("error: stopped by SIGTERM; run the same command to resume from "
                                 "the last checkpoint in --output_dir")


# The main thread blocks in C with the GIL released, as in a long TensorFlow call: its Python
# signal handler cannot run until the call returns (here: never; a relocked mutex).
_STUCK = """
import ctypes, signal, sys, time
from bert_tf.utils.stop_signals import StopRequests
libc = ctypes.CDLL(None)
mutex = ctypes.create_string_buffer(64)  # zeroed: PTHREAD_MUTEX_INITIALIZER
libc.pthread_mutex_lock(mutex)
with StopRequests():
  print("ready", flush=True)
  libc.pthread_mutex_lock(mutex)  # never returns
print("not reached", flush=True)
"""


def test_a_second_signal_ends_the_process_even_while_the_main_thread_is_stuck_in_c():
  if not sys.platform.startswith("linux"):
    pytest.skip("uses glibc's pthread_mutex_lock")
  proc = subprocess.Popen([sys.executable, "-c", _STUCK], cwd=REPO_ROOT, env=_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert proc.poll() is None  # the first one only asks
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 143 and "not reached" not in out
  assert err.strip() == ("error: stopped at once by a second SIGTERM; no checkpoint written for "
                         "the current step; run the same command to resume from the last "
                         "checkpoint in --output_dir")
