"""The pretraining tf.data pipeline: file checks, GZIP, sharding, and the exact resume position."""

import pytest
import tensorflow as tf

from bert_tf.pretraining import input_pipeline
from bert_tf.errors import UsageError
from tests import pretraining_testdata as td

SEQ, PRED = td.SEQ_LENGTH, td.PREDICTIONS


def _files(tmp_path, sizes, manifest=True):
  paths = []
  for i, n in enumerate(sizes):
    path = str(tmp_path / f"part-{i}.tfrecord")
    td.write_tfrecord(path, td.make_records(n, seed=100 + i), manifest=manifest)
    paths.append(path)
  return paths


def _keys(batch):
  """One hashable key per example of a parsed batch (its input ids)."""
  return [tuple(row) for row in batch["input_ids"].numpy().tolist()]


def _checked(spec):
  return input_pipeline.check_pretraining_files(spec, SEQ, PRED)


def test_resumed_stream_continues_exactly_where_it_stopped(tmp_path):
  # 3 files (one without manifest, so its size is counted), 13 records per epoch, batches of 4:
  # 10 batches span three epochs, and the resume point (step 4, record 16) lies inside epoch 2.
  paths = _files(tmp_path, [5, 4])
  td.write_tfrecord(str(tmp_path / "extra.tfrecord"), td.make_records(4, seed=7), manifest=False)
  files = _checked(str(tmp_path / "*.tfrecord"))
  assert [f.num_instances for f in files] == [None, 5, 4]
  full = [k for b in input_pipeline.pretraining_dataset(files, 4, SEQ, PRED, seed=3).take(10)
          for k in _keys(b)]
  resumed = [k for b in input_pipeline.pretraining_dataset(files, 4, SEQ, PRED, seed=3, start_step=4).take(6)
             for k in _keys(b)]
  assert resumed == full[16:]
  # Each epoch is a permutation of all 13 records, in a different order from one epoch to the next.
  assert sorted(full[:13]) == sorted(full[13:26])
  assert full[:13] != full[13:26]
  assert len(paths) == 2


def test_seed_changes_the_order_but_not_the_content(tmp_path):
  files = _checked(",".join(_files(tmp_path, [6, 6])))
  a = [k for b in input_pipeline.pretraining_dataset(files, 12, SEQ, PRED, seed=1).take(1) for k in _keys(b)]
  b = [k for b in input_pipeline.pretraining_dataset(files, 12, SEQ, PRED, seed=2).take(1) for k in _keys(b)]
  again = [k for b in input_pipeline.pretraining_dataset(files, 12, SEQ, PRED, seed=1).take(1) for k in _keys(b)]
  assert a == again and a != b and sorted(a) == sorted(b)


@pytest.mark.parametrize("sizes", [[3, 4, 5], [9]])  # file sharding, then record sharding (1 file)
def test_pipelines_read_disjoint_shards_that_cover_the_data(tmp_path, sizes):
  files = _checked(",".join(_files(tmp_path, sizes)))
  seen = []
  for pipeline_id in range(2):
    ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline_id,
                                     num_replicas_in_sync=2)
    ds = input_pipeline.pretraining_dataset(files, 2, SEQ, PRED, is_training=False, input_context=ctx)
    seen.append([k for b in ds for k in _keys(b)])
  assert seen[0] and seen[1]
  assert not set(seen[0]) & set(seen[1])
  assert len(seen[0]) + len(seen[1]) == sum(sizes)


def test_eval_pass_reads_each_record_once_and_keeps_the_last_partial_batch(tmp_path):
  files = _checked(",".join(_files(tmp_path, [5, 2])))
  batches = list(input_pipeline.pretraining_dataset(files, 3, SEQ, PRED, is_training=False))
  assert [int(b["input_ids"].shape[0]) for b in batches] == [3, 3, 1]
  assert batches[0]["input_ids"].dtype == tf.int32
  assert batches[0]["masked_lm_weights"].dtype == tf.float32


def test_manifest_mismatch_is_one_error_naming_the_file(tmp_path):
  path = _files(tmp_path, [2])[0]
  with pytest.raises(UsageError) as e:
    input_pipeline.check_pretraining_files(path, 128, PRED)
  message = str(e.value)
  assert path in message and "max_seq_length=16" in message and "--max_seq_length=128" in message


def test_file_without_manifest_is_checked_from_its_first_record(tmp_path):
  path = _files(tmp_path, [2], manifest=False)[0]
  with pytest.raises(UsageError, match=r"part-0\.tfrecord.*max_predictions_per_seq=4.*first record"):
    input_pipeline.check_pretraining_files(path, SEQ, 20)


def test_gzip_files_by_suffix_and_by_manifest(tmp_path):
  by_suffix = str(tmp_path / "a.tfrecord.gz")
  td.write_tfrecord(by_suffix, td.make_records(3, seed=1), manifest=False, compression="GZIP")
  by_manifest = str(tmp_path / "b.tfrecord")
  td.write_tfrecord(by_manifest, td.make_records(2, seed=2), manifest=True, compression="GZIP")
  files = _checked(f"{by_suffix},{by_manifest}")
  assert [f.compression for f in files] == ["GZIP", "GZIP"]
  ds = input_pipeline.pretraining_dataset(files, 5, SEQ, PRED, is_training=False)
  assert sum(int(b["input_ids"].shape[0]) for b in ds) == 5


def test_globs_skip_manifests_and_bad_files_are_named(tmp_path):
  _files(tmp_path, [2, 2])
  files = input_pipeline.list_pretraining_files(str(tmp_path / "*"))
  assert len(files) == 2 and all(f.endswith(".tfrecord") for f in files)
  garbage = tmp_path / "notes.tfrecord"
  garbage.write_bytes(b"this is not a tfrecord file at all")
  with pytest.raises(UsageError, match="notes.tfrecord: not a readable TFRecord"):
    input_pipeline.check_pretraining_files(str(garbage), SEQ, PRED)
  with pytest.raises(UsageError, match="--input_file"):
    input_pipeline.check_pretraining_files(str(tmp_path / "nothing-*.tfrecord"), SEQ, PRED)


def test_distributed_dataset_gives_each_replica_its_share(tmp_path, two_cpu_mirrored):
  strategy = two_cpu_mirrored
  files = _checked(",".join(_files(tmp_path, [8])))
  ds = input_pipeline.distributed_dataset(strategy, files, 4, SEQ, PRED, accumulation_steps=3)
  batch = next(iter(ds))
  shapes = [int(t.shape[0]) for t in strategy.experimental_local_results(batch["input_ids"])]
  assert shapes == [6, 6]  # 4 / 2 replicas * 3 micro-batches
  with pytest.raises(UsageError, match="--train_batch_size"):
    input_pipeline.distributed_dataset(strategy, files, 3, SEQ, PRED)
  with pytest.raises(UsageError, match="--eval_batch_size"):
    input_pipeline.distributed_dataset(strategy, files, 5, SEQ, PRED, is_training=False,
                                       batch_flag="--eval_batch_size")
