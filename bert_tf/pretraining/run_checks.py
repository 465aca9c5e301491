"""Every check of run_pretraining.py's inputs that needs no TensorFlow, run before it is imported.

`check_inputs(flag_values)` takes a few tenths of a second and writes nothing. It raises
`UsageError` with a one-line message naming the flag or file at fault for:

  - flag values that cannot work (sizes < 1, neither --do_train nor --do_eval, missing flags);
  - --bert_config_file (missing, malformed, --max_seq_length longer than its position table);
  - a local --init_checkpoint that does not exist;
  - an --output_dir that is a file, or that cannot be written (read-only, no permission);
  - local TFRecords that are directories, not TFRecords (random bytes, text), truncated (their
    framing ends inside a record, or they hold fewer records than their manifest says), written
    for other sequence lengths, with ids beyond the config's vocab_size (manifest), or empty;
  - --do_eval alone on an --output_dir without a checkpoint and without --init_checkpoint.

Remote paths (gs://...) and gzip-compressed files without a manifest are left to the checks that
run after TensorFlow is imported (`input_pipeline.check_pretraining_files`, `require_records`).

Reading the framing of a TFRecord file walks its record headers (12 bytes each) through a memory
map, without reading the records: about 0.3 s per million records once the file is in the page
cache (it touches every page, so a cold disk reads the file once). Past `FRAMING_CHECK_MAX_BYTES`
of input the remaining files keep their manifest's count unchecked; a truncated one is then
reported when training reaches it (`DataLossError`, turned into the same message).
"""

import dataclasses
import glob
import json
import mmap
import os
import struct
from typing import List, Optional

from bert_tf import features as features_lib
from bert_tf.errors import UsageError, first_line
from bert_tf.utils.io_utils import WRITE_ERRNOS, expand_input_patterns, is_remote

_HEADER = struct.Struct("<QI")  # record length, masked CRC-32C of the length
_FOOTER_BYTES = 4  # masked CRC-32C of the data
_LISTED = 3  # files named in a message about several
FRAMING_CHECK_MAX_BYTES = 8 << 30  # input bytes whose framing is walked before training


# ----------------------------------------------------------------------------------------------
# TFRecord framing, in pure Python.

def _crc32c_table():
  table = []
  for n in range(256):
    c = n
    for _ in range(8):
      c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    table.append(c)
  return table


_CRC_TABLE = _crc32c_table()


