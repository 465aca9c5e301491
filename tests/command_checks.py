"""What the bad-input tests run and assert of a command, shared by the per-script matrices."""

import os
import subprocess
import sys

from conftest import REPO_ROOT

# A BERT small enough for a command-line run of a few seconds (the bundled vocab's size).
TINY_CONFIG = {"vocab_size": 30522, "hidden_size": 16, "num_hidden_layers": 1,
               "num_attention_heads": 2, "intermediate_size": 32, "hidden_act": "gelu",
               "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
               "max_position_embeddings": 32, "type_vocab_size": 2, "initializer_range": 0.02}


def run_command(script, args, timeout=240, preexec_fn=None):
  """Runs `python SCRIPT ARGS...` as a user's shell does: TF_CPP_MIN_LOG_LEVEL unset, so any
  TensorFlow start-up noise shows."""
  env = dict(os.environ, PYTHONPATH=REPO_ROOT)
  env.pop("TF_CPP_MIN_LOG_LEVEL", None)
  return subprocess.run([sys.executable, script] + [str(a) for a in args], capture_output=True,
                        text=True, env=env, timeout=timeout, preexec_fn=preexec_fn)


def error_line(proc):
  """The message of the single `error:` line of a failed run (asserting there is exactly one, and
  no traceback)."""
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  return errors[0][len("error: "):]


def assert_quiet_start_up(proc):
  """TensorFlow was imported, but its start-up INFO lines were kept out of the terminal."""
  assert "I0000 " not in proc.stderr and "absl::InitializeLog" not in proc.stderr, proc.stderr[-3000:]


def assert_resumed_past(proc, broken, resumed):
  """The run ended well and its one warning names the broken checkpoint and the one it used."""
  assert proc.returncode == 0, proc.stderr[-3000:]
  warnings = [line for line in proc.stderr.splitlines() if "cannot be restored" in line]
  assert len(warnings) == 1, proc.stderr[-3000:]
  assert warnings[0].startswith("W") and f"] {broken}: cannot be restored (" in warnings[0]
  assert warnings[0].endswith(f"), truncated or corrupt; resuming from {resumed}")
