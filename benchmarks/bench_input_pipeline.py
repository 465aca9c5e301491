"""Is the input pipeline ever the bottleneck? tf.data alone against the training step, same run.

Writes synthetic pretraining TFRecords (the real schema and shapes, a manifest each) to a temporary
folder, then measures:
  1. sequences/s that `bert_tf.pretraining.input_pipeline.pretraining_dataset` delivers from them (file shuffle,
     interleave, shuffle buffer, batch, parse, prefetch), iterated with nothing else to do;
  2. sequences/s of bert_tf's training step for the same config, batch and sequence length
     (`bench_pretraining.OursRunner`, in-memory batches).
and prints the ratio; the pipeline should deliver at least 10x what training consumes.

Example:
  python benchmarks/bench_input_pipeline.py --preset=small --batch=32
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import report  # benchmarks/report.py

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import tensorflow as tf  # noqa: E402

import bench_pretraining  # noqa: E402
from bert_tf import features
from bert_tf.pretraining import input_pipeline  # noqa: E402


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--preset", choices=sorted(bench_pretraining.PRESETS), default="small")
  p.add_argument("--vocab_size", type=int, default=30522)
  p.add_argument("--seq_length", type=int, default=128)
  p.add_argument("--predictions", type=int, default=20)
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--files", type=int, default=4)
  p.add_argument("--records_per_file", type=int, default=2500)
  p.add_argument("--pipeline_batches", type=int, default=200, help="batches per timed pipeline repeat")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--precision", default="float32")
  p.add_argument("--jit_compile", action="store_true")
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--warmup", type=int, default=2)
  return p.parse_args(argv)


def write_files(args, folder):
  """Synthetic records with the real schema; returns the comma list of paths."""
  batch_args = argparse.Namespace(batch=args.records_per_file, seq_length=args.seq_length,
                                  predictions=args.predictions, vocab_size=args.vocab_size)
  paths = []
  for i in range(args.files):
    f = bench_pretraining.synthetic_batch(batch_args, seed=i)
    path = os.path.join(folder, f"part-{i:05d}.tfrecord")
    with tf.io.TFRecordWriter(path) as w:
      for j in range(args.records_per_file):
        w.write(features.serialize_pretraining_example(
            f["input_ids"][j], f["input_mask"][j], f["segment_ids"][j], f["masked_lm_positions"][j],
            f["masked_lm_ids"][j], f["masked_lm_weights"][j], int(f["next_sentence_labels"][j, 0])))
    features.write_manifest(path, {"max_seq_length": args.seq_length,
                                   "max_predictions_per_seq": args.predictions,
                                   "num_instances": args.records_per_file, "compression": ""})
    paths.append(path)
  return ",".join(paths)


def pipeline_rate(args, spec):
  files = input_pipeline.check_pretraining_files(spec, args.seq_length, args.predictions)
  ds = input_pipeline.pretraining_dataset(files, args.batch, args.seq_length, args.predictions, seed=1)
  iterator = iter(ds)
  for _ in range(20):  # fill the shuffle buffer and prefetch
    next(iterator)
  rates = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    for _ in range(args.pipeline_batches):
      next(iterator)
    rates.append(args.pipeline_batches * args.batch / (time.perf_counter() - start))
  return statistics.median(rates)


def training_rate(args):
  from bert_tf.pretraining import training
  training.set_precision_policy(args.precision)
  runner = bench_pretraining.OursRunner(args, args.precision)
  for _ in range(args.warmup):
    runner.run()
  rates = []
  for _ in range(args.repeats):
    steps, elapsed = bench_pretraining.time_call(runner)
    rates.append(steps * args.batch / elapsed)
  return statistics.median(rates)


def main(argv=None):
  args = parse_args(argv)
  folder = tempfile.mkdtemp(prefix="bench_input_pipeline_")
  try:
    spec = write_files(args, folder)
    data = pipeline_rate(args, spec)
    train = training_rate(args)
  finally:
    shutil.rmtree(folder, ignore_errors=True)
  print(f"{args.preset} seq={args.seq_length} batch={args.batch} {args.precision}: "
        f"tf.data {data:.0f} seq/s, training {train:.1f} seq/s, ratio {data / train:.1f}x "
        f"({os.cpu_count()} CPUs, shared)", flush=True)
  report.emit({"preset": args.preset, "seq_length": args.seq_length, "batch": args.batch,
               "precision": args.precision, "pipeline_sequences_per_sec": data,
               "training_sequences_per_sec": train, "ratio": data / train})


if __name__ == "__main__":
  main()
