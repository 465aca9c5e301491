"""The documentation cannot drift from the code: flag tables, README length, links, README commands.

When a flag changes, regenerate the tables: python -m bert_tf.cli.flag_docs
"""

import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

from bert_tf.cli import flag_docs

REPO = pathlib.Path(__file__).resolve().parent.parent
README = REPO / "README.md"
TMP_IN_README = "/tmp/bert_tf/"  # where the README's examples write; redirected to a test folder

# Pages linked from the docs that another branch writes; while one is missing its links are not
# checked, and test_pending_pages_exist says so (skipped, with the reason). Drop an entry once merged.
PENDING = {}  # pages linked before they exist, with the reason (none now)

# README commands run by test_readme_commands_run_as_written, in README order, as written, with
# these flags appended (absl takes the last value of a repeated flag) to keep them to seconds.
RUN = {
    "python create_pretraining_data.py": [],
    "python run_pretraining.py": ["--num_train_steps=2", "--num_warmup_steps=1", "--max_eval_steps=1",
                                  "--train_batch_size=8", "--eval_batch_size=8",
                                  "--shuffle_buffer_size=64", "--save_checkpoints_steps=2"],
    "bert-checkpoints --export_hf": [],
}
# README commands not run here, and why. Their flags are still checked against the definitions.
SKIP = {
    "make demo": "creates a virtual environment and trains for about 7 minutes; tests/test_demo.py "
                 "runs the same demo with --quick",
    "make test": "the whole test suite, of which this file is part",
    "python run_classifier.py": "minutes of fine-tuning on 10,073 sentences; tests/test_classification.py "
                                "runs the same code path on tiny data",
    "python run_ner.py": "minutes of training on 1,793 tweets; tests/test_ner_run.py runs the same code "
                         "path on tiny data",
    "bert-checkpoints --export_tf1": "one more TensorFlow start-up (10-15 s on 2 cores) for a path "
                                     "tests/test_checkpoints.py covers",
    "bert-checkpoints --import_hf": "one more TensorFlow start-up (10-15 s on 2 cores) for a path "
                                    "tests/test_huggingface.py covers",
}


def readme_commands():
  """The shell commands of README.md's ```bash blocks, continuation lines joined, comments dropped."""
  commands = []
  for block in re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S):
    joined = re.sub(r"\\\n\s*", " ", block)
    for line in joined.splitlines():
      line = line.split(" #")[0].strip()
      if line and not line.startswith("#"):
        commands.append(line)
  return commands


def classify(command):
  keys = [k for k in list(RUN) + list(SKIP)
          if command == k or command.startswith(k + " ") or command.startswith(k + "=")]
  return keys[0] if len(keys) == 1 else None


def command_module(command):
  """The module whose define_flags() a README command parses, or None (make, ...)."""
  words = shlex.split(command)
  modules = flag_docs.commands()
  if words[0] == "python" and words[1].endswith(".py"):
    return modules.get(pathlib.Path(words[1]).stem)
  if words[0].startswith("bert-"):
    return modules.get(words[0].removeprefix("bert-").replace("-", "_"))
  return None


@pytest.fixture(scope="module")
def all_flags():
  """{command name: its flags as flag_docs reads them}: one fresh process per command."""
  return {name: flag_docs.read_flags(module) for name, module in flag_docs.commands().items()}


def missing_flags(page_text, name, flags):
  """The flags of command `name` that its generated block in page_text does not list."""
  match = flag_docs.block_pattern(name).search(page_text)
  block = match.group(0) if match else ""
  return [f["name"] for f in flags if f"`--{f['name']}`" not in block]


# --- flag tables -------------------------------------------------------------------------------

def test_every_command_with_flags_is_found():
  found = flag_docs.commands()
  # Every console script and every top-level script of the repository reaches one of them.
  for script in REPO.glob("*.py"):
    if script.name == "setup.py":
      continue
    module = re.search(r"from (bert_tf\.\S+) import run", script.read_text()).group(1)
    assert module in found.values(), f"{script.name}: {module} not found by flag_docs.commands()"
  assert {"create_pretraining_data", "run_pretraining", "run_classifier", "run_ner",
          "checkpoints", "build_vocab", "demo"} <= set(found)