def crc32c(data):
  """CRC-32C (Castagnoli) of `data`, as TFRecord framing uses it."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def masked_crc32c(data):
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class FramingError(Exception):
  """The file is not TFRecord framing (`not_a_tfrecord`) or it ends inside a record."""

  def __init__(self, message, not_a_tfrecord=False):
    super().__init__(message)
    self.not_a_tfrecord = not_a_tfrecord


def count_tfrecord_records(path):
  """Number of records of an uncompressed TFRecord file, from its framing alone.

  The first record's length checksum is verified (any other file fails it); every later header
  is only followed. Raises `FramingError` for a file that is not TFRecord framing or that ends
  inside a record (truncated).
  """
  size = os.path.getsize(path)
  if size == 0:
    return 0
  with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
    if size < _HEADER.size:
      raise FramingError(f"{size} bytes, less than one record header", not_a_tfrecord=True)
    length, length_crc = _HEADER.unpack_from(data, 0)
    if masked_crc32c(data[:8]) != length_crc:
      raise FramingError("its first record header fails its checksum", not_a_tfrecord=True)
    count, offset, unpack = 0, 0, _HEADER.unpack_from
    header, footer = _HEADER.size, _FOOTER_BYTES
    while offset < size:
      if offset + header > size:
        raise FramingError(f"it ends inside the header of record {count + 1} (byte {offset} of "
                           f"{size})")
      length = unpack(data, offset)[0]
      end = offset + header + length + footer
      if end > size:
        raise FramingError(f"record {count + 1} at byte {offset} needs {end - offset} bytes, "
                           f"only {size - offset} remain")
      count += 1
      offset = end
  return count


def corrupt_tfrecord_message(path, detail):
  return (f"{path}: truncated or corrupt TFRecord ({detail}); write it again or leave it out "
          "of the input")


def data_loss_message(error, specs):
  """The message for a `tf.errors.DataLossError` raised while reading the TFRecords of `specs`
  (the --input_file / --eval_input_file values): it names the file at fault, found by reading
  each file's framing (uncompressed local files) or its records (others). TensorFlow's message
  names only a byte offset."""
  import tensorflow as tf
  detail = first_line(error)
  paths = []
  for spec in specs:
    for path in expand_input_patterns(spec):
      if not features_lib.is_manifest(path) and path not in paths:
        paths.append(path)
  for path in paths:
    manifest = features_lib.read_manifest(path) or {}
    compression = manifest.get("compression") or ("GZIP" if path.endswith(".gz") else "")
    if not compression and not is_remote(path):
      try:
        count_tfrecord_records(path)
        continue
      except FramingError as e:
        return corrupt_tfrecord_message(path, str(e))
    try:
      for _ in tf.data.TFRecordDataset(path, compression_type=compression):
        pass
    except tf.errors.OpError as e:
      return corrupt_tfrecord_message(path, first_line(e))
  where = listing(paths) if paths else "the input"
  return f"{where}: truncated or corrupt TFRecord data ({detail})"


def write_failure(error):
  """The reason (strerror) when a TensorFlow error is a failed write that the user fixes by
  freeing space or choosing another folder (disk full, quota, file size limit, read-only file
  system), else None."""
  message = getattr(error, "message", None) or str(error)
  for code in WRITE_ERRNOS:
    if os.strerror(code) in message:
      return os.strerror(code)
  return None


def remove_partial_checkpoints(output_dir):
  """Deletes the `ckpt-N_temp` folders a failed checkpoint write leaves in a local folder."""
  import shutil
  if not is_remote(output_dir):
    for path in glob.glob(os.path.join(output_dir, "ckpt-*_temp")):
      shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# Input files.

@dataclasses.dataclass
class InputFile:
  """A local TFRecord checked before TensorFlow: its record count when known (None: gzip
  without a manifest) and its manifest's vocab size (None: no manifest, or none recorded)."""
  path: str
  num_records: Optional[int]
  vocab_size: Optional[int] = None


def listing(paths):
  """The first few of `paths` for a message, and how many more."""
  shown = ", ".join(paths[:_LISTED])
  return shown + (f" and {len(paths) - _LISTED} more" if len(paths) > _LISTED else "")


def no_records_message(flag_name, what, paths):
  return f"{flag_name}: the {what} files hold no records: {listing(paths)}"


def manifest_vocab_message(config_source, path, manifest_vocab_size, vocab_size):
  """A manifest's vocab larger than the model's (the records hold ids it has no embedding for)."""
  return (f"{config_source}: vocab_size is {vocab_size}, but {features_lib.manifest_path(path)} "
          f"says its records use a vocab of {manifest_vocab_size} ids; use the config of the "
          "model the data was made for (or data made with its vocab)")


def no_checkpoint_to_evaluate_message(output_dir):
  return (f"--do_eval: --output_dir={output_dir} holds no checkpoint to evaluate and no "
          "--init_checkpoint is given (random weights would give meaningless numbers); train "
          "first or pass --init_checkpoint")


