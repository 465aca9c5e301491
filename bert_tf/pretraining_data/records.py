"""Fast serialization of pretraining instances into `tf.train.Example` records and TFRecord files.

Building a `tf.train.Example` per instance in Python costs more than creating the instance. The
record is a small, fixed protobuf, so it is written here directly as bytes by compiled code: the
same wire format that `features.serialize_pretraining_example` produces (tests parse both with
`features.pretraining_feature_spec`), with the features always in the schema's order. (The original
script's map order depends on its process's hash seed, so only parsed records can be compared with
its files; they are equal.)

Wire format used (protobuf): Example{1: Features{1: repeated MapEntry{1: key, 2: Feature}}};
Feature{2: FloatList{1: packed float}, 3: Int64List{1: packed varint}}.
TFRecord framing: uint64 length, masked CRC-32C of the length, data, masked CRC-32C of the data.
"""

import gzip
import io
import os
import shutil

import numpy as np

from bert_tf.utils import io_utils


def masked_crc32c(data):
  """TFRecord's masked CRC-32C of `data` (bytes), as an int."""
  from bert_tf.pretraining_data import kernels
  return kernels.masked_crc(data)


def serialize_instances(shard, begin, end, framed=True):
  """Serializes instances `begin:end` of a `ShardInstances`.

  Args:
    shard: `pretraining_data.ShardInstances`.
    begin, end: the slice of instances (in output order).
    framed: add TFRecord framing (length + CRCs) around each record.
  Returns:
    `(buffer, ends)`: uint8 array of the records back to back, int64 end offset of each record.
  """
  from bert_tf.pretraining_data import kernels  # the C extension, or numba loaded on first use
  s = slice(begin, end)
  return kernels.serialize(shard.documents.tokens, shard.a_start[s], shard.a_length[s], shard.b_start[s],
                           shard.b_length[s], shard.is_random_next[s], shard.num_masked[s],
                           shard.masked_positions[s], shard.masked_tokens[s], shard.tables.cls_id,
                           shard.tables.sep_id, shard.options.max_seq_length, framed)


def instances_to_arrays(shard):
  """The feature arrays of every instance (what the records contain), as a dict of numpy arrays."""
  from bert_tf.pretraining_data import record_kernels as k
  count = len(shard)
  seq, pred = shard.options.max_seq_length, shard.options.max_predictions_per_seq
  out = {name: np.zeros((count, seq), np.int64) for name in ("input_ids", "input_mask", "segment_ids")}
  out["masked_lm_positions"] = np.zeros((count, pred), np.int64)
  out["masked_lm_ids"] = np.zeros((count, pred), np.int64)
  out["masked_lm_weights"] = np.zeros((count, pred), np.float32)
  out["next_sentence_labels"] = shard.is_random_next.astype(np.int64)[:, None]
  original = np.zeros(pred, np.int64)
  for r in range(count):
    n = int(shard.num_masked[r])
    num_tokens = k.fill_instance(shard.documents.tokens, shard.a_start[r], shard.a_length[r],
                                 shard.b_start[r], shard.b_length[r], n, shard.masked_positions[r],
                                 shard.masked_tokens[r], shard.tables.cls_id, shard.tables.sep_id,
                                 out["input_ids"][r], original)
    out["input_mask"][r, :num_tokens] = 1
    out["segment_ids"][r, shard.a_length[r] + 2:num_tokens] = 1
    out["masked_lm_positions"][r, :n] = shard.masked_positions[r, :n]
    out["masked_lm_ids"][r] = original
    out["masked_lm_weights"][r, :n] = 1.0
  return out


def gzip_member(fileobj):
  """A gzip member written into `fileobj` (closing it closes only the member).

  Deterministic bytes (no file name, time 0), so the same records always compress to the same
  member, whichever process writes them. A file made of several members back to back is one valid
  gzip stream (RFC 1952), which TFRecord readers with compression "GZIP" read through.
  """
  return gzip.GzipFile(filename="", fileobj=fileobj, mode="wb", compresslevel=6, mtime=0)


def piece_path(work_dir, shard_index, residue):
  """Scratch file holding the records j of shard `shard_index` with j % num_outputs == residue."""
  return f"{work_dir}/shard-{shard_index:06d}-piece-{residue:04d}.records"


