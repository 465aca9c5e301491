"""Structured results for `benchmarks/run_all.py`: a benchmark calls `emit(dict)` once at the end.

When the script runs under run_all.py, $BERT_TF_BENCH_JSON names the file to write; run alone,
`emit` does nothing (the printed table is the result).
"""

import json
import os


def emit(results):
  path = os.environ.get("BERT_TF_BENCH_JSON")
  if not path:
    return
  with open(path, "w", encoding="utf-8") as f:
    json.dump(results, f, indent=2, sort_keys=True, default=float)
