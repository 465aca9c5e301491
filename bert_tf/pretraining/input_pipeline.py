"""tf.data for pretraining: TFRecord files -> parsed, shuffled, batched feature dicts.

Training input, per input pipeline (one per worker under tf.distribute):
  files (sharded across pipelines) --per-epoch seeded shuffle--> interleave TFRecordDataset
  --> shuffle(buffer, per-epoch seed) --> repeat epoch after epoch --> skip(resume position)
  --> batch(per_replica_batch * accumulation_steps, drop_remainder) --> parse --> prefetch

Every random draw is seeded from (`seed`, epoch number), so the order of the examples is a pure
function of the position in the stream. That is what makes resuming exact: a run restarted at
global step s starts at epoch `consumed // records_per_epoch` and skips the remaining
`consumed % records_per_epoch` serialized records (cheap: no parsing), where
`consumed = s * records per step of this pipeline`. A resumed run therefore sees exactly the
examples the uninterrupted run would have seen, never the beginning of the data again.

Before reading, every file is checked against --max_seq_length / --max_predictions_per_seq, from its
manifest when it has one, otherwise from the shapes of its first record.
"""

import dataclasses

import tensorflow as tf

from bert_tf import features as features_lib
from bert_tf.errors import UsageError
from bert_tf.pretraining import run_checks
from bert_tf.utils.io_utils import expand_input_patterns

_EPOCH_SEED_STRIDE = 1000003  # distinct seeds per epoch (a prime, so epochs never collide early)


@dataclasses.dataclass(frozen=True)
class PretrainingFile:
  """One checked input file: its path, TFRecord compression ("" or "GZIP") and record count if known."""
  path: str
  compression: str
  num_instances: int = None


def list_pretraining_files(input_file, flag_name="--input_file"):
  """Expands --input_file (comma lists, globs) into TFRecord paths, leaving out manifests."""
  files = [f for f in expand_input_patterns(input_file, flag_name, example_glob="*.tfrecord")
           if not features_lib.is_manifest(f)]
  if not files:
    raise UsageError(f"{flag_name}: {input_file!r} names only manifest files, no TFRecords")
  return files


def _compression_from_name(path):
  return "GZIP" if path.endswith(".gz") else ""


def _first_record(path, compression):
  try:
    for record in tf.data.TFRecordDataset(path, compression_type=compression).take(1):
      return record.numpy()
  except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
    hint = "" if compression else " (if it is gzip-compressed, give it a .gz suffix or a manifest)"
    raise UsageError(f"{path}: not a readable TFRecord file{hint}: {e.message.splitlines()[0]}") from None
  return None


def check_pretraining_file(path, max_seq_length, max_predictions_per_seq):
  """Checks one TFRecord file against the sequence flags and returns its `PretrainingFile`.

  Raises:
    UsageError naming the file when its records were written for other lengths (or are not
    pretraining records).
  """
  manifest = features_lib.read_manifest(path)
  want = f"--max_seq_length={max_seq_length} --max_predictions_per_seq={max_predictions_per_seq}"
  if manifest is not None:
    compression = manifest.get("compression", "") or ""
    have = (manifest.get("max_seq_length"), manifest.get("max_predictions_per_seq"))
    if have != (max_seq_length, max_predictions_per_seq):
      raise UsageError(
          f"{path}: written with max_seq_length={have[0]} max_predictions_per_seq={have[1]} "
          f"(its manifest), but training uses {want}; pass the values the data was made with")
    return PretrainingFile(path, compression, manifest.get("num_instances"))
  compression = _compression_from_name(path)
  record = _first_record(path, compression)
  if record is None:
    return PretrainingFile(path, compression, 0)
  example = features_lib.decode_pretraining_example(record)
  missing = [n for n in features_lib.PRETRAINING_FEATURE_NAMES if n not in example]
  if missing:
    raise UsageError(f"{path}: not a pretraining TFRecord (first record lacks {', '.join(missing)})")
  have = (len(example["input_ids"]), len(example["masked_lm_positions"]))
  if have != (max_seq_length, max_predictions_per_seq):
    raise UsageError(
        f"{path}: records have max_seq_length={have[0]} max_predictions_per_seq={have[1]} "
        f"(first record; no manifest), but training uses {want}; pass the values the data was made with")
  return PretrainingFile(path, compression, None)


