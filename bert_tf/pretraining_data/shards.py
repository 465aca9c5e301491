"""Cutting a stream of text files into shards of whole documents, with bounded memory.

The input files form one stream of lines, as in the original script (a document may even continue
from one file into the next when no blank line separates them). The stream is cut only at blank
lines (document boundaries) into shards of at most `shard_bytes` bytes; a single document larger
than that becomes a shard of its own. Lines are split on "\\n" only, like the original's reader.

Decoding happens later, in the worker that processes the shard (`decode_lines`).
"""

import dataclasses
import os
from typing import NamedTuple

from bert_tf.utils import io_utils
from bert_tf.errors import UsageError


@dataclasses.dataclass
class TextShard:
  """Raw lines of whole documents.

  Args:
    index: position of the shard in the stream.
    data: the lines as UTF-8 bytes, each ending in b"\\n".
    num_lines: number of lines in `data`.
    first_line: "file:line" of its first line (for messages).
    input_bytes_done: bytes of the input files (as stored, e.g. compressed) read up to the end
      of this shard, for progress reports.
    file_starts: ((line index in the shard, path, its line number in that file), ...) for the
      first line and for each line that starts another file (see `where`).
  """
  index: int
  data: bytes
  num_lines: int
  first_line: str
  input_bytes_done: int
  file_starts: tuple = ()

  def where(self, line_index):
    """"file:line" of the shard's line `line_index` (from 0)."""
    start = next((s for s in reversed(self.file_starts) if s[0] <= line_index), None)
    if start is None:
      return self.first_line
    return f"{start[1]}:{start[2] + line_index - start[0]}"


def total_input_bytes(input_files):
  """Sum of the input files' sizes as stored (0 for files whose size is unknown)."""
  total = 0
  for path in input_files:
    try:
      total += os.path.getsize(path)
    except OSError:
      pass
  return total


def _stored_position(handle, uncompressed):
  """Bytes of the stored file consumed so far (compressed position for .gz files)."""
  raw = getattr(handle, "fileobj", None)
  if raw is not None:
    try:
      return raw.tell()
    except (OSError, ValueError):
      return 0
  return uncompressed


def iter_text_shards(input_files, shard_bytes):
  """Yields `TextShard`s of the concatenated input files.

  Args:
    input_files: paths, read in order (plain or .gz).
    shard_bytes: the most bytes of text in a shard (except for one document longer than that).
  Raises:
    UsageError: a line longer than `shard_bytes` (naming file and line), or an unreadable file.
  """
  shard = _ShardBuilder()
  document = _ShardBuilder()   # lines of the document being read, not yet ended by a blank line
  index = 0
  done_before = 0              # stored bytes of the files already finished
  for path in input_files:
    try:
      handle = io_utils.open_binary(path)
    except OSError as e:
      raise UsageError(f"--input_file: cannot read {path}: {e.strerror or e}") from None
    with handle:
      line_number = 0
      position = 0
      while True:
        try:
          line = _readline(handle, shard_bytes + 1)
        except (OSError, EOFError) as e:
          raise UsageError(f"{path}:{line_number + 1}: cannot read: {e}") from None
        if not line:
          break
        line_number += 1
        position += len(line)
        if len(line) > shard_bytes and not line.endswith(b"\n"):
          raise UsageError(
              f"{path}:{line_number}: line longer than --shard_size_mb ({shard_bytes} bytes); "
              "the input must have one sentence per line")
        if not line.endswith(b"\n"):
          line += b"\n"  # the file's last line never runs into the next file's first
        document.add(line, path, line_number)
        if line.strip():
          continue
        # A blank line ends a document: the shard takes it, or is emitted first if it is full.
        if shard.lines and shard.size + document.size > shard_bytes:
          yield shard.build(index, done_before + _stored_position(handle, position))
          index += 1
          shard = _ShardBuilder()
        shard.extend(document)
        document = _ShardBuilder()
    done_before += _stored_size(path, position)
  if shard.lines and document.lines and shard.size + document.size > shard_bytes:
    yield shard.build(index, done_before)
    index += 1
    shard = _ShardBuilder()
  shard.extend(document)
  if shard.lines:
    yield shard.build(index, done_before)


class _ShardBuilder:
  """Lines collected for a shard or a document, their size and where the first one came from."""

  def __init__(self):
    self.lines = []
    self.size = 0
    self.first_line = None
    self.file_starts = []  # (line index, path, line number): where each file's lines begin

  def add(self, line, path, line_number):
    if self.first_line is None:
      self.first_line = f"{path}:{line_number}"
    if not self.file_starts or self.file_starts[-1][1] != path:
      self.file_starts.append((len(self.lines), path, line_number))
    self.lines.append(line)
    self.size += len(line)

  def extend(self, other):
    if other.lines and self.first_line is None:
      self.first_line = other.first_line
    for offset, path, line_number in other.file_starts:
      if not self.file_starts or self.file_starts[-1][1] != path:
        self.file_starts.append((len(self.lines) + offset, path, line_number))
    self.lines.extend(other.lines)
    self.size += other.size

  def build(self, index, input_bytes_done):
    return TextShard(index=index, data=b"".join(self.lines), num_lines=len(self.lines),
                     first_line=self.first_line, input_bytes_done=input_bytes_done,
                     file_starts=tuple(self.file_starts))


def _readline(handle, limit):
  """One line of at most `limit` bytes (remote tf.io.gfile files read whole lines)."""
  try:
    return handle.readline(limit)
  except TypeError:
    return handle.readline()


def _stored_size(path, fallback):
  try:
    return os.path.getsize(path)
  except OSError:
    return fallback


class UndecodableLines(NamedTuple):
  """The lines of a shard that held bytes that are not UTF-8: how many, and the first one's index
  in the shard (-1 when there is none)."""
  count: int
  first: int


def decode_lines(data):
  """Decodes a shard's bytes into stripped lines.

  Undecodable bytes become U+FFFD (the replacement character).

  Args:
    data: UTF-8 text, lines ending in "\\n".
  Returns:
    `(lines, UndecodableLines)`: the lines stripped of surrounding whitespace (str.strip, as the
    original), and which lines had bytes that are not UTF-8.
  """
  try:
    text = data.decode("utf-8")
    bad = UndecodableLines(0, -1)
  except UnicodeDecodeError:
    pieces = []
    count, first = 0, -1
    for number, raw in enumerate(data.split(b"\n")):
      try:
        pieces.append(raw.decode("utf-8"))
      except UnicodeDecodeError:
        count += 1
        first = number if first < 0 else first
        pieces.append(raw.decode("utf-8", errors="replace"))
    text = "\n".join(pieces)
    bad = UndecodableLines(count, first)
  lines = text.split("\n")
  if lines and not lines[-1]:
    lines.pop()  # after the final "\n"
  return [line.strip() for line in lines], bad
