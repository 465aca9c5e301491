"""Stopping a training loop cleanly on SIGTERM or SIGINT (Ctrl-C).

Inside `with StopRequests() as stop:` the first SIGTERM or SIGINT only records itself
(`stop.signum`); the loop finishes the step (the tf.function call of --steps_per_loop steps) it
is in, writes a checkpoint at that step and raises `bert_tf.errors.StoppedBySignal`, which the
command prints as one `error:` line (exit status 128 + signal number). The same command then
resumes from that checkpoint. A second signal ends the process at once, without a checkpoint
(the lock file it leaves is taken over by the next run).

Python runs signal handlers in the main thread between bytecodes, so a handler cannot interrupt
a running TensorFlow call, and it does not even run before the call returns: the loop polls the
flag between calls. For the second signal to act at once all the same, the C-level handler's
wake-up byte (`signal.set_wakeup_fd`) is read by a helper thread, which ends the process
(`os._exit(128 + signal)`, after an `error:` line) when a second one comes before the main
thread has handled the first. Once it has, both signals are back to the operating system's
default action (end the process).

Outside the main thread, or with `enabled=False` (multi-worker training, where every worker
would have to agree on the step), nothing is installed and signals keep their usual effect.

No TensorFlow here.
"""

import os
import signal
import sys
import threading

from absl import logging

from bert_tf.errors import StoppedBySignal

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequests:
  """Context manager that turns the first SIGTERM/SIGINT into a stop request (see module doc).

  Attributes:
    signum: the first signal received, or None.
  """

  def __init__(self, enabled=True):
    self.enabled = enabled and threading.current_thread() is threading.main_thread()
    self.signum = None
    self._previous = {}

  def __enter__(self):
    if self.enabled:
      for sig in SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
      read_fd, self._wakeup_fd = os.pipe()
      os.set_blocking(self._wakeup_fd, False)
      self._previous_wakeup_fd = signal.set_wakeup_fd(self._wakeup_fd, warn_on_full_buffer=False)
      threading.Thread(target=self._watch, args=(read_fd,), name="stop_signals", daemon=True).start()
    return self

  def _watch(self, read_fd):
    """Counts the signals the C handler reports; the second one ends the process at once."""
    seen = 0
    try:
      while True:
        data = os.read(read_fd, 64)
        if not data:  # __exit__ closed the other end
          return
        for signum in data:
          if signum in SIGNALS:
            seen += 1
            if seen >= 2:
              sys.stderr.write(f"error: stopped at once by a second {signal.Signals(signum).name}; "
                               "no checkpoint written for the current step; run the same command "
                               "to resume from the last checkpoint in --output_dir\n")
              sys.stderr.flush()
              os._exit(128 + signum)
    finally:
      os.close(read_fd)

  def _handle(self, signum, frame):
    if self.signum is None:
      self.signum = signum
      for sig in SIGNALS:  # the next one acts at once, even during a long TensorFlow call
        signal.signal(sig, signal.SIG_DFL)
      logging.warning("%s received: stopping after the current step with a checkpoint (send it "
                      "again to stop at once, without one)", signal.Signals(signum).name)

  def __exit__(self, exc_type, exc, tb):
    if self._previous:
      signal.set_wakeup_fd(self._previous_wakeup_fd)
      os.close(self._wakeup_fd)
    for sig, handler in self._previous.items():
      signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
    self._previous = {}
    if exc_type is None and self.signum is not None:  # came after the loop's last check
      raise StoppedBySignal(self.signum)
    return False