def check_pretraining_files(input_file, max_seq_length, max_predictions_per_seq, flag_name="--input_file"):
  """`list_pretraining_files` + `check_pretraining_file` on each: the list of `PretrainingFile`."""
  return [check_pretraining_file(p, max_seq_length, max_predictions_per_seq)
          for p in list_pretraining_files(input_file, flag_name)]


def check_vocab_size(files, vocab_size, config_name="--bert_config_file"):
  """Raises `UsageError` naming the file when its records use ids the model has no embedding
  for: its manifest's vocab size, or (no manifest) the largest id of its first record, above
  `vocab_size`. (An id out of range fails deep in the model on CPU, and may pass silently on
  GPU.) Run before TensorFlow, `run_checks` does the manifest part for local files."""
  for f in files:
    manifest = features_lib.read_manifest(f.path)
    if manifest is not None:
      if (manifest.get("vocab_size") or 0) > vocab_size:
        raise UsageError(run_checks.manifest_vocab_message(config_name, f.path,
                                                           manifest["vocab_size"], vocab_size))
      continue
    record = _first_record(f.path, f.compression)
    if record is None:
      continue
    example = features_lib.decode_pretraining_example(record)
    largest = max(list(example.get("input_ids", [])) + list(example.get("masked_lm_ids", [])) + [0])
    if largest >= vocab_size:
      raise UsageError(f"{f.path}: its first record holds token id {largest}, but vocab_size of "
                       f"{config_name} is {vocab_size}; use the config of the model the data was "
                       "made for (or data made with its vocab)")


def require_records(files, flag_name="--input_file", what="training"):
  """Raises `UsageError` naming the files when none of them holds a record (a training stream
  over them would wait forever for its first batch).

  Counts from the manifests are used where the files have them; otherwise the files are read
  only up to their first record."""
  if any(f.num_instances for f in files):
    return
  unknown = [f for f in files if f.num_instances is None]
  for f in unknown:
    try:
      for _ in tf.data.TFRecordDataset(f.path, compression_type=f.compression).take(1):
        return
    except tf.errors.OpError:
      return  # unreadable rather than empty: reported when it is read, naming the file
  raise UsageError(run_checks.no_records_message(flag_name, what, [f.path for f in files]))


def count_records(pretraining_file):
  """Number of records in a file: from its manifest, or by reading it once."""
  if pretraining_file.num_instances is not None:
    return int(pretraining_file.num_instances)
  ds = tf.data.TFRecordDataset(pretraining_file.path, compression_type=pretraining_file.compression)
  return int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1).numpy())


@dataclasses.dataclass
class PipelineShard:
  """What one input pipeline reads: its files, and whether it must also take every n-th record."""
  files: list
  record_shards: int = 1
  record_shard_index: int = 0


def shard_files(files, num_pipelines, pipeline_id):
  """Splits files across input pipelines; with fewer files than pipelines, shards records instead."""
  if num_pipelines <= 1:
    return PipelineShard(list(files))
  if len(files) >= num_pipelines:
    return PipelineShard(list(files[pipeline_id::num_pipelines]))
  return PipelineShard(list(files), num_pipelines, pipeline_id)