def shard_pieces(num_records, offset, num_outputs):
  """Where a shard's pieces go in the round-robin over the output files.

  Globally, record g goes to output `g % num_outputs` (the original's round-robin). A shard whose
  first record has global index `offset` holds its record j in piece `j % num_outputs`, so output f
  gets piece `(f - offset) % num_outputs`.

  Returns:
    list of (output f, residue, record count), for the outputs that get at least one record.
  """
  plan = []
  for f in range(num_outputs):
    residue = (f - offset) % num_outputs
    count = len(range(residue, num_records, num_outputs))
    if count:
      plan.append((f, residue, count))
  return plan


def _split_framed(buffer, ends, first, targets):
  """Writes framed records `first, first + 1, ...` to `targets(k % n)`; returns the next index."""
  count = len(ends)
  if count == 0:
    return first
  data = memoryview(buffer)
  num_targets = targets.count
  if num_targets == 1:
    targets(0).write(data[:int(ends[-1])])
    return first + count
  start = 0
  for k, stop in enumerate(ends.tolist()):
    targets((first + k) % num_targets).write(data[start:stop])
    start = stop
  return first + count


class _Targets:
  """The files records go to, with one gzip member per file opened on first use when compressing."""

  def __init__(self, files, compress):
    self.files = files
    self.count = len(files)
    self.compress = compress
    self.members = [None] * self.count

  def __call__(self, index):
    if not self.compress:
      return self.files[index]
    member = self.members[index]
    if member is None:
      member = self.members[index] = gzip_member(self.files[index])
    return member

  def close_members(self):
    for index, member in enumerate(self.members):
      if member is not None:
        member.close()
        self.members[index] = None


class RecordWriter:
  """Writes framed records round-robin across output files, as the original script does.

  The i-th record written (counting across every call) goes to file `i % len(paths)`. Records come
  either as framed chunks of the current shard (`write_chunk`, then `end_shard`), or as a whole
  shard's piece files written by a worker (`append_pieces`); both give the same bytes. With
  compression, each shard's records in a file form one gzip member.

  Args:
    paths: the files to write (temporary names; the caller renames them).
    compress: gzip the files (readable as TFRecord compression "GZIP").
  """

  def __init__(self, paths, compress=False):
    self.paths = list(paths)
    self._targets = _Targets([_open_for_writing(p) for p in paths], compress)
    self.counts = [0] * len(paths)
    self._next = 0  # global index of the next record, modulo the number of files

  def write_chunk(self, buffer, ends):
    """Writes framed records given as one buffer and their end offsets."""
    _split_framed(buffer, ends, self._next, self._targets)
    self._advance(len(ends))

  def end_shard(self):
    """Ends the current shard (closes its gzip members)."""
    self._targets.close_members()

  def append_pieces(self, work_dir, shard_index, num_records):
    """Appends a shard written by `PieceWriter` (already compressed when compressing) and deletes
    its piece files."""
    self.end_shard()
    append_shard_pieces(self._targets.files, work_dir, shard_index, num_records, self._next)
    self.account_shard(num_records)

  def account_shard(self, num_records):
    """Counts a shard that a worker appended to the files itself (`ShardBuffer.append_to`)."""
    self.end_shard()
    self._advance(num_records)

  def _advance(self, num_records):
    """Counts `num_records` records written from the current round-robin position."""
    for f, _, count in shard_pieces(num_records, self._next, self._targets.count):
      self.counts[f] += count
    self._next = (self._next + num_records) % self._targets.count

  def close(self):
    self.end_shard()
    for f in self._targets.files:
      f.close()