def check_input_file(path, max_seq_length, max_predictions_per_seq, walk=True):
  """Checks one local TFRecord file; returns its `InputFile` or raises `UsageError` naming it.

  `walk=False` trusts the manifest's record count instead of reading the framing (a file without
  a manifest is always walked)."""
  manifest = None
  try:
    manifest = features_lib.read_manifest(path)
  except (OSError, ValueError) as e:
    raise UsageError(f"{features_lib.manifest_path(path)}: not a readable manifest ({e})") from None
  compression = (manifest.get("compression") or "") if manifest else (
      "GZIP" if path.endswith(".gz") else "")
  if manifest is not None:
    have = (manifest.get("max_seq_length"), manifest.get("max_predictions_per_seq"))
    if have != (max_seq_length, max_predictions_per_seq):
      raise UsageError(
          f"{path}: written with max_seq_length={have[0]} max_predictions_per_seq={have[1]} "
          f"(its manifest), but training uses --max_seq_length={max_seq_length} "
          f"--max_predictions_per_seq={max_predictions_per_seq}; pass the values the data was "
          "made with")
  expected = manifest.get("num_instances") if manifest else None
  vocab_size = manifest.get("vocab_size") if manifest else None
  if compression:
    if expected is None and os.path.getsize(path) == 0:
      return InputFile(path, 0, vocab_size)  # an empty file holds no records, compressed or not
    return InputFile(path, expected, vocab_size)
  if not walk and expected is not None:
    return InputFile(path, expected, vocab_size)
  try:
    count = count_tfrecord_records(path)
  except FramingError as e:
    if e.not_a_tfrecord:
      hint = "" if manifest else " (if it is gzip-compressed, give it a .gz suffix)"
      raise UsageError(f"{path}: not a TFRecord file ({e}){hint}") from None
    raise UsageError(corrupt_tfrecord_message(path, str(e))) from None
  except OSError as e:
    raise UsageError(f"{path}: cannot be read ({e.strerror or e})") from None
  if expected is not None and count != expected:
    raise UsageError(corrupt_tfrecord_message(
        path, f"its manifest says {expected} records, the file holds {count}"))
  return InputFile(path, count, vocab_size)


def check_input_files(spec, flag_name, max_seq_length, max_predictions_per_seq, vocab_size,
                      config_source, what, cache=None):
  """Checks the local files of --input_file / --eval_input_file (remote patterns are left to
  TensorFlow); returns the list of `InputFile`. `cache` ({path: InputFile}) spares a second walk
  of files that both flags name."""
  cache = {} if cache is None else cache
  if any(is_remote(p.strip()) for p in str(spec).split(",") if p.strip()):
    return []
  paths = [p for p in expand_input_patterns(spec, flag_name, example_glob="*.tfrecord")
           if not features_lib.is_manifest(p)]
  if not paths:
    raise UsageError(f"{flag_name}: {spec!r} names only manifest files, no TFRecords")
  checked, walked = [], 0
  for p in paths:
    if p not in cache:
      walk = walked <= FRAMING_CHECK_MAX_BYTES
      cache[p] = check_input_file(p, max_seq_length, max_predictions_per_seq, walk=walk)
      walked += os.path.getsize(p)
    checked.append(cache[p])
  too_big = [f for f in checked if f.vocab_size is not None and f.vocab_size > vocab_size]
  if too_big:
    f = too_big[0]
    raise UsageError(manifest_vocab_message(config_source, f.path, f.vocab_size, vocab_size))
  if all(f.num_records == 0 for f in checked):
    raise UsageError(no_records_message(flag_name, what, paths))
  empty = [f.path for f in checked if f.num_records == 0]
  if empty:
    from absl import logging
    logging.warning("%s: %d file(s) hold no records: %s", flag_name, len(empty), listing(empty))
  return checked


# ----------------------------------------------------------------------------------------------
# Config, checkpoints, output folder.

def _config_limits(flag_values):
  """(vocab_size, max_position_embeddings, source) of the model, or None for a remote config."""
  config_file, init = flag_values.bert_config_file, flag_values.init_checkpoint
  if config_file:
    if is_remote(config_file):
      return None
    if not os.path.isfile(config_file):
      raise UsageError(f"--bert_config_file={config_file}: file not found")
    from bert_tf.configs import BertConfig
    config = BertConfig.from_json_file(config_file)  # UsageError naming a bad field
    return config.vocab_size, config.max_position_embeddings, config_file
  if init and not is_remote(init) and os.path.isfile(os.path.join(init, "config.json")) and \
      not glob.glob(os.path.join(init, "*.index")):
    path = os.path.join(init, "config.json")  # a Hugging Face directory: fully read later
    try:
      with open(path, encoding="utf-8") as f:
        values = json.load(f)
      return int(values["vocab_size"]), int(values.get("max_position_embeddings", 512)), path
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise UsageError(f"{path}: not a readable BERT config.json ({e})") from None
  if init and is_remote(init):
    return None
  raise UsageError("--bert_config_file is required")


def check_init_checkpoint(init):
  """Raises `UsageError` when a local --init_checkpoint names nothing that exists."""
  if init and not is_remote(init) and not (os.path.isdir(init) or os.path.isfile(init + ".index")
                                           or os.path.isfile(init)):
    raise UsageError(f"--init_checkpoint={init}: no such checkpoint (neither a folder nor "
                     f"{init}.index exists)")


