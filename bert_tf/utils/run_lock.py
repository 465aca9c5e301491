"""One run per output directory: a lock file in --output_dir that names the run holding it.

A training command takes the lock right before its first write into --output_dir (after every
input is checked) and gives it back when it returns, fails or is interrupted. A second run on the
same folder is refused with one line naming the pid, host and start time of the first one, so two
runs never interleave their checkpoints and logs.

How: the file `.bert_tf.lock` is held with `fcntl.flock` (exclusive, non-blocking) for the whole
run, and holds `{"pid", "host", "started", "command"}` for the message. The kernel drops the flock
when the process dies, however it dies, so a lock file left by a killed run is recognised as stale
(its flock is free) and taken over with a warning. When the file names another host, a free flock
proves nothing (not every shared file system passes flocks between hosts): the run is refused and
the message says how to remove the file. Remote folders (gs://, ...) are not locked.

`hold(output_dir)` takes the lock for the innermost running call decorated with
`@released_at_return` (or until the process exits), so the library entry points can take it at the
right line without re-indenting their bodies.

No TensorFlow here: the commands can check the lock before they import it (`check_not_locked`).
"""

import contextlib
import errno
import functools
import json
import os
import socket
import sys
import threading
import time

from absl import logging

from bert_tf.errors import UsageError
from bert_tf.utils.io_utils import is_remote

try:
  import fcntl
except ImportError:  # not POSIX: no locking (see hold)
  fcntl = None

LOCK_NAME = ".bert_tf.lock"
_ACQUIRE_TRIES = 5  # a free lock can be busy for a moment (another run's check_not_locked)


def lock_path(output_dir):
  return os.path.join(output_dir, LOCK_NAME)


def _now():
  return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _process_exists(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except OSError:  # another user's process: it exists
    return True
  return True


def _read_owner(fd):
  """The JSON the holder wrote into the open lock file, or None (empty or not JSON)."""
  try:
    os.lseek(fd, 0, os.SEEK_SET)
    data = os.read(fd, 65536)
    owner = json.loads(data.decode("utf-8"))
    return owner if isinstance(owner, dict) else None
  except (OSError, ValueError):
    return None


def _names_a_dead_run(owner):
  pid = owner.get("pid")
  return (owner.get("host") == socket.gethostname() and isinstance(pid, int)
          and not _process_exists(pid))


def _describe(owner):
  if not owner:
    return "another run (its lock file names no owner yet)"
  return (f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')} "
          f"since {owner.get('started', '?')}")


def _in_use_message(output_dir, owner):
  return (f"--output_dir={output_dir} is in use by {_describe(owner)} (lock file "
          f"{lock_path(output_dir)}); wait for that run to end, stop it, or pick another "
          "--output_dir")


class RunLock:
  """The lock of one output directory (local paths only).

  `acquire()` raises `UsageError` when another live run holds it, or when the lock file names a
  run on another host; takes over the lock file of a dead run of this host with one warning.
  `release()` deletes the file and drops the flock. Also a context manager.
  """

  def __init__(self, output_dir):
    self.output_dir = str(output_dir)
    self.path = lock_path(self.output_dir)
    self._fd = None

  @property
  def held(self):
    return self._fd is not None

  def acquire(self):
    if self._fd is not None:
      return self
    for attempt in range(_ACQUIRE_TRIES):
      fd = self._open()
      if self._try_flock(fd, fcntl.LOCK_EX):
        if self._still_the_lock_file(fd):
          break
        os.close(fd)  # released and deleted meanwhile: lock the new file
        continue
      owner = _read_owner(fd)
      os.close(fd)
      if attempt == _ACQUIRE_TRIES - 1 or (owner is not None and not _names_a_dead_run(owner)):
        raise UsageError(_in_use_message(self.output_dir, owner))
      # A moment's flock: a check_not_locked, or a run that has just taken this (empty or
      # stale) file and is about to write its own name into it.
      time.sleep(0.1)
    else:
      raise UsageError(_in_use_message(self.output_dir, None))
    self._take_over_from(_read_owner(fd), fd)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": _now(),
          "command": " ".join(sys.argv)}
    data = (json.dumps(me, sort_keys=True) + "\n").encode("utf-8")
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data)
    os.fsync(fd)
    self._fd = fd
    return self

  def _open(self):
    try:
      return os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as e:
      raise UsageError(f"--output_dir={self.output_dir}: cannot create the lock file {self.path}: "
                       f"{e.strerror}") from None

  @staticmethod
  def _try_flock(fd, kind):
    try:
      fcntl.flock(fd, kind | fcntl.LOCK_NB)
      return True
    except OSError as e:
      if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        return False
      raise

  def _still_the_lock_file(self, fd):
    try:
      return os.stat(self.path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
      return False

  def _take_over_from(self, owner, fd):
    """Warns about the lock file of a dead run; refuses one of another host (with the fix)."""
    if owner is None:
      if os.fstat(fd).st_size:
        logging.warning("taking over the unreadable lock file %s", self.path)
      return
    host = owner.get("host")
    if host != socket.gethostname():
      os.close(fd)
      raise UsageError(
          f"--output_dir={self.output_dir} is locked by {_describe(owner)} (lock file "
          f"{self.path}); this host ({socket.gethostname()}) cannot tell whether that run still "
          f"goes: if it has ended, delete {self.path} and run again")
    state = "is no longer running" if _names_a_dead_run(owner) else "no longer holds it"
    logging.warning("taking over the lock file %s of pid %s on host %s (since %s), which %s",
                    self.path, owner.get("pid"), host, owner.get("started", "?"), state)

  def release(self):
    fd, self._fd = self._fd, None
    if fd is None:
      return
    try:
      if self._still_the_lock_file(fd):
        os.unlink(self.path)  # while still flocked: a waiting run then locks a fresh file
    except OSError:
      pass
    finally:
      os.close(fd)

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc):
    self.release()