class ShardBuffer:
  """One shard's framed records, kept in memory until its turn to be appended to the outputs.

  Past `budget_bytes` the records spill into piece files (`PieceWriter`), so a worker's memory stays
  bounded whatever the shard size; appending then copies the pieces inside the kernel. Either way
  `append_to` writes the same bytes as `RecordWriter` would.

  Args:
    work_dir, shard_index, num_outputs, compress: as `PieceWriter` (used if the shard spills).
    budget_bytes: the most record bytes kept in memory.
  """

  def __init__(self, work_dir, shard_index, num_outputs, compress, budget_bytes):
    self._piece_args = (work_dir, shard_index, num_outputs, compress)
    self.budget_bytes = budget_bytes
    self.chunks = []
    self.nbytes = 0        # record bytes held in memory
    self.num_records = 0
    self.pieces = None     # a PieceWriter once spilled

  def write_chunk(self, buffer, ends):
    if self.pieces is None and self.nbytes + len(buffer) > self.budget_bytes:
      self.pieces = PieceWriter(*self._piece_args)
      for held in self.chunks:
        self.pieces.write_chunk(*held)
      self.chunks, self.nbytes = [], 0
    if self.pieces is not None:
      self.pieces.write_chunk(buffer, ends)
    else:
      self.chunks.append((buffer, ends))
      self.nbytes += len(buffer)
    self.num_records += len(ends)

  def close(self):
    """Ends writing (closes the piece files if the shard spilled); `append_to` may follow."""
    if self.pieces is not None:
      self.pieces.close()

  def append_to(self, files, first_record):
    """Appends the records at the end of `files` (seekable binary files, flushed afterwards):
    record j goes to `files[(first_record + j) % len(files)]`, one gzip member per file."""
    work_dir, shard_index, _, compress = self._piece_args
    for f in files:
      f.seek(0, os.SEEK_END)
    if self.pieces is not None:
      append_shard_pieces(files, work_dir, shard_index, self.num_records, first_record)
    else:
      targets = _Targets(files, compress)
      index = first_record
      for buffer, ends in self.chunks:
        index = _split_framed(buffer, ends, index, targets)
      targets.close_members()
      self.chunks, self.nbytes = [], 0
    for f in files:
      f.flush()


def append_shard_pieces(files, work_dir, shard_index, num_records, first_record):
  """Appends the piece files of a shard (`PieceWriter`) to the open `files`, so that its record j
  goes to `files[(first_record + j) % len(files)]`, then deletes the pieces."""
  for f, residue, _ in shard_pieces(num_records, first_record % len(files), len(files)):
    _append_file(files[f], piece_path(work_dir, shard_index, residue))
  for residue in range(len(files)):  # PieceWriter made one file per residue, some maybe empty
    os.remove(piece_path(work_dir, shard_index, residue))


class PieceWriter:
  """Writes one shard's framed records into piece files: record j into piece `j % num_outputs`.

  Args:
    work_dir: scratch folder of the pieces.
    shard_index: the shard's position in the stream.
    num_outputs: number of output files.
    compress: make each piece one gzip member.
    open_file: opens a path for writing bytes (default: the local file system).
  """

  def __init__(self, work_dir, shard_index, num_outputs, compress=False, open_file=None):
    open_file = open_file or (lambda path: open(path, "wb"))
    self._targets = _Targets([open_file(piece_path(work_dir, shard_index, r))
                              for r in range(num_outputs)], compress)
    self.num_records = 0

  def write_chunk(self, buffer, ends):
    self.num_records = _split_framed(buffer, ends, self.num_records, self._targets)

  def close(self):
    try:
      self._targets.close_members()
    finally:
      for f in self._targets.files:
        f.close()


_COPY_BLOCK_BYTES = 16 << 20


def _append_file(out, path):
  """Appends the bytes of the local file `path` to the open file `out` (in the kernel if possible)."""
  with open(path, "rb") as src:
    if hasattr(os, "copy_file_range") and hasattr(out, "fileno"):
      out.flush()
      try:
        copied = os.copy_file_range(src.fileno(), out.fileno(), _COPY_BLOCK_BYTES)
      except (OSError, io.UnsupportedOperation):  # e.g. an old kernel or another file system
        copied = None
      if copied is not None:
        while copied:
          copied = os.copy_file_range(src.fileno(), out.fileno(), _COPY_BLOCK_BYTES)
        out.seek(0, os.SEEK_END)  # the buffered file object learns where the kernel wrote to
        return
    shutil.copyfileobj(src, out, _COPY_BLOCK_BYTES)


def _open_for_writing(path):
  """A local file, or a tf.io.gfile file for remote paths (gs://, hdfs://, ...)."""
  if io_utils.is_remote(path):
    import tensorflow as tf
    return tf.io.gfile.GFile(path, "wb")
  return open(path, "wb")