def check_output_dir(output_dir, flag_name="--output_dir"):
  """Raises `UsageError` when a local output folder is a file or cannot be created or written
  (its nearest existing parent is checked when it does not exist yet)."""
  if is_remote(output_dir):
    return
  path = os.path.abspath(output_dir)
  if os.path.exists(path) and not os.path.isdir(path):
    raise UsageError(f"{flag_name}={output_dir}: exists and is not a directory")
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise UsageError(f"{flag_name}={output_dir}: cannot be created ({existing} is a file)")
  if not os.access(existing, os.W_OK | os.X_OK):
    read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
    why = "a read-only file system" if read_only else "no write permission"
    where = "" if existing == path else f" ({existing}: {why})"
    raise UsageError(f"{flag_name}={output_dir}: not writable"
                     + (where or f" ({why})"))


def has_checkpoint(output_dir):
  """Whether a local folder holds a checkpoint of ours (a `checkpoint` file or a ckpt-N.index)."""
  return os.path.isfile(os.path.join(output_dir, "checkpoint")) or bool(
      glob.glob(os.path.join(output_dir, "ckpt-*.index")))


# ----------------------------------------------------------------------------------------------
# Everything.

_POSITIVE = ("train_batch_size", "eval_batch_size", "num_train_steps", "save_checkpoints_steps",
             "max_eval_steps", "max_seq_length", "max_predictions_per_seq", "steps_per_loop",
             "log_steps", "keep_checkpoint_max", "gradient_accumulation_steps")


def check_flag_values(values):
  """Raises `UsageError` naming the flag for a value that cannot work (no file is looked at).

  `values`: the parsed flags, or a `training.PretrainingParams` (same names)."""
  for name in _POSITIVE:
    if getattr(values, name) < 1:
      raise UsageError(f"--{name} must be >= 1, got {getattr(values, name)}")
  if not (values.do_train or values.do_eval):
    raise UsageError("at least one of --do_train or --do_eval must be true")
  if not values.output_dir:
    raise UsageError("--output_dir is required")
  if values.do_train and not values.input_file:
    raise UsageError("--input_file is required with --do_train")
  if values.do_eval and not (values.eval_input_file or values.input_file):
    raise UsageError("--do_eval needs --eval_input_file (or --input_file)")


@dataclasses.dataclass
class CheckedInputs:
  """What `check_inputs` found (local files only)."""
  train_files: List[InputFile]
  eval_files: List[InputFile]


def check_inputs(flag_values):
  """Every check of the flags and local files that needs no TensorFlow; writes nothing.

  Args:
    flag_values: the parsed flags of run_pretraining.py (anything with their attributes).
  Returns:
    `CheckedInputs`.
  Raises:
    UsageError naming the flag or file at fault.
  """
  fv = flag_values
  check_flag_values(fv)
  limits = _config_limits(fv)
  if limits and fv.max_seq_length > limits[1]:
    raise UsageError(f"--max_seq_length ({fv.max_seq_length}) is longer than "
                     f"max_position_embeddings ({limits[1]}) of {limits[2]}")
  check_init_checkpoint(fv.init_checkpoint)
  check_output_dir(fv.output_dir)
  vocab_size, source = (limits[0], limits[2]) if limits else (float("inf"), None)
  seq, preds = fv.max_seq_length, fv.max_predictions_per_seq
  train, eval_, cache = [], [], {}
  if fv.do_train:
    train = check_input_files(fv.input_file, "--input_file", seq, preds, vocab_size, source,
                              "training", cache)
  if fv.do_eval:
    flag = "--eval_input_file" if fv.eval_input_file else "--input_file"
    eval_ = check_input_files(fv.eval_input_file or fv.input_file, flag, seq, preds, vocab_size,
                              source, "evaluation", cache)
  if fv.do_eval and not fv.do_train and not fv.init_checkpoint and \
      not is_remote(fv.output_dir) and not has_checkpoint(fv.output_dir):
    raise UsageError(no_checkpoint_to_evaluate_message(fv.output_dir))
  return CheckedInputs(train, eval_)