def check_not_locked(output_dir):
  """Raises `UsageError` (the message of `RunLock.acquire`) when a live run holds the lock of
  `output_dir`. Writes nothing, creates nothing: for the commands to call before they import
  TensorFlow, so that a second run is refused in a moment. The real lock is taken later (`hold`)."""
  if not output_dir or is_remote(str(output_dir)) or fcntl is None:
    return
  try:
    fd = os.open(lock_path(output_dir), os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
  except OSError:
    return  # no lock file (or no folder yet)
  try:
    if RunLock._try_flock(fd, fcntl.LOCK_SH):
      return
    raise UsageError(_in_use_message(output_dir, _read_owner(fd)))
  finally:
    os.close(fd)


# The ExitStacks of the running `released_at_return` calls, innermost last (per thread).
_scopes = threading.local()


def released_at_return(fn):
  """Decorator: the locks `hold` takes during a call of `fn` are released when it returns/raises."""
  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    stack = getattr(_scopes, "stacks", None)
    if stack is None:
      stack = _scopes.stacks = []
    with contextlib.ExitStack() as scope:
      stack.append(scope)
      try:
        return fn(*args, **kwargs)
      finally:
        stack.pop()
  return wrapper


def hold(output_dir):
  """Takes the lock of `output_dir` (see `RunLock`) until the innermost `released_at_return` call
  returns, or until the process exits outside one. Returns the `RunLock`, or None for a remote
  folder or a platform without flock (not locked)."""
  if is_remote(str(output_dir)):
    logging.info("--output_dir=%s is remote: not locked against a second run", output_dir)
    return None
  if fcntl is None:
    logging.warning("no fcntl on this platform: --output_dir=%s is not locked", output_dir)
    return None
  lock = RunLock(output_dir).acquire()
  stacks = getattr(_scopes, "stacks", None)
  if stacks:
    stacks[-1].callback(lock.release)
  else:
    import atexit
    atexit.register(lock.release)
  return lock
