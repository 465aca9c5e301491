"""Benchmark: create_pretraining_data against google-research/bert's script (wall time, peak RSS).

Runs every command as a subprocess and samples the resident memory of its whole process tree
(workers included) with psutil. Cases, all with --dupe_factor=5 --max_seq_length=128:

  original  the original script on the corpus (measured with --original_script, run unchanged
            on TensorFlow's v1 compatibility layer; otherwise the figures given by
            --original_seconds / --original_peak_rss_mb are used)
  ours      this project, 1 worker, the same command line: records compared with the original's
  sharded   --shard_size_mb=2, 1 and 2 workers, on the corpus and on the corpus repeated
            --scale times (peak RSS must stay flat as the input grows; 2 workers must be faster)

  python benchmarks/bench_pretraining_data.py \
      --original_script=/tmp/google_bert/create_pretraining_data.py

The machine's other load changes every figure; ratios are measured within one run, and each of our
cases is run once with its memory sampled (peak RSS of the process tree) and --repeats times
without sampling for its time (median). The 1- and 2-worker runs of an input alternate, so that a
change in the machine's load between them does not bias their ratio.
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

flags.DEFINE_string("corpus", os.path.join(REPO, "data/corpus/austen.txt"), "Text corpus to process.")
flags.DEFINE_string("vocab_file", os.path.join(REPO, "data/vocab/bert-base-uncased-vocab.txt"), "Vocab.")
flags.DEFINE_string("original_script", None,
                    "Path of google-research/bert's create_pretraining_data.py (its tokenization.py "
                    "beside it) to measure the original in this run.")
flags.DEFINE_float("original_seconds", 35.0, "The original's wall time when it is not measured.")
flags.DEFINE_float("original_peak_rss_mb", 814.0, "The original's peak RSS (MB) when it is not measured.")
flags.DEFINE_integer("dupe_factor", 5, "--dupe_factor of every run.")
flags.DEFINE_integer("max_seq_length", 128, "--max_seq_length of every run.")
flags.DEFINE_integer("scale", 10, "How many times the corpus is repeated for the large input.")
flags.DEFINE_float("shard_size_mb", 2.0, "--shard_size_mb of the sharded runs.")
flags.DEFINE_integer("repeats", 3, "Timed runs of each of our cases (median reported; a run of a few "
                     "seconds is sensitive to the machine's other load), after one memory-sampled run.")
flags.DEFINE_string("workdir", None, "Folder for inputs and outputs (default: a temporary one).")
FLAGS = flags.FLAGS

# Runs the unmodified original script with `import tensorflow` resolved to the v1 compat layer.
_ORIGINAL_SHIM = (
    "import runpy, sys, tensorflow.compat.v1 as v1; sys.modules['tensorflow'] = v1; "
    "v1.disable_eager_execution(); script = sys.argv[1]; sys.path.insert(0, __import__('os').path."
    "dirname(script)); sys.argv = sys.argv[1:]; runpy.run_path(script, run_name='__main__')")


def measure(command, sample_memory=True):
  """Runs `command`; returns (seconds, peak RSS in MB of its process tree, or None).

  Sampling the tree's memory costs CPU in this process, which a command using every core feels;
  `sample_memory=False` times the command alone.
  """
  import psutil
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
  if not sample_memory:
    start = time.time()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    if done.returncode != 0:
      raise RuntimeError(f"command failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-3000:]}")
    return time.time() - start, None
  start = time.time()
  # Output goes to a file: a pipe left unread would fill up and block the command.
  with open(os.devnull, "w") as sink, tempfile.TemporaryFile("w+") as log:
    process = subprocess.Popen(command, stdout=sink, stderr=log, env=env, text=True)
    root = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
      total = 0
      try:
        for p in [root] + root.children(recursive=True):
          try:
            total += p.memory_info().rss
          except psutil.Error:
            pass
      except psutil.Error:
        pass
      peak = max(peak, total)
      time.sleep(0.05)
    log.seek(0)
    stderr = log.read()
  seconds = time.time() - start
  if process.returncode != 0:
    raise RuntimeError(f"command failed ({process.returncode}): {' '.join(command)}\n{stderr[-3000:]}")
  return seconds, peak / 2**20


def ours(input_file, output_file, num_workers, shard_size_mb=None):
  """(median seconds, peak MB) of our script on `input_file`."""
  return ours_alternating(input_file, {num_workers: output_file}, shard_size_mb)[num_workers]


def ours_alternating(input_file, outputs, shard_size_mb=None):
  """{workers: (median seconds, peak MB)} for each `outputs` entry (workers -> output file): one
  memory-sampled run each, then --repeats timed rounds running each case once in turn."""
  commands = {workers: our_command(input_file, output, workers, shard_size_mb)
              for workers, output in outputs.items()}
  peaks = {}
  for workers, command in commands.items():
    peaks[workers] = measure(command)[1]  # memory, sampled in a run of its own
  seconds = {workers: [] for workers in commands}
  for _ in range(max(1, FLAGS.repeats)):
    for workers, command in commands.items():
      # Every run writes a new file, as the first run and the original's run do: replacing the
      # previous run's output would add the deletion of that file (0.2 s for 280 MB here).
      remove_output(outputs[workers])
      seconds[workers].append(measure(command, sample_memory=False)[0])
  return {workers: (statistics.median(seconds[workers]), peaks[workers]) for workers in commands}


def our_command(input_file, output_file, num_workers, shard_size_mb=None):
  command = [sys.executable, os.path.join(REPO, "create_pretraining_data.py"), f"--input_file={input_file}",
             f"--output_file={output_file}", f"--vocab_file={FLAGS.vocab_file}", "--do_lower_case=True",
             f"--max_seq_length={FLAGS.max_seq_length}", "--max_predictions_per_seq=20",
             f"--dupe_factor={FLAGS.dupe_factor}", f"--num_workers={num_workers}"]
  if shard_size_mb:
    command.append(f"--shard_size_mb={shard_size_mb}")
  return command


def remove_output(output_file):
  sys.path.insert(0, REPO)
  from bert_tf import features
  for path in output_file.split(","):
    for name in (path, features.manifest_path(path)):
      if os.path.exists(name):
        os.remove(name)


def records_equal(path_a, path_b):
  """Whether two TFRecord files hold the same parsed records in the same order."""
  import tensorflow as tf
  sys.path.insert(0, REPO)
  from bert_tf import features
  spec = features.pretraining_feature_spec(FLAGS.max_seq_length, 20)
  batches = [tf.data.TFRecordDataset(p).batch(4096).map(lambda r: tf.io.parse_example(r, spec))
             for p in (path_a, path_b)]
  count = 0
  for a, b in zip(*batches):
    for name in spec:
      if a[name].shape != b[name].shape or not bool(tf.reduce_all(a[name] == b[name])):
        return False
    count += int(a["input_ids"].shape[0])
  total = [sum(1 for _ in tf.data.TFRecordDataset(p)) for p in (path_a, path_b)]
  return total[0] == total[1] == count


def main(argv):
  del argv
  workdir = FLAGS.workdir or tempfile.mkdtemp(prefix="bench_pretraining_data_")
  os.makedirs(workdir, exist_ok=True)
  corpus_mb = os.path.getsize(FLAGS.corpus) / 1e6
  big = os.path.join(workdir, f"corpus_x{FLAGS.scale}.txt")
  with open(FLAGS.corpus, "rb") as src:
    text = src.read()
  if not text.endswith(b"\n"):
    text += b"\n"
  with open(big, "wb") as f:
    for _ in range(FLAGS.scale):
      f.write(text + b"\n")
  print(f"corpus {FLAGS.corpus} ({corpus_mb:.1f} MB), x{FLAGS.scale} input {os.path.getsize(big) / 1e6:.1f} MB, "
        f"dupe_factor={FLAGS.dupe_factor} max_seq_length={FLAGS.max_seq_length}, {os.cpu_count()} cores",
        flush=True)

  rows = []
  original_out = os.path.join(workdir, "original.tfrecord")
  if FLAGS.original_script:
    seconds, rss = measure([sys.executable, "-c", _ORIGINAL_SHIM, FLAGS.original_script,
                            f"--input_file={FLAGS.corpus}", f"--output_file={original_out}",
                            f"--vocab_file={FLAGS.vocab_file}", "--do_lower_case=True",
                            f"--max_seq_length={FLAGS.max_seq_length}", "--max_predictions_per_seq=20",
                            f"--dupe_factor={FLAGS.dupe_factor}", "--masked_lm_prob=0.15",
                            "--random_seed=12345"])
    original = (seconds, rss, "measured")
  else:
    original = (FLAGS.original_seconds, FLAGS.original_peak_rss_mb, "given")
  rows.append(("original script, 1 process", "x1", original[0], original[1]))
  print(f"original ({original[2]}): {original[0]:.1f} s, {original[1]:.0f} MB", flush=True)

  # The fixed start-up cost of one process (imports, tokenizer tracing, compiled code), measured on
  # a tiny input: shown to separate it from the per-megabyte cost.
  tiny = os.path.join(REPO, "data/corpus/sample_text.txt")
  startup, _ = ours(tiny, os.path.join(workdir, "tiny.tfrecord"), 1)

  same_out = os.path.join(workdir, "ours.tfrecord")
  seconds, rss = ours(FLAGS.corpus, same_out, 1)
  rows.append(("ours, same flags, 1 worker", "x1", seconds, rss))
  identical = records_equal(same_out, original_out) if FLAGS.original_script else None

  sharded = {}
  for label, path in (("x1", FLAGS.corpus), (f"x{FLAGS.scale}", big)):
    outs = {workers: os.path.join(workdir, f"sharded_{label}_{workers}.tfrecord") for workers in (1, 2)}
    results = ours_alternating(path, outs, FLAGS.shard_size_mb)
    for workers in (1, 2):
      seconds, rss = results[workers]
      sharded[(label, workers)] = (seconds, rss, outs[workers])
      rows.append((f"ours, {FLAGS.shard_size_mb:g} MB shards, {workers} worker(s)", label, seconds, rss))
      print(f"  {rows[-1][0]} on {label}: {seconds:.1f} s, {rss:.0f} MB", flush=True)
  with open(sharded[("x1", 1)][2], "rb") as a, open(sharded[("x1", 2)][2], "rb") as b:
    workers_identical = a.read() == b.read()

  print()
  print(f"{'run':44s} {'input':>6s} {'seconds':>8s} {'speed-up':>9s} {'peak MB':>8s} {'RSS ratio':>9s}")
  for name, label, seconds, rss in rows:
    print(f"{name:44s} {label:>6s} {seconds:8.1f} {original[0] / seconds:8.1f}x {rss:8.0f} "
          f"{rss / original[1]:8.2f}x")
  big_label = f"x{FLAGS.scale}"
  print()
  print(f"1 worker vs original (same flags):      {original[0] / rows[1][2]:.1f}x faster (target >= 5x); "
        f"records identical to the original's: {identical if identical is not None else 'not measured'}")
  print(f"start-up of one process (tiny input):  {startup:.1f} s (paid once per worker, in parallel)")
  for label in ("x1", big_label):
    one, two = sharded[(label, 1)][0], sharded[(label, 2)][0]
    print(f"2 workers vs 1 on {label:>4s} sharded input:  {one / two:.2f}x faster (target >= 1.7x); "
          f"beyond start-up: {(one - startup) / max(two - startup, 1e-9):.2f}x")
  print(f"1 and 2 workers byte-identical output:  {workers_identical}")
  for workers in (1, 2):
    growth = sharded[(big_label, workers)][1] / sharded[("x1", workers)][1] - 1
    print(f"peak RSS growth for {FLAGS.scale}x input, {workers} worker(s): {100 * growth:+.0f}% (target < +20%)")
  if not FLAGS.workdir:
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
