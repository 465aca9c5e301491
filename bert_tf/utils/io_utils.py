"""File helpers shared by every command: input patterns, text/gzip reading, atomic outputs.

Outputs are written under a temporary name in the same folder and renamed into place only when
complete, so an interrupted run never leaves a file that looks finished. Temporary names carry the
writing process's pid and host (`.name.tmp-<random>-<pid>-<host>`), so that a later run can tell
the leftovers of a killed one from those of a run still going (`remove_stale_temporaries`).
"""

import contextlib
import errno
import glob
import gzip
import io
import os
import re
import socket
import uuid

from bert_tf.errors import UsageError


def is_remote(path):
  """Whether `path` names a remote file system (gs://, hdfs://, s3://, ...) rather than a local one."""
  return "://" in path


def expand_input_patterns(spec, flag_name="--input_file", example_glob="*.txt"):
  """Expands a comma-separated list of paths and globs into a sorted-per-pattern list of files.

  Order: patterns in the order given, the matches of each glob sorted. Raises `UsageError` naming
  the flag when a pattern matches nothing, or only folders (the message suggests
  `<folder>/<example_glob>`).
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
      found = sorted(glob.glob(os.path.expanduser(pattern)))
      matches = [m for m in found if os.path.isfile(m)]
      if not matches and found:  # only folders: say so rather than "no file matches"
        what = (f"{pattern} is a directory" if found == [os.path.expanduser(pattern)]
                else f"{pattern!r} matches only directories ({', '.join(found[:3])})")
        raise UsageError(f"{flag_name}: {what}; name the files in it, e.g. "
                         f"{os.path.join(found[0], example_glob)}")
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


class TextLines:
  """The lines of a (possibly gzipped or remote) UTF-8 text file, read as `open_text` reads them
  (universal newlines, bad bytes -> U+FFFD), that also tell where the bad bytes were.

  After the iteration, `bad_lines` is the number of lines that held bytes that are not UTF-8 and
  `first_bad_line` the first one's number (from 1, as `csv.reader.line_num` counts), or None.
  Blocks that decode cleanly, the usual case, are decoded at once; only a block holding bad bytes
  is decoded line by line.

  Args:
    path: the file.
    skip_bom: drop a UTF-8 byte-order mark at the start (spreadsheet exports have one).
  """

  BLOCK_BYTES = 1 << 20

  def __init__(self, path, skip_bom=True):
    self.path = path
    self.skip_bom = skip_bom
    self.bad_lines = 0
    self.first_bad_line = None

  def __iter__(self):
    number = 0  # lines yielded so far
    pending = b""  # the part of the last block after its last b"\n"
    start = True
    with open_binary(self.path) as f:
      while True:
        block = f.read(self.BLOCK_BYTES)
        data = pending + block
        if block:
          cut = data.rfind(b"\n") + 1  # a "\r\n" pair is never cut apart
          if not cut:
            pending = data
            continue
          data, pending = data[:cut], data[cut:]
        elif not data:
          return
        else:
          pending = b""
        for line in self._decode(data, number, start):
          number += 1
          yield line
        start = False
        if not block:
          return

  def _decode(self, data, lines_before, start):
    try:
      pieces = [(data.decode("utf-8"), False)]
    except UnicodeDecodeError:
      pieces = []
      for raw in data.split(b"\n"):
        try:
          pieces.append((raw.decode("utf-8") + "\n", False))
        except UnicodeDecodeError:
          pieces.append((raw.decode("utf-8", errors="replace") + "\n", True))
      pieces[-1] = (pieces[-1][0][:-1], pieces[-1][1])  # data.split gave one piece past the end
    lines = []
    for text, bad in pieces:
      if start and self.skip_bom and text.startswith("\ufeff"):
        text = text[1:]
      start = False
      split = _universal_lines(text)
      if bad and split:
        self.bad_lines += 1
        if self.first_bad_line is None:
          self.first_bad_line = lines_before + len(lines) + 1
      lines.extend(split)
    return lines


def _universal_lines(text):
  """`text` cut into lines ending in "\n", with "\r\n" and "\r" read as "\n" (as Python's text
  files do; `str.splitlines` would also cut at form feeds and Unicode separators)."""
  if "\r" in text:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
  lines = text.split("\n")
  last = lines.pop()
  lines = [line + "\n" for line in lines]
  if last:
    lines.append(last)
  return lines


SNIFF_BYTES = 64 << 10
MAX_UNDECODABLE_SHARE = 0.10


def not_text_reason(path):
  """Why `path` is not UTF-8 text, judged from its first 64 KiB (after gunzipping), or None.

  The rule: a NUL byte (it never occurs in text, while random or binary data of that size almost
  surely has one; UTF-16 text has many), or more than 10% of the bytes not decoding as UTF-8 (a
  file in another encoding wholesale; a UTF-8 file with a few stray bytes stays accepted, its
  bad bytes becoming U+FFFD with a warning)."""
  try:
    with open_binary(path) as f:
      head = f.read(SNIFF_BYTES)
  except (OSError, EOFError) as e:
    return f"cannot be read ({getattr(e, 'strerror', None) or e})"
  nul = head.find(b"\x00")
  if nul >= 0:
    hint = ("; UTF-16 text? convert it to UTF-8, e.g. with iconv -f UTF-16 -t UTF-8"
            if head[:2] in (b"\xff\xfe", b"\xfe\xff") else "")
    return f"binary data, not text (a NUL byte at offset {nul}{hint})"
  decoded = head.decode("utf-8", errors="surrogateescape")
  # A multi-byte character cut by the end of the sample is not counted.
  bad = sum(1 for c in decoded[:-3] if "\udc80" <= c <= "\udcff")
  if head and bad > MAX_UNDECODABLE_SHARE * len(head):
    return (f"not UTF-8 text ({100.0 * bad / len(head):.0f}% of its first {len(head)} bytes do not "
            "decode as UTF-8: binary data, or another encoding to convert with iconv -t UTF-8)")
  return None


def temp_path_for(path, kind="tmp"):
  """A unique hidden sibling of `path` (same folder, so the final rename is atomic), named
  `.name.<kind>-<random>-<pid>-<host>` after the process that writes it."""
  head, tail = os.path.split(path)
  return os.path.join(head, f".{tail}.{kind}-{uuid.uuid4().hex[:8]}{_owner_suffix()}")


def _owner_suffix():
  return f"-{os.getpid()}-{socket.gethostname()}"


_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?:tmp|pieces)-[0-9a-f]{8}-")


def final_path_of(path):
  """The output that a temporary file (or a file inside a temporary folder) of `temp_path_for`
  will become, for messages; `path` itself when it is none."""
  head, tail = os.path.split(path)
  while tail:
    match = _TEMP_NAME.match(tail)
    if match:
      return os.path.join(head, match.group("name"))
    head, tail = os.path.split(head)
  return path


# Errors of a write that the user fixes by freeing space or choosing another folder.
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def write_error_message(error, outputs=(), flag_name="--output_file"):
  """The one-line message for an `OSError` of `WRITE_ERRNOS` (disk full, quota, file size limit,
  read-only file system), naming the output rather than its temporary name (`outputs`: the
  outputs being written, named when the error carries no file name); None for other errors."""
  if not isinstance(error, OSError) or error.errno not in WRITE_ERRNOS:
    return None
  if error.filename:
    where = final_path_of(error.filename)
  elif len(outputs) == 1:
    where = final_path_of(outputs[0])
  elif outputs:
    where = f"the outputs in {os.path.dirname(os.path.abspath(final_path_of(outputs[0])))}"
  else:
    where = "the output"
  return (f"{flag_name}: cannot write {where}: {error.strerror or os.strerror(error.errno)} "
          "(no complete-looking output was left; free space or choose another folder)")


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
