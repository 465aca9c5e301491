"""File helpers shared by every command: input patterns, text/gzip reading, atomic outputs.

Outputs are written under a temporary name in the same folder and renamed into place only when
complete, so an interrupted run never leaves a file that looks finished. Temporary names carry the
writing process's pid and host (`.name.tmp-<random>-<pid>-<host>`), so that a later run can tell
the leftovers of a killed one from those of a run still going (`remove_stale_temporaries`).
"""

import contextlib
import glob
import gzip
import io
import os
import socket
import uuid

from bert_tf.errors import UsageError


def is_remote(path):
  """Whether `path` names a remote file system (gs://, hdfs://, s3://, ...) rather than a local one."""
  return "://" in path


def expand_input_patterns(spec, flag_name="--input_file"):
  """Expands a comma-separated list of paths and globs into a sorted-per-pattern list of files.

  Order: patterns in the order given, the matches of each glob sorted. Raises `UsageError` naming
  the flag when a pattern matches nothing.
  """
  if spec is None or not str(spec).strip():
    raise UsageError(f"{flag_name} is required")
  files = []
  for pattern in str(spec).split(","):
    pattern = pattern.strip()
    if not pattern:
      continue
    if is_remote(pattern):
      import tensorflow as tf
      matches = sorted(tf.io.gfile.glob(pattern))
    else:
      matches = sorted(glob.glob(os.path.expanduser(pattern)))
      matches = [m for m in matches if os.path.isfile(m)]
    if not matches:
      raise UsageError(f"{flag_name}: no file matches {pattern!r}")
    files.extend(matches)
  if not files:
    raise UsageError(f"{flag_name} names no file")
  return files


def open_binary(path):
  """Opens a local or remote file for reading bytes, transparently gunzipping `.gz` files."""
  if is_remote(path):
    import tensorflow as tf
    raw = tf.io.gfile.GFile(path, "rb")
  else:
    raw = open(path, "rb")
  if path.endswith(".gz"):
    return gzip.GzipFile(fileobj=raw, mode="rb")
  return raw


def open_text(path, errors="replace", encoding="utf-8"):
  """Opens a (possibly gzipped) UTF-8 text file; undecodable bytes become U+FFFD by default.

  `encoding="utf-8-sig"` also drops a byte-order mark at the start (spreadsheet exports have one)."""
  return io.TextIOWrapper(open_binary(path), encoding=encoding, errors=errors, newline=None)


def temp_path_for(path, kind="tmp"):
  """A unique hidden sibling of `path` (same folder, so the final rename is atomic), named
  `.name.<kind>-<random>-<pid>-<host>` after the process that writes it."""
  head, tail = os.path.split(path)
  return os.path.join(head, f".{tail}.{kind}-{uuid.uuid4().hex[:8]}{_owner_suffix()}")


def _owner_suffix():
  return f"-{os.getpid()}-{socket.gethostname()}"


def remove_stale_temporaries(paths, kinds=("tmp",)):
  """Deletes the hidden siblings of the local `paths` (see `temp_path_for`; any of `kinds`) that a
  process of this host left when it was killed: those whose pid no longer runs. Each folder is
  listed once. Returns the names removed.

  A leftover of a process still running, of another host, or without an owner in its name (an
  older version's) is kept."""
  import shutil
  suffix = f"-{socket.gethostname()}"
  prefixes_by_folder = {}
  for path in paths:
    if not is_remote(path):
      head, tail = os.path.split(os.path.abspath(path))
      prefixes_by_folder.setdefault(head, []).extend(f".{tail}.{kind}-" for kind in kinds)
  removed = []
  for head, prefixes in prefixes_by_folder.items():
    try:
      names = os.listdir(head)
    except OSError:
      continue
    for name in names:
      prefix = next((p for p in prefixes if name.startswith(p)), None)
      if prefix is None or not name.endswith(suffix):
        continue
      pid = name[len(prefix):-len(suffix)].rpartition("-")[2]
      if not pid.isdigit() or _process_exists(int(pid)):
        continue
      full = os.path.join(head, name)
      if os.path.isdir(full):
        shutil.rmtree(full, ignore_errors=True)
      else:
        _remove_quietly(full)
      removed.append(name)
  return removed


def _process_exists(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except OSError:  # e.g. another user's process: it exists
    return True
  return True


@contextlib.contextmanager
def atomic_output(path):
  """Yields a temporary path to write; renames it to `path` on success, deletes it on error."""
  remote = is_remote(path)
  if not remote:
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
  tmp = temp_path_for(path)
  try:
    yield tmp
  except BaseException:
    _remove_quietly(tmp)
    raise
  if remote:
    import tensorflow as tf
    tf.io.gfile.rename(tmp, path, overwrite=True)
  else:
    os.replace(tmp, path)


def atomic_write_text(path, text):
  with atomic_output(path) as tmp:
    if is_remote(tmp):
      import tensorflow as tf
      with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(text)
    else:
      with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def _remove_quietly(path):
  try:
    if is_remote(path):
      import tensorflow as tf
      if tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)
    elif os.path.exists(path):
      os.remove(path)
  except OSError:
    pass


def file_sha256(path):
  import hashlib
  h = hashlib.sha256()
  with open_binary(path) as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def write_eval_results(path, results):
  """`eval_results.txt` as google-research/bert writes it: `key = value` lines, sorted keys; atomic."""
  atomic_write_text(path, "".join(f"{key} = {results[key]}\n" for key in sorted(results)))


def read_eval_results(path):
  """The dict of an eval_results.txt (values as float where they parse); {} when it is absent."""
  if is_remote(path):
    import tensorflow as tf
    if not tf.io.gfile.exists(path):
      return {}
    with tf.io.gfile.GFile(path, "r") as f:
      lines = f.read().splitlines()
  elif os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      lines = f.read().splitlines()
  else:
    return {}
  results = {}
  for line in lines:
    if " = " in line:
      key, value = line.split(" = ", 1)
      try:
        results[key] = float(value)
      except ValueError:
        results[key] = value
  return results
