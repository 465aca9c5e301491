"""The one-command demo, in its --quick form: every stage runs and the summary is consistent."""

import json
import os
import subprocess
import sys

from conftest import REPO_ROOT


def test_quick_demo_runs_every_stage_and_summarises(tmp_path):
  out = tmp_path / "demo"
  proc = subprocess.run(
      [sys.executable, "-m", "bert_tf.cli.demo", "--quick", f"--demo_output_dir={out}"],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert "bert_tf demo summary" in proc.stdout
  summary = json.loads((out / "summary.json").read_text())
  # Data, pretraining and fine-tuning figures all come from the stages' own outputs.
  assert summary["instances"] > 0 and summary["documents"] > 0
  assert summary["pretrain_steps"] == 20
  assert summary["pretrain_final_loss"] < summary["pretrain_first_loss"]
  assert 0.0 <= summary["masked_lm_accuracy"] <= 1.0
  assert 0.0 <= summary["dev_accuracy"] <= 1.0
  assert 0.0 < summary["majority_baseline"] <= 1.0
  # Everything lives under the one output folder.
  for key in ("pretraining_dir", "finetuning_dir", "export_dir", "curves_png"):
    assert summary[key].startswith(str(out)), key
  assert os.path.exists(os.path.join(summary["export_dir"], "saved_model.pb"))
  with open(summary["curves_png"], "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert (out / "pretraining" / "eval_results.txt").exists()
  assert (out / "finetuning" / "test_results.tsv").exists()


def test_demo_rejects_stray_arguments(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "bert_tf.cli.demo", "stray", f"--demo_output_dir={tmp_path}"],
                        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith("error: unexpected arguments")