def records_per_epoch(shard):
  """Records this pipeline reads per pass over its files."""
  total = sum(count_records(f) for f in shard.files)
  if shard.record_shards == 1:
    return total
  # Dataset.shard(n, i) keeps records i, i+n, ...
  return max(0, (total - shard.record_shard_index + shard.record_shards - 1) // shard.record_shards)


def _read_epoch(shard, epoch, seed, shuffle_buffer_size, cycle_length):
  """The serialized records of one epoch, in a seeded order that depends only on (seed, epoch)."""
  epoch_seed = tf.cast(seed, tf.int64) + epoch * _EPOCH_SEED_STRIDE
  paths = [f.path for f in shard.files]
  compressions = [f.compression for f in shard.files]
  files = tf.data.Dataset.from_tensor_slices((paths, compressions))
  files = files.shuffle(len(paths), seed=epoch_seed)
  records = files.interleave(
      lambda path, compression: tf.data.TFRecordDataset(path, compression_type=compression),
      cycle_length=min(cycle_length, len(paths)), block_length=1,
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if shard.record_shards > 1:
    records = records.shard(shard.record_shards, shard.record_shard_index)
  return records.shuffle(shuffle_buffer_size, seed=epoch_seed + 1)


def pretraining_dataset(files, batch_size, max_seq_length, max_predictions_per_seq, *,
                        is_training=True, input_context=None, seed=12345, start_step=0,
                        shuffle_buffer_size=10000, cycle_length=8):
  """The tf.data pipeline of one input pipeline (one worker).

  Args:
    files: list of `PretrainingFile` (from `check_pretraining_files`).
    batch_size: size of each batch this dataset yields: the per-replica batch times the
      gradient-accumulation steps (one element = everything one replica needs for one optimizer step).
    max_seq_length, max_predictions_per_seq: the record shapes (already checked).
    is_training: shuffle and repeat forever; otherwise one pass in file order, last partial batch kept.
    input_context: `tf.distribute.InputContext`; files (or records) are sharded by pipeline.
    seed: base seed of every shuffle.
    start_step: number of batches of this pipeline already consumed (resume); the stream starts
      right after them.
    shuffle_buffer_size: examples in the shuffle buffer.
    cycle_length: files read concurrently by the interleave.

  Returns:
    A `tf.data.Dataset` of feature dicts (int32 ids, float32 weights), each [batch_size, ...].
  """
  num_pipelines = input_context.num_input_pipelines if input_context else 1
  pipeline_id = input_context.input_pipeline_id if input_context else 0
  shard = shard_files(files, num_pipelines, pipeline_id)

  def parse(serialized):
    return features_lib.parse_pretraining_batch(serialized, max_seq_length, max_predictions_per_seq)

  if not is_training:
    records = tf.data.Dataset.from_tensor_slices(
        ([f.path for f in shard.files], [f.compression for f in shard.files]))
    records = records.flat_map(
        lambda path, compression: tf.data.TFRecordDataset(path, compression_type=compression))
    if shard.record_shards > 1:
      records = records.shard(shard.record_shards, shard.record_shard_index)
    ds = records.batch(batch_size, drop_remainder=False)
  else:
    start_epoch, skip = 0, 0
    if start_step:
      per_epoch = records_per_epoch(shard)
      if per_epoch <= 0:
        raise UsageError("--input_file: the training files hold no records")
      consumed = int(start_step) * int(batch_size)
      start_epoch, skip = divmod(consumed, per_epoch)
    epochs = tf.data.Dataset.range(start_epoch, 2**62)
    records = epochs.flat_map(
        lambda epoch: _read_epoch(shard, epoch, seed, shuffle_buffer_size, cycle_length))
    if skip:
      records = records.skip(skip)
    ds = records.batch(batch_size, drop_remainder=True)
  ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  options = tf.data.Options()
  options.deterministic = True
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
  return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def distributed_dataset(strategy, files, global_batch_size, max_seq_length, max_predictions_per_seq, *,
                        accumulation_steps=1, is_training=True, seed=12345, start_step=0,
                        shuffle_buffer_size=10000, batch_flag="--train_batch_size"):
  """`pretraining_dataset` spread over `strategy`: one pipeline per worker, per-replica batches.

  Args:
    strategy: the `tf.distribute.Strategy`.
    files: list of `PretrainingFile`.
    global_batch_size: examples per micro-batch across all replicas (--train_batch_size).
    accumulation_steps: micro-batches per optimizer step; each replica receives them stacked as one
      batch of `per_replica_batch * accumulation_steps` examples.
    start_step: optimizer steps already done (resume position).
    batch_flag: the flag named when the batch does not split evenly over the replicas.
    Others as `pretraining_dataset`.

  Returns:
    A distributed dataset whose elements are per-replica feature dicts.
  """
  replicas = strategy.num_replicas_in_sync
  if global_batch_size % replicas:
    raise UsageError(f"{batch_flag} ({global_batch_size}) must be divisible by the number of "
                     f"replicas ({replicas})")

  def dataset_fn(input_context):
    per_replica = input_context.get_per_replica_batch_size(global_batch_size)
    # Under distribute_datasets_from_function each pipeline yields per-replica batches, handed
    # round-robin to the replicas it feeds: one step of one pipeline = replicas_per_pipeline batches.
    replicas_per_pipeline = replicas // input_context.num_input_pipelines
    return pretraining_dataset(
        files, per_replica * accumulation_steps, max_seq_length, max_predictions_per_seq,
        is_training=is_training, input_context=input_context, seed=seed,
        start_step=start_step * replicas_per_pipeline, shuffle_buffer_size=shuffle_buffer_size)

  options = tf.distribute.InputOptions(experimental_fetch_to_device=True)
  return strategy.distribute_datasets_from_function(dataset_fn, options)