def test_every_flag_of_every_command_is_in_its_docs_page(all_flags):
  problems = []
  for name, flags in all_flags.items():
    page = flag_docs.page_for(name)
    assert flags, f"{name}: no flags read"
    if not page.exists():
      problems.append(f"{name}: {page.relative_to(REPO)} is missing")
      continue
    missing = missing_flags(page.read_text(encoding="utf-8"), name, flags)
    if missing:
      problems.append(f"{page.relative_to(REPO)} lacks {', '.join('--' + m for m in missing)}")
  assert not problems, "\n".join(problems) + "\nregenerate: python -m bert_tf.cli.flag_docs"


def test_flag_tables_are_up_to_date(all_flags):
  """Defaults and help texts too: each block is exactly what the generator writes now."""
  stale = []
  for name, flags in all_flags.items():
    page = flag_docs.page_for(name)
    text = page.read_text(encoding="utf-8") if page.exists() else ""
    if flag_docs.updated_page(name, text, flag_docs.render(name, flags)) != text:
      stale.append(str(page.relative_to(REPO)))
  assert not stale, f"out of date: {', '.join(stale)}; regenerate: python -m bert_tf.cli.flag_docs"


def test_a_flag_added_to_the_code_is_reported_missing(all_flags):
  flags = all_flags["run_pretraining"]
  text = flag_docs.page_for("run_pretraining").read_text(encoding="utf-8")
  assert missing_flags(text, "run_pretraining", flags) == []
  added = flags + [{"name": "a_flag_nobody_documented", "default": "", "help": "x", "choices": []}]
  assert missing_flags(text, "run_pretraining", added) == ["a_flag_nobody_documented"]
  regenerated = flag_docs.updated_page("run_pretraining", text, flag_docs.render("run_pretraining", added))
  assert missing_flags(regenerated, "run_pretraining", added) == []
  assert regenerated.count("<!-- flags:run_pretraining start") == 1


def test_a_page_without_a_block_gets_one_appended():
  block = flag_docs.render("new_tool", [{"name": "x", "default": "1", "help": "a | b",
                                         "choices": []}])
  page = flag_docs.updated_page("new_tool", "", block)
  assert page.startswith("# new_tool\n") and "## Flags" in page
  assert "| `--x` | `1` | a \\| b |" in page
  assert flag_docs.updated_page("new_tool", page, block) == page


# --- README ------------------------------------------------------------------------------------

def test_readme_is_at_most_300_lines():
  lines = README.read_text(encoding="utf-8").count("\n")
  assert lines <= 300, f"README.md has {lines} lines"


def _links():
  pages = [README, REPO / "CONTRIBUTING.md"] + sorted((REPO / "docs").glob("*.md"))
  for page in pages:
    if not page.exists():
      continue
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    for target in re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", text):
      if re.match(r"[a-z]+:", target) or target.startswith("#"):
        continue
      yield page, target


def test_every_relative_link_points_to_an_existing_file():
  links = list(_links())
  assert len(links) > 20  # a regex that found nothing would pass on anything
  assert sum("#" in target for _, target in links) >= 5
  broken = []
  for page, target in links:
    path = (page.parent / target.split("#")[0]).resolve()
    rel = os.path.relpath(path, REPO)
    if not path.exists() and not (rel in PENDING and not (REPO / rel).exists()):
      broken.append(f"{page.relative_to(REPO)}: {target}")
    elif "#" in target and path.suffix == ".md" and path.exists():
      if target.split("#", 1)[1] not in _anchors(path):
        broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
  assert not broken, "broken links:\n" + "\n".join(broken)


def _anchors(path):
  """GitHub's heading anchors of a Markdown file."""
  text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
  return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
          for h in re.findall(r"^#+ (.*)$", text, re.M)}


def test_every_readme_command_is_run_or_skipped_with_a_reason():
  commands = readme_commands()
  assert len(commands) >= 8
  unclassified = [c for c in commands if classify(c) is None]
  assert not unclassified, ("README commands neither in RUN nor in SKIP of tests/test_docs.py:\n"
                            + "\n".join(unclassified))
  assert any(classify(c) == "python create_pretraining_data.py" for c in commands)


