"""Wall time of create_pretraining_data on Beam's local runner against the local multi-process job.

Runs the same command line four ways on the same input, checks the outputs are byte-identical,
and prints the times and their ratios to the multi-process run measured in the same invocation:
  local   --num_workers=N                      (worker processes, the default runner)
  local-1 --num_workers=1                      (everything in the calling process)
  beam    --runner=beam                        (Beam's Python local runner, one process)
  beam-mp --runner=beam -- --direct_num_workers=N --direct_running_mode=multi_processing

  python benchmarks/bench_beam_pipeline.py [--input_file=data/corpus/austen.txt] [--workers=2]
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import report  # benchmarks/report.py

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _children_cpu_seconds():
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def _run(label, args, env):
  """Runs the command; returns (wall seconds, CPU seconds of it and every process it waited for)."""
  start, cpu_start = time.time(), _children_cpu_seconds()
  done = subprocess.run([sys.executable, os.path.join(REPO, "create_pretraining_data.py"), *args],
                        env=env, capture_output=True, text=True)
  seconds, cpu = time.time() - start, _children_cpu_seconds() - cpu_start
  if done.returncode != 0:
    sys.exit(f"{label} failed:\n{done.stderr[-3000:]}")
  return seconds, cpu


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--input_file", default=os.path.join(REPO, "data/corpus/austen.txt"))
  parser.add_argument("--vocab_file", default=os.path.join(REPO, "data/vocab/bert-base-uncased-vocab.txt"))
  parser.add_argument("--workers", type=int, default=2)
  parser.add_argument("--dupe_factor", type=int, default=5)
  parser.add_argument("--shard_size_mb", type=float, default=0.5)
  parser.add_argument("--num_outputs", type=int, default=2)
  args = parser.parse_args()
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")  # Beam's worker processes import bert_tf
  common = [f"--input_file={args.input_file}", f"--vocab_file={args.vocab_file}", "--max_seq_length=128",
            f"--dupe_factor={args.dupe_factor}", f"--shard_size_mb={args.shard_size_mb}"]
  runs = {
      "local": [f"--num_workers={args.workers}"],
      "local-1": ["--num_workers=1"],
      "beam": ["--runner=beam"],
      "beam-mp": ["--runner=beam", "--", f"--direct_num_workers={args.workers}",
                  "--direct_running_mode=multi_processing"],
  }
  with tempfile.TemporaryDirectory() as tmp:
    times, outputs = {}, {}
    for label, extra in runs.items():
      names = [os.path.join(tmp, f"{label}-{k}.tfrecord") for k in range(args.num_outputs)]
      flags = common + [f"--output_file={','.join(names)}"]
      if "--" in extra:  # Beam options come after every flag of ours
        cut = extra.index("--")
        flags, extra = flags + extra[:cut], extra[cut:]
      times[label], cpu = _run(label, flags + extra, env)
      outputs[label] = [open(n, "rb").read() for n in names]
      shown = [f"--input_file={os.path.relpath(args.input_file, REPO)}"] + common[2:]
      print(f"{label:8s} {times[label]:6.1f} s wall {cpu:6.1f} s CPU   python create_pretraining_data.py {' '.join(shown)} "
            f"--output_file=<{args.num_outputs} files> {' '.join(runs[label])}", flush=True)
  identical = all(outputs[label] == outputs["local"] for label in outputs)
  print(f"outputs byte-identical: {identical}")
  for label in ("local-1", "beam", "beam-mp"):
    print(f"{label} / local time: {times[label] / times['local']:.2f}")
  load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
  print(f"cores: {os.cpu_count()}, load average at the end: {load:.1f}")
  report.emit({"wall_s": times, "byte_identical": identical, "workers": args.workers,
               "ratios_to_local": {label: times[label] / times["local"] for label in times},
               "load_average": load})
  if not identical:
    sys.exit(1)


if __name__ == "__main__":
  main()
