"""Runs the benchmark suite and writes one report, named by machine, what ran and the date
(e.g. `cpu-2core_all-benchmarks_2026-11-29_d.md` and `.json`; see benchmarks/report.py), and
refreshes `latest.md` / `latest.json` beside it (each benchmark's newest successful result).

Each benchmark is its own script (each runs alone too, see docs/performance.md); this entry point
runs them one after another as subprocesses, records the machine, the package versions, each
script's command line, wall time, its printed table (which holds the medians of its repeats and the
ratios against the reference measured in the same run) and, where the script provides them, its
structured results (scripts write a JSON object to the path in $BERT_TF_BENCH_JSON via
`benchmarks/report.py`).

  python benchmarks/run_all.py                       # the CPU suite (about 15-25 minutes on 2 cores)
  python benchmarks/run_all.py --only=pretraining,input_pipeline --out_dir=output/bench
  python benchmarks/run_all.py --out_dir=benchmarks/results     # file it with the project's reports
  make bench

On a machine with an NVIDIA GPU, `bash benchmarks/gpu_check.sh` runs the BERT-base GPU figures.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import report  # benchmarks/report.py

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# name -> (script, arguments): the configurations docs/performance.md's targets refer to.
SUITE = {
    "tokenization": ("bench_tokenization.py", []),
    "pretraining_data": ("bench_pretraining_data.py", []),
    "pretraining": ("bench_pretraining.py", ["--preset=small", "--batch=32", "--steps=3", "--repeats=3",
                                             "--warmup=1"]),
    "pretraining_austen_lengths": ("bench_pretraining.py", [
        "--preset=small", "--batch=32", "--steps=3", "--repeats=3", "--warmup=1", "--lengths=austen"]),
    "finetuning": ("bench_finetuning.py", []),
    "input_pipeline": ("bench_input_pipeline.py", ["--preset=small", "--batch=32", "--steps=2",
                                                   "--repeats=3", "--warmup=1"]),
    "checkpoint_load": ("bench_checkpoint_load.py", []),
    "hf_checkpoint_load": ("bench_hf_checkpoint_load.py", []),
    "classifier_input": ("bench_classifier_input.py", []),
    "beam_pipeline": ("bench_beam_pipeline.py", []),
}


def machine_info():
  info = {
      "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "platform": platform.platform(),
      "python": platform.python_version(),
      "cpu_count": os.cpu_count(),
  }
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    info["cpu"] = names[0] if names else None
    with open("/proc/meminfo", encoding="utf-8") as f:
      info["memory_gb"] = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
  except OSError:
    pass
  from importlib import metadata
  versions = {}
  for package in ("tensorflow", "tensorflow-text", "keras", "keras-hub", "numpy", "numba", "apache-beam"):
    try:
      versions[package] = metadata.version(package)
    except metadata.PackageNotFoundError:
      versions[package] = None
  info["versions"] = versions
  try:
    gpus = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                          capture_output=True, text=True, timeout=20).stdout.strip()
    info["gpus"] = gpus.splitlines() if gpus else []
  except (OSError, subprocess.TimeoutExpired):
    info["gpus"] = []
  return info


def run_one(name, script, args, timeout):
  """Runs one benchmark script; returns its record for the report."""
  fd, json_path = tempfile.mkstemp(suffix=".json")
  os.close(fd)
  os.remove(json_path)
  env = dict(os.environ, BERT_TF_BENCH_JSON=json_path, TF_CPP_MIN_LOG_LEVEL="2")
  cmd = [sys.executable, os.path.join(HERE, script)] + args
  print(f"\n==> {name}: {' '.join(['python', 'benchmarks/' + script] + args)}", flush=True)
  start = time.time()
  try:
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
  except subprocess.TimeoutExpired as e:
    code, stdout, stderr = "timeout", e.stdout or "", f"timed out after {timeout} s"
    stdout = stdout.decode() if isinstance(stdout, bytes) else stdout
  wall = time.time() - start
  print(stdout, flush=True)
  if code != 0:
    print(f"    failed ({code}): {stderr.strip().splitlines()[-1:] if stderr else ''}", flush=True)
  record = {"name": name, "command": " ".join(["python", "benchmarks/" + script] + args),
            "exit_code": code, "wall_time_s": round(wall, 1), "output": stdout}
  if code != 0:
    record["stderr_tail"] = stderr[-2000:]
  if os.path.exists(json_path):
    with open(json_path, encoding="utf-8") as f:
      record["results"] = json.load(f)
    os.remove(json_path)
  return record


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--only", default="", help="Comma list of benchmarks to run (default: all): "
                      + ", ".join(SUITE))
  parser.add_argument("--out_dir", default=os.path.join(REPO, "output", "bench"))
  parser.add_argument("--timeout", type=int, default=1800, help="Seconds allowed per benchmark.")
  parser.add_argument("--original_bert_dir", default=None,
                      help="A checkout of google-research/bert: its create_pretraining_data.py and "
                      "tokenization.py are then measured as the references (never bundled here).")
  args = parser.parse_args()
  names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SUITE)
  unknown = [n for n in names if n not in SUITE]
  if unknown:
    sys.exit(f"error: --only: unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(SUITE)}")
  info = machine_info()
  suite = {name: (script, list(extra)) for name, (script, extra) in SUITE.items()}
  if args.original_bert_dir:
    suite["pretraining_data"][1].append(
        "--original_script=" + os.path.join(args.original_bert_dir, "create_pretraining_data.py"))
    suite["tokenization"][1].append(
        "--original_tokenization=" + os.path.join(args.original_bert_dir, "tokenization.py"))
  records = [run_one(n, *suite[n], timeout=args.timeout) for n in names]
  stem = report.report_stem(args.out_dir, info, names, SUITE)
  json_path, md_path = report.write_report(args.out_dir, stem, info, records)
  print(f"\nreport: {md_path}\n        {json_path}\nlatest: {os.path.join(args.out_dir, 'latest.md')}")
  sys.exit(0 if all(r["exit_code"] == 0 for r in records) else 1)


if __name__ == "__main__":
  main()
