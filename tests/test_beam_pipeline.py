"""The Beam runner of create_pretraining_data: byte-identical to the local job, round-robin, errors."""

import gzip
import os
import random
import subprocess
import sys

import pytest

from bert_tf.pretraining_data import beam as beam_pipeline
from bert_tf.pretraining_data import job as pretraining_job
from bert_tf.pretraining_data import records as pretraining_records
from bert_tf.errors import UsageError

VOCAB = "vocab/bert-base-uncased-vocab.txt"
MULTI_SHARD_FLAGS = dict(dupe_factor=1, max_seq_length=64, max_predictions_per_seq=10, random_seed=5,
                         shard_size_mb=0.02, num_workers=2)


def _run_in(folder, monkeypatch, data_dir, outputs, **kwargs):
  """Runs the job with relative output names inside `folder` (so manifests can be compared too)."""
  os.makedirs(folder)
  monkeypatch.chdir(folder)
  return pretraining_job.create_pretraining_data(
      input_file=os.path.join(data_dir, kwargs.pop("input_file")), output_file=",".join(outputs),
      vocab_file=os.path.join(data_dir, VOCAB), **kwargs)


def _folder_bytes(folder):
  return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


def test_beam_and_multi_process_runs_write_byte_identical_folders(data_dir, tmp_path, monkeypatch):
  outputs = [f"part-{k}.tfrecord" for k in range(3)]
  flags = dict(input_file="corpus/mobydick_12ch.txt", **MULTI_SHARD_FLAGS)
  local = _run_in(tmp_path / "local", monkeypatch, data_dir, outputs, **flags)
  beam = _run_in(tmp_path / "beam", monkeypatch, data_dir, outputs,
                 job_runner=beam_pipeline.BeamJobRunner(), **flags)
  assert local.num_shards >= 5  # several shards, so seeds and offsets of later shards matter
  assert beam.num_shards == local.num_shards
  assert beam.records_per_file == local.records_per_file
  assert beam.totals == local.totals
  local_files, beam_files = _folder_bytes(tmp_path / "local"), _folder_bytes(tmp_path / "beam")
  # Records and manifests, and nothing else (the scratch pieces are gone).
  assert sorted(beam_files) == sorted(outputs + [o + ".manifest.json" for o in outputs])
  for name in local_files:
    assert beam_files[name] == local_files[name], name
  assert all(len(local_files[o]) > 0 for o in outputs)


@pytest.mark.parametrize("num_outputs", [1, 2, 3, 7])
def test_output_pieces_rebuild_the_global_round_robin(tmp_path, num_outputs):
  # Shards of uneven sizes (some empty); record g of the stream must land in file g % num_outputs.
  rng = random.Random(num_outputs)
  counts = [rng.choice([0, 1, 2, 5, 9, 13]) for _ in range(11)]
  records, shard_pieces = [], {}
  for index, count in enumerate(counts):
    shard_records = [f"s{index}r{j}" for j in range(count)]
    records.extend(shard_records)
    for residue in range(num_outputs):
      shard_pieces[pretraining_records.piece_path("w", index, residue)] = shard_records[residue::num_outputs]
  results = [beam_pipeline.ShardResult(index=i, num_records=c, stats=pretraining_job.ShardStats(),
                                       vocab_size=1) for i, c in enumerate(counts)]
  rng.shuffle(results)  # the runner delivers shard results in any order
  pieces, per_file = beam_pipeline.output_pieces(results, num_outputs, "w")
  for f in range(num_outputs):
    rebuilt = [r for path in pieces[f] for r in shard_pieces[path]]
    assert rebuilt == records[f::num_outputs]
    assert per_file[f] == len(rebuilt)
  with pytest.raises(RuntimeError, match="incomplete"):
    beam_pipeline.output_pieces([r for r in results if r.index != 3], num_outputs, "w")


def test_beam_run_reports_bad_input_on_one_line_and_leaves_nothing(data_dir, tmp_path):
  vocab = [line for line in open(os.path.join(data_dir, VOCAB), encoding="utf-8") if line.strip() != "[MASK]"]
  (tmp_path / "vocab.txt").write_text("".join(vocab), encoding="utf-8")
  out = tmp_path / "out"
  out.mkdir()
  with pytest.raises(UsageError) as error:
    pretraining_job.create_pretraining_data(
        input_file=os.path.join(data_dir, "corpus/sample_text.txt"), output_file=str(out / "o.tfrecord"),
        vocab_file=str(tmp_path / "vocab.txt"), dupe_factor=1,
        job_runner=beam_pipeline.BeamJobRunner())
  message = str(error.value)
  assert "[MASK]" in message and "vocab.txt" in message
  assert "\n" not in message and "while running" not in message
  assert os.listdir(out) == []  # no output, no temp file, no scratch folder


def test_user_errors_are_found_in_remote_runner_failures():
  remote = RuntimeError("Dataflow pipeline failed. Traceback (most recent call last):\n  File ...\n"
                        "bert_tf.errors.UsageError: gs://b/c.txt:7: line longer than --shard_size_mb "
                        "[while running 'CutShards']\n\nWorker ID: w-1")
  assert beam_pipeline.usage_error_message(remote) == "gs://b/c.txt:7: line longer than --shard_size_mb"
  assert beam_pipeline.usage_error_message(UsageError("v.txt: no [MASK] [while running 'X']")) == "v.txt: no [MASK]"
  assert beam_pipeline.usage_error_message(RuntimeError("worker out of memory")) is None


def test_script_runs_beam_with_pipeline_options_after_double_dash(repo_root, data_dir, tmp_path):
  flags = [f"--input_file={os.path.join(data_dir, 'corpus/sample_text.txt')}",
           f"--vocab_file={os.path.join(data_dir, VOCAB)}", "--dupe_factor=2", "--gzip"]
  env = dict(os.environ, PYTHONPATH=repo_root)
  script = os.path.join(repo_root, "create_pretraining_data.py")
  beam_out, local_out = str(tmp_path / "beam.tfrecord"), str(tmp_path / "local.tfrecord")
  done = subprocess.run(
      [sys.executable, script, *flags, f"--output_file={beam_out}", "--runner=beam",
       "--beam_pipeline_options=--direct_num_workers=1", "--", "--direct_running_mode=in_memory"],
      env=env, capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "--runner=FnApiRunner --direct_num_workers=1 --direct_running_mode=in_memory" in done.stderr
  pretraining_job.create_pretraining_data(
      input_file=os.path.join(data_dir, "corpus/sample_text.txt"), output_file=local_out,
      vocab_file=os.path.join(data_dir, VOCAB), dupe_factor=2, gzip=True, num_workers=1)
  with gzip.open(beam_out) as b, gzip.open(local_out) as l:
    assert b.read() == l.read()
  with open(beam_out, "rb") as b, open(local_out, "rb") as l:  # the same gzip members too
    assert b.read() == l.read()
  # Trailing arguments are Beam options only with --runner=beam.
  done = subprocess.run([sys.executable, script, *flags, f"--output_file={tmp_path / 'x.tfrecord'}",
                         "--", "--runner=DataflowRunner"], env=env, capture_output=True, text=True,
                        timeout=120)
  assert done.returncode == 2
  assert done.stderr.strip().splitlines()[-1] == "error: unexpected arguments: --runner=DataflowRunner"