def test_readme_commands_use_only_defined_flags(all_flags):
  by_module = {flag_docs.commands()[name]: {f["name"] for f in flags}
               for name, flags in all_flags.items()}
  unknown = []
  checked = 0
  for command in readme_commands():
    module = command_module(command)
    if module is None:
      continue
    checked += 1
    for word in shlex.split(command)[1:]:
      name = word.split("=")[0].removeprefix("--")
      if word.startswith("--") and name not in by_module[module] and name.removeprefix("no") \
          not in by_module[module]:
        unknown.append(f"{word.split('=')[0]} in: {command[:60]}...")
  assert checked >= 6
  assert not unknown, "\n".join(unknown)


@pytest.mark.parametrize("key", sorted(SKIP))
def test_readme_command_not_run_here(key):
  assert any(classify(c) == key for c in readme_commands()), f"{key!r} is no longer in README.md"
  pytest.skip(f"README `{key} ...`: {SKIP[key]}")


def _argv(command, out_dir):
  words = [w.replace(TMP_IN_README.rstrip("/"), str(out_dir)) for w in shlex.split(command)]
  if words[0] == "python":
    return [sys.executable] + words[1:]
  module = command_module(command)
  return [sys.executable, "-c", f"from {module} import run; run()"] + words[1:]


def test_readme_commands_run_as_written(tmp_path):
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
  ran = []
  for command in readme_commands():
    key = classify(command)
    if key not in RUN:
      continue
    argv = _argv(command, tmp_path) + RUN[key]
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"{command}\nexit {proc.returncode}:\n{proc.stderr[-3000:]}"
    ran.append(key)
  assert ran == list(RUN)
  assert (tmp_path / "austen.tfrecord").stat().st_size > 1_000_000
  assert (tmp_path / "austen.tfrecord.manifest.json").exists()
  assert (tmp_path / "pretraining" / "eval_results.txt").exists()
  assert (tmp_path / "hf" / "model.safetensors").exists()


# --- benchmark reports -------------------------------------------------------------------------

def _benchmarks_module(name):
  import importlib.util
  spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "benchmarks" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  sys.path.insert(0, str(REPO / "benchmarks"))
  try:
    spec.loader.exec_module(module)
  finally:
    sys.path.remove(str(REPO / "benchmarks"))
  return module


def test_report_files_are_named_by_machine_and_what_they_ran(tmp_path):
  report = _benchmarks_module("report")
  suite = {"tokenization": None, "pretraining": None, "beam_pipeline": None}
  info = {"cpu_count": 2, "gpus": [], "date_utc": "2026-12-07T10:00:00+00:00"}
  assert report.report_stem(tmp_path, info, list(suite), suite) == "cpu-2core_all-benchmarks_2026-12-07_a"
  (tmp_path / "cpu-2core_all-benchmarks_2026-12-07_a.json").write_text("{}")
  assert report.report_stem(tmp_path, info, list(suite), suite) == "cpu-2core_all-benchmarks_2026-12-07_b"
  assert report.report_stem(tmp_path, info, ["tokenization", "beam_pipeline"], suite) == \
      "cpu-2core_tokenization+beam-pipeline_2026-12-07_a"
  assert report.machine_tag({"gpus": ["NVIDIA H100 80GB HBM3"]}) == "gpu-h100-80gb-hbm3"
  for path in (REPO / "benchmarks" / "results").glob("*.md"):
    assert path.stem == "latest" or re.fullmatch(r"(cpu-\d+core|gpu-[a-z0-9-]+)_[a-z0-9+-]+_"
                                                 r"\d{4}-\d\d-\d\d_[a-z]+", path.stem), path.name


def test_latest_report_holds_the_newest_result_of_each_benchmark(tmp_path):
  import shutil
  report = _benchmarks_module("report")
  results = REPO / "benchmarks" / "results"
  for path in results.glob("*.json"):
    if path.stem != "latest":
      shutil.copy(path, tmp_path / path.name)
  report.write_latest(tmp_path)
  assert (tmp_path / "latest.md").read_text() == (results / "latest.md").read_text(), (
      "benchmarks/results/latest.md is stale: python -c \"import sys; sys.path.insert(0, "
      "'benchmarks'); import report; report.write_latest('benchmarks/results')\"")
  import json
  latest = json.loads((tmp_path / "latest.json").read_text())
  by_name = {r["name"]: r["report"] for r in latest["benchmarks"]}
  # The newest report that ran tokenization is the partial run e; pretraining's is the full run d.
  assert by_name["tokenization"].endswith("_e.md") and by_name["pretraining"].endswith("_d.md")
