"""Stopping a training loop cleanly on SIGTERM or SIGINT (Ctrl-C).

Inside `with StopRequests() as stop:` the first SIGTERM or SIGINT only records itself
(`stop.signum`); the loop finishes the step (the tf.function call of --steps_per_loop steps) it
is in, writes a checkpoint at that step and raises `bert_tf.errors.StoppedBySignal`, which the
command prints as one `error:` line (exit status 128 + signal number). The same command then
resumes from that checkpoint. A second signal gets the operating system's default action at once
(the process ends without a checkpoint; the lock file it leaves is taken over by the next run).

Python runs signal handlers between bytecodes of the main thread, so a handler cannot interrupt a
running TensorFlow call: that is why the loop polls the flag between calls. Outside the main
thread, or with `enabled=False` (multi-worker training, where every worker would have to agree on
the step), nothing is installed and signals keep their usual effect.

No TensorFlow here.
"""

import signal
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
    return self

  def _handle(self, signum, frame):
    if self.signum is None:
      self.signum = signum
      for sig in SIGNALS:  # the next one acts at once, even during a long TensorFlow call
        signal.signal(sig, signal.SIG_DFL)
      logging.warning("%s received: stopping after the current step with a checkpoint (send it "
                      "again to stop at once, without one)", signal.Signals(signum).name)

  def __exit__(self, exc_type, exc, tb):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
    self._previous = {}
    if exc_type is None and self.signum is not None:  # came after the loop's last check
      raise StoppedBySignal(self.signum)
    return False
