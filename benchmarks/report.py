"""Benchmark results: what a benchmark script emits, and how run_all.py names and files its reports.

A benchmark calls `emit(dict)` once at the end. When the script runs under run_all.py,
$BERT_TF_BENCH_JSON names the file to write; run alone, `emit` does nothing (the printed table is
the result).

Reports are named by machine, what they ran and the date, with a letter for the runs of one day:
`cpu-2core_all-benchmarks_2026-11-29_d.md` (the whole suite) or
`cpu-2core_tokenization+pretraining-data_2026-11-29_e.md` (some of it), each with its `.json`.
Beside them, `latest.md` / `latest.json` hold, for every benchmark, its newest successful result
among the reports of that folder, and the report it comes from.
"""

import json
import os
import re
import string

LATEST = "latest"


def emit(results):
  path = os.environ.get("BERT_TF_BENCH_JSON")
  if not path:
    return
  with open(path, "w", encoding="utf-8") as f:
    json.dump(results, f, indent=2, sort_keys=True, default=float)


def machine_tag(info):
  """'cpu-2core', or 'gpu-h100-80gb-hbm3' ('-x8' for eight of them) from run_all's machine_info()."""
  gpus = info.get("gpus") or []
  if gpus:
    name = re.sub(r"[^a-z0-9]+", "-", gpus[0].lower().replace("nvidia", "")).strip("-")
    return f"gpu-{name}" + (f"-x{len(gpus)}" if len(gpus) > 1 else "")
  return f"cpu-{info.get('cpu_count')}core"


def what_tag(names, suite):
  """'all-benchmarks' for the whole suite, else the benchmarks' names joined by '+'."""
  if set(names) == set(suite):
    return "all-benchmarks"
  return "+".join(name.replace("_", "-") for name in names)


def report_stem(out_dir, info, names, suite):
  """The first free `<machine>_<what>_<date>_<letter>` in out_dir."""
  base = f"{machine_tag(info)}_{what_tag(names, suite)}_{info['date_utc'][:10]}"
  letters = list(string.ascii_lowercase) + [a + b for a in string.ascii_lowercase
                                            for b in string.ascii_lowercase]
  taken = set(os.listdir(out_dir)) if os.path.isdir(out_dir) else set()
  for letter in letters:
    stem = f"{base}_{letter}"
    if f"{stem}.json" not in taken and f"{stem}.md" not in taken:
      return stem
  raise RuntimeError(f"more than {len(letters)} reports named {base}_* in {out_dir}")


def _write_atomically(path, text):
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(tmp, path)


def markdown(info, records, title="bert_tf benchmark report"):
  lines = [f"# {title}", ""]
  if info:
    lines += [f"- date: {info['date_utc']}",
              f"- machine: {info.get('cpu')} x {info['cpu_count']} cores, {info.get('memory_gb')} GB, "
              f"GPUs: {', '.join(info['gpus']) or 'none'}",
              f"- python {info['python']}, " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()),
              ""]
  with_source = any("report" in r for r in records)
  if with_source:
    lines += ["| benchmark | command | report | date | wall (s) |", "|---|---|---|---|---|"]
    for r in records:
      lines.append(f"| {r['name']} | `{r['command']}` | [{r['report']}]({r['report']}) | "
                   f"{r['date_utc'][:10]} | {r['wall_time_s']} |")
  else:
    lines += ["| benchmark | command | exit | wall (s) |", "|---|---|---|---|"]
    for r in records:
      lines.append(f"| {r['name']} | `{r['command']}` | {r['exit_code']} | {r['wall_time_s']} |")
  for r in records:
    lines += ["", f"## {r['name']}", "", f"`{r['command']}`", ""]
    if with_source:
      lines += [f"From [{r['report']}]({r['report']}), {r['date_utc']}, {r['machine_text']}.", ""]
    lines += ["```", r["output"].rstrip(), "```"]
    if r.get("results"):
      lines += ["", "```json", json.dumps(r["results"], indent=2), "```"]
  return "\n".join(lines) + "\n"


def write_report(out_dir, stem, info, records):
  """Writes <stem>.json and <stem>.md, then refreshes latest.*; returns the two report paths."""
  os.makedirs(out_dir, exist_ok=True)
  json_path = os.path.join(out_dir, f"{stem}.json")
  md_path = os.path.join(out_dir, f"{stem}.md")
  _write_atomically(json_path, json.dumps({"machine": info, "benchmarks": records}, indent=2))
  _write_atomically(md_path, markdown(info, records))
  write_latest(out_dir)
  return json_path, md_path


def write_latest(out_dir):
  """latest.json / latest.md: each benchmark's newest successful record among out_dir's reports."""
  newest = {}
  for name in sorted(os.listdir(out_dir)):
    if not name.endswith(".json") or name == f"{LATEST}.json":
      continue
    with open(os.path.join(out_dir, name), encoding="utf-8") as f:
      report = json.load(f)
    if not isinstance(report, dict) or "benchmarks" not in report:
      continue
    info = report["machine"]
    machine_text = (f"{machine_tag(info)} ({info.get('cpu')}, {info.get('memory_gb')} GB, "
                    f"GPUs: {', '.join(info.get('gpus') or []) or 'none'})")
    for record in report["benchmarks"]:
      if record.get("exit_code") != 0:
        continue
      entry = dict(record, report=name[:-len(".json")] + ".md", date_utc=info["date_utc"],
                   machine_text=machine_text)
      known = newest.get(record["name"])
      if known is None or entry["date_utc"] >= known["date_utc"]:
        newest[record["name"]] = entry
  records = sorted(newest.values(), key=lambda r: r["name"])
  _write_atomically(os.path.join(out_dir, f"{LATEST}.json"),
                    json.dumps({"benchmarks": records}, indent=2))
  _write_atomically(os.path.join(out_dir, f"{LATEST}.md"), markdown(
      None, records, title="bert_tf benchmarks: the newest result of each"))
