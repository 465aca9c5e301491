"""One exception type for user-facing errors, and the wrapper that turns it into a one-line message.

Anything the user can fix (a bad flag, a missing file, a malformed line) raises `UsageError` with a
message that names the flag, file or line at fault. The command-line entry points run their `main`
through `run_main`, which prints `error: <message>` on one line and exits with status 2 instead of
showing a traceback. A run stopped by SIGTERM or SIGINT raises `StoppedBySignal`: one line too,
and the exit status 128 + the signal number (143 for SIGTERM, 130 for SIGINT), as a shell reports
a process killed by that signal.
"""

import signal
import sys


class UsageError(Exception):
  """A problem with the user's input: flags, files or data. The message is shown as is."""


class StoppedBySignal(BaseException):
  """SIGTERM/SIGINT stopped the run. `step` and `checkpoint`: where the training loop stopped and
  the checkpoint it wrote there (None outside the loop). A BaseException, as KeyboardInterrupt:
  an `except Exception` on the way out must not swallow it."""

  def __init__(self, signum, step=None, checkpoint=None):
    self.signum, self.step, self.checkpoint = signum, step, checkpoint
    self.exit_code = 128 + int(signum)
    name = signal.Signals(signum).name
    if step is None:
      message = (f"stopped by {name}; run the same command to resume from the last checkpoint "
                 "in --output_dir")
    elif checkpoint:
      message = (f"stopped by {name} at step {step}; checkpoint written to {checkpoint}; "
                 "run the same command to resume")
    else:
      message = f"stopped by {name} at step {step}; no checkpoint was written"
    super().__init__(message)


def first_line(error):
  """The first line of an exception's message (TensorFlow's `.message` where it has one)."""
  text = (getattr(error, "message", None) or str(error)).strip()
  return text.splitlines()[0] if text else type(error).__name__


def _raise_stopped(signum, frame):
  raise StoppedBySignal(signum)


def run_main(main, argv=None, stop_on_sigterm=False):
  """Runs an absl `main(argv)` and converts `UsageError` into a one-line message and exit code 2.

  With `stop_on_sigterm`, SIGTERM raises `StoppedBySignal` (like Ctrl-C raises KeyboardInterrupt)
  wherever the command is, so it ends with an `error:` line and releases what it holds; the
  training loops catch it themselves to checkpoint first (`bert_tf.utils.stop_signals`).
  """
  from absl import app

  def _wrapped(args):
    try:
      return main(args)
    except UsageError as e:
      sys.stderr.write(f"error: {e}\n")
      sys.stderr.flush()
      sys.exit(2)
    except StoppedBySignal as e:
      sys.stderr.write(f"error: {e}\n")
      sys.stderr.flush()
      sys.exit(e.exit_code)
    except KeyboardInterrupt:
      sys.stderr.write("error: interrupted\n")
      sys.exit(130)

  if stop_on_sigterm:
    signal.signal(signal.SIGTERM, _raise_stopped)
  app.run(_wrapped, argv=argv)
