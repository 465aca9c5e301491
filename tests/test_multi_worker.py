"""Two-worker MultiWorkerMirroredStrategy training on localhost through run_pretraining's command line.

Each worker is a separate process with its own TF_CONFIG (loopback ports picked at run time). A small
wrapper runs the real command and, at the end, dumps what the test checks: the worker's final
weights and step, whether it was the chief, and which input files its pipeline read.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import tensorflow as tf

from tests import pretraining_testdata as td

# Runs `run_pretraining.py <flags>` in this process and dumps the results to <dump prefix>.npz/.json.
WORKER = r"""
import json, sys
import numpy as np
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1)
from bert_tf.pretraining import input_pipeline
from bert_tf.pretraining import training
from bert_tf.cli import run_pretraining

dump, seen = sys.argv[1], {"files": []}
build, shard_files, run = training.build_pretraining, input_pipeline.shard_files, training.run_pretraining

def build_and_keep(params, strategy):
  seen["task"], checkpoint = build(params, strategy)
  seen["chief"] = training.is_chief(strategy)
  seen["replicas"] = strategy.num_replicas_in_sync
  return seen["task"], checkpoint

def shard_and_note(files, num_pipelines, pipeline_id):
  shard = shard_files(files, num_pipelines, pipeline_id)
  seen["files"].append({"pipeline": [pipeline_id, num_pipelines], "record_shards": shard.record_shards,
                        "files": [f.path for f in shard.files]})
  return shard

def run_and_dump(params, strategy):
  start = None if not training.tf.train.latest_checkpoint(params.output_dir) else int(
      training.tf.train.latest_checkpoint(params.output_dir).rsplit("-", 1)[1])
  result = run(params, strategy)
  task = seen["task"]
  np.savez(dump + ".npz", *[w.numpy() for w in task.model.weights])
  with open(dump + ".json", "w") as f:
    json.dump({"chief": seen["chief"], "replicas": seen["replicas"], "files": seen["files"],
               "start_step": start, "step": int(task.global_step.numpy())}, f)
  return result

training.build_pretraining, input_pipeline.shard_files = build_and_keep, shard_and_note
training.run_pretraining = run_and_dump
sys.argv = ["run_pretraining.py"] + sys.argv[2:]
run_pretraining.run()
"""

WORKER_TIMEOUT_S = 100  # per launch of the two workers (~20-45 s here); a hung collective never stalls CI


def _free_ports(count):
  """Loopback ports free right now (bound to port 0, then released)."""
  sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
  try:
    for s in sockets:
      s.bind(("127.0.0.1", 0))
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


def _launch_cluster(repo_root, tmp_path, tag, flags):
  """Starts two workers on 127.0.0.1, waits (bounded) for both; returns their dumps (meta, weights)."""
  ports = _free_ports(2)
  cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
  procs = []
  for index in range(2):
    env = dict(os.environ, PYTHONPATH=repo_root, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
               TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
    log = open(tmp_path / f"{tag}_worker{index}.log", "w")
    procs.append((subprocess.Popen(
        [sys.executable, "-c", WORKER, str(tmp_path / f"{tag}_worker{index}"), *flags],
        cwd=repo_root, env=env, stdout=log, stderr=subprocess.STDOUT), log))
  try:
    for proc, _ in procs:
      proc.wait(timeout=WORKER_TIMEOUT_S)
  finally:
    for proc, log in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
      log.close()
  dumps = []
  for index, (proc, _) in enumerate(procs):
    text = (tmp_path / f"{tag}_worker{index}.log").read_text()
    assert proc.returncode == 0, f"worker {index} failed:\n{text[-3000:]}"
    meta = json.loads((tmp_path / f"{tag}_worker{index}.json").read_text())
    weights = np.load(tmp_path / f"{tag}_worker{index}.npz")
    dumps.append((meta, [weights[k] for k in weights.files], text))
  return dumps


def _checkpoint_tensors(path):
  """Every tensor of a checkpoint, as (shape, bytes) pairs."""
  reader = tf.train.load_checkpoint(path)
  tensors = (reader.get_tensor(k) for k in reader.get_variable_to_shape_map())
  return {(t.shape, t.tobytes()) for t in tensors if isinstance(t, np.ndarray)}


def test_two_workers_train_identically_and_only_the_chief_checkpoints(repo_root, tmp_path):
  data = tmp_path / "data"
  data.mkdir()
  files = [td.write_tfrecord(str(data / f"part-{k}.tfrecord"), td.make_records(40, seed=k)) for k in range(2)]
  config = tmp_path / "bert_config.json"
  td.tiny_config().to_json_file(str(config))
  out = tmp_path / "out"
  flags = [f"--bert_config_file={config}", f"--input_file={','.join(files)}", f"--output_dir={out}",
           "--do_train", "--train_batch_size=8", f"--max_seq_length={td.SEQ_LENGTH}",
           f"--max_predictions_per_seq={td.PREDICTIONS}", "--learning_rate=1e-3", "--num_warmup_steps=1",
           "--save_checkpoints_steps=2", "--log_steps=1", "--shuffle_buffer_size=16",
           "--distribution_strategy=multi_worker_mirrored"]

  # First run: 2 steps, then both workers exit (as after a worker is restarted: the job is relaunched).
  first = _launch_cluster(repo_root, tmp_path, "first", flags + ["--num_train_steps=2"])
  # Relaunch with more steps: both workers resume from the chief's checkpoint at step 2.
  second = _launch_cluster(repo_root, tmp_path, "second", flags + ["--num_train_steps=4"])

  for run, (start, end) in ((first, (None, 2)), (second, (2, 4))):
    (meta0, weights0, _), (meta1, weights1, _) = run
    assert [meta0["chief"], meta1["chief"]] == [True, False]
    assert meta0["replicas"] == meta1["replicas"] == 2
    assert [meta0["start_step"], meta1["start_step"]] == [start, start]
    assert [meta0["step"], meta1["step"]] == [end, end]
    # Input sharded per worker: each pipeline reads its own file, together all files.
    read0, read1 = meta0["files"][0], meta1["files"][0]
    assert read0["pipeline"] == [0, 2] and read1["pipeline"] == [1, 2]
    assert sorted(read0["files"] + read1["files"]) == sorted(files)
    assert not set(read0["files"]) & set(read1["files"])
    # Both workers end with the same weights, and they did train.
    assert len(weights0) == len(weights1) > 0
    for a, b in zip(weights0, weights1):
      np.testing.assert_array_equal(a, b)
  assert any(not np.array_equal(a, b) for a, b in zip(first[0][1], second[0][1]))

  # The chief wrote the checkpoints (holding the final weights); the other worker left nothing.
  latest = tf.train.latest_checkpoint(str(out))
  assert latest is not None and latest.endswith("ckpt-4")
  assert os.path.exists(str(out / "ckpt-2.index"))
  assert not [name for name in os.listdir(out) if name.startswith(".worker")]
  saved = _checkpoint_tensors(latest)
  assert all((w.shape, w.tobytes()) in saved for w in second[0][1])
  assert "resumed from" in second[1][2] and str(out / "ckpt-2") in second[1][2]
