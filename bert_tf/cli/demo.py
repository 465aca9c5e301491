"""The main job in one command: the whole pipeline on the bundled data, then a summary.

`make demo` (or `python -m bert_tf.cli.demo`) runs, each stage as the command a user would type:

  1. the vocab: the bundled BERT-Base uncased `vocab.txt` (or `--build_vocab` learns one);
  2. `create_pretraining_data.py` on the bundled corpus (all cores);
  3. `run_pretraining.py` with a small BERT for a few minutes (GPU when present, else CPU);
  4. `run_classifier.py` on the bundled sentiment data (GLUE SST-2 layout) from that checkpoint,
     with evaluation, prediction and a raw-string SavedModel export;
  5. a summary table, `summary.json` and `curves.png` (pretraining loss / masked-LM accuracy and
     fine-tuning accuracy against the majority baseline).

With `--init_from=DIR` (a Hugging Face BERT directory, e.g. `make demo ARGS=--init_from=DIR`) only
the fine-tuning stage runs, from those pretrained weights (config, vocab and casing from the
directory), against the same run from random weights (`--compare_random_init`, on by default
there) and the majority class.

Everything is written under `--output_dir` (default `output/demo`); each stage's full log is kept in
`<output_dir>/logs/`. Re-running resumes finished stages (pretraining and fine-tuning restart from
their checkpoints), `--fresh` starts over.
"""

import json
import os
import shutil
import subprocess
import sys
import time

from absl import flags

from bert_tf import errors
from bert_tf.utils.io_utils import read_eval_results

FLAGS = flags.FLAGS

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A small BERT that learns something in minutes on two CPU cores.
DEMO_BERT_CONFIG = {
    "vocab_size": None,  # from the vocab
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 512,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 128,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
}


def define_flags():
  if "demo_output_dir" in FLAGS:
    return
  flags.DEFINE_string("demo_output_dir", os.path.join("output", "demo"),
                      "Everything the demo writes goes under this folder.")
  flags.DEFINE_string("data_dir", os.path.join(REPO_ROOT, "data"), "The bundled data folder.")
  flags.DEFINE_string("corpus", "corpus/austen.txt,corpus/mobydick.txt",
                      "Pretraining corpus, relative to --data_dir (comma list).")
  flags.DEFINE_bool("build_vocab", False, "Learn a WordPiece vocab from the corpus instead of using "
                    "the bundled BERT-Base uncased vocab.")
  flags.DEFINE_integer("vocab_size", 8000, "Size of the vocab learned with --build_vocab.")
  flags.DEFINE_integer("max_seq_length", 128, "Pretraining sequence length.")
  flags.DEFINE_integer("dupe_factor", 2, "create_pretraining_data --dupe_factor.")
  flags.DEFINE_integer("pretrain_steps", 1500, "Pretraining optimizer steps.")
  flags.DEFINE_integer("pretrain_batch_size", 32, "Pretraining global batch.")
  flags.DEFINE_float("pretrain_learning_rate", 1e-3, "Pretraining peak learning rate.")
  flags.DEFINE_float("finetune_epochs", 2.0, "Fine-tuning epochs on the sentiment data.")
  flags.DEFINE_float("finetune_learning_rate", 1e-3, "Fine-tuning peak learning rate (small models "
                     "fine-tune best with a larger rate than BERT-Base's 2e-5..5e-5).")
  flags.DEFINE_integer("finetune_max_seq_length", 64, "Fine-tuning sequence length.")
  flags.DEFINE_bool("compare_random_init", False, "Also fine-tune from random weights, to show "
                    "what pretraining adds.")
  flags.DEFINE_string("init_from", None, "A Hugging Face BERT directory (config.json, "
                      "model.safetensors or pytorch_model.bin, vocab.txt or tokenizer.json): skip "
                      "vocab, data and pretraining; fine-tune from it (and from random weights).")
  flags.DEFINE_integer("finetune_train_rows", None, "Fine-tune on the first N rows of train.tsv "
                       "only (dev stays whole).")
  flags.DEFINE_bool("fresh", False, "Delete --demo_output_dir first.")
  flags.DEFINE_bool("quick", False, "A tiny run (seconds of training) to check the plumbing.")


class Demo:
  """Runs the stages as subprocesses, streaming their output, and collects the figures."""

  def __init__(self, out, data_dir):
    self.out = os.path.abspath(out)
    self.data_dir = os.path.abspath(data_dir)
    self.logs = os.path.join(self.out, "logs")
    os.makedirs(self.logs, exist_ok=True)
    self.timings = {}
    self.stage_index = 0

  def path(self, *parts):
    return os.path.join(self.out, *parts)

  def data(self, relative):
    return os.path.join(self.data_dir, relative)

  def run_stage(self, name, module, args, total):
    """Runs `python -m <module> <args>`, echoing its output with a prefix, and times it."""
    self.stage_index += 1
    cmd = [sys.executable, "-m", module] + args
    shown = " ".join(_shorten(a, self.out) for a in ["python", "-m", module] + args)
    print(f"\n==> [{self.stage_index}/{total}] {name}\n    {shown}", flush=True)
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    start = time.time()
    log_path = os.path.join(self.logs, f"{self.stage_index}_{name}.log")
    with open(log_path, "w", encoding="utf-8") as log:
      proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env, cwd=REPO_ROOT, bufsize=1)
      for line in proc.stdout:
        log.write(line)
        if _worth_showing(line):
          print(f"    [{name}] {line.rstrip()}", flush=True)
      code = proc.wait()
    self.timings[name] = time.time() - start
    if code:
      raise errors.UsageError(f"stage {name} failed (exit {code}); full log: {log_path}")
    print(f"    done in {self.timings[name]:.1f} s", flush=True)


def _worth_showing(line):
  """Drops TensorFlow's start-up chatter; keeps the commands' own progress lines."""
  noise = ("oneDNN", "cpu_feature_guard", "rebuild TensorFlow", "cudart_stub", "Could not find cuda",
           "TF-TRT", "computation placer", "absl::InitializeLog", "E0000", "W0000 00:00")
  return line.strip() and not any(n in line for n in noise)


def _shorten(text, out):
  return text.replace(out, "$OUT").replace(REPO_ROOT + os.sep, "")


def _read_jsonl(path):
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def majority_baseline(data_dir):
  """(most frequent training label, dev accuracy of always predicting it), read with the same
  SST-2 processor run_classifier.py uses."""
  import numpy as np
  from bert_tf.finetuning import classifier_data
  processor = classifier_data.get_processor("sst-2")
  train = processor.examples(data_dir, "train")
  dev = processor.examples(data_dir, "dev")
  top = processor.get_labels()[int(np.bincount(classifier_data.label_ids(processor, train)).argmax())]
  return top, classifier_data.majority_baseline(processor, train, dev)


def run_demo():
  out = FLAGS.demo_output_dir
  if FLAGS.fresh and os.path.isdir(out):
    shutil.rmtree(out)
  demo = Demo(out, FLAGS.data_dir)
  if FLAGS.init_from:
    return run_finetuning_from_pretrained(demo, FLAGS.init_from)
  wall_start = time.time()
  quick = FLAGS.quick
  total = 4 + int(FLAGS.build_vocab) + int(FLAGS.compare_random_init)
  corpus = ",".join(demo.data(c) for c in (["corpus/sample_text.txt"] if quick else FLAGS.corpus.split(",")))

  # 1. Vocab.
  if FLAGS.build_vocab:
    vocab = demo.path("vocab.txt")
    demo.run_stage("build_vocab", "bert_tf.text.vocab", [
        f"--input_file={corpus}", f"--output_file={vocab}", f"--vocab_size={FLAGS.vocab_size}",
        "--do_lower_case=true"], total)
  else:
    vocab = demo.data("vocab/bert-base-uncased-vocab.txt")
    print(f"\n==> vocab: the bundled BERT-Base uncased vocab ({_shorten(vocab, demo.out)})", flush=True)
  with open(vocab, encoding="utf-8") as f:
    vocab_size = sum(1 for _ in f)

  # 2. Pretraining data.
  seq = 64 if quick else FLAGS.max_seq_length
  preds = max(1, round(seq * 0.15) + 1)
  records = demo.path("pretraining_data", "train.tfrecord")
  demo.run_stage("create_pretraining_data", "bert_tf.cli.create_pretraining_data", [
      f"--input_file={corpus}", f"--output_file={records}", f"--vocab_file={vocab}",
      "--do_lower_case=true", f"--max_seq_length={seq}", f"--max_predictions_per_seq={preds}",
      f"--dupe_factor={1 if quick else FLAGS.dupe_factor}", "--random_seed=12345"], total)

  # 3. Pretraining.
  config = dict(DEMO_BERT_CONFIG, vocab_size=vocab_size, max_position_embeddings=max(seq, 128))
  if quick:
    config.update(hidden_size=32, intermediate_size=64, num_hidden_layers=1)
  config_path = demo.path("bert_config.json")
  with open(config_path, "w", encoding="utf-8") as f:
    json.dump(config, f, indent=2)
  steps = 20 if quick else FLAGS.pretrain_steps
  batch = 8 if quick else FLAGS.pretrain_batch_size
  pretrain_dir = demo.path("pretraining")
  demo.run_stage("run_pretraining", "bert_tf.cli.run_pretraining", [
      f"--bert_config_file={config_path}", f"--input_file={records}", f"--output_dir={pretrain_dir}",
      "--do_train", "--do_eval", f"--train_batch_size={batch}", f"--eval_batch_size={batch}",
      f"--max_seq_length={seq}", f"--max_predictions_per_seq={preds}",
      f"--num_train_steps={steps}", f"--num_warmup_steps={max(1, steps // 10)}",
      f"--learning_rate={FLAGS.pretrain_learning_rate}",
      f"--save_checkpoints_steps={max(10, steps // 5)}", f"--log_steps={max(5, steps // 30)}",
      f"--steps_per_loop={max(5, steps // 30)}", f"--max_eval_steps={5 if quick else 50}",
      "--shuffle_buffer_size=2000"], total)

  # 4. Fine-tuning (+ optional random-init control).
  sentiment = demo.path("sentiment_slice") if quick else demo.data("sentiment")
  if quick:
    _slice_sentiment(demo.data("sentiment"), sentiment, rows=64)
  finetune_args = [
      "--task_name=sst-2", f"--data_dir={sentiment}", f"--vocab_file={vocab}",
      f"--bert_config_file={config_path}", "--do_lower_case=true",
      f"--max_seq_length={32 if quick else FLAGS.finetune_max_seq_length}",
      "--do_train", "--do_eval", "--do_predict", "--train_batch_size=32", "--eval_batch_size=64",
      "--predict_batch_size=64", f"--learning_rate={FLAGS.finetune_learning_rate}",
      f"--num_train_epochs={1.0 if quick else FLAGS.finetune_epochs}",
      "--save_checkpoints_steps=500"]
  finetune_dir = demo.path("finetuning")
  export_dir = demo.path("export")
  demo.run_stage("run_classifier", "bert_tf.cli.run_classifier", finetune_args + [
      f"--init_checkpoint={pretrain_dir}", f"--output_dir={finetune_dir}",
      f"--export_dir={export_dir}"], total)
  random_dir = None
  if FLAGS.compare_random_init:
    random_dir = demo.path("finetuning_random_init")
    demo.run_stage("run_classifier_random_init", "bert_tf.cli.run_classifier",
                   finetune_args + [f"--output_dir={random_dir}"], total)

  summary = collect_summary(demo, records, pretrain_dir, finetune_dir, random_dir, export_dir,
                            sentiment, time.time() - wall_start)
  summary["curves_png"] = plot_curves(demo, pretrain_dir, summary)
  with open(demo.path("summary.json"), "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=2, sort_keys=True)
  print_summary(summary)
  return summary


def run_finetuning_from_pretrained(demo, hf_dir):
  """The fine-tuning stage only, from a Hugging Face BERT directory and from random weights of the
  same config, with the same flags; prints dev accuracy and wall time of each."""
  from bert_tf.checkpoints import huggingface
  wall_start = time.time()
  hf_dir = os.path.abspath(hf_dir)
  if not huggingface.is_hf_directory(hf_dir):
    raise errors.UsageError(f"--init_from={hf_dir}: not a Hugging Face model directory "
                            f"(no config.json or model weights)")
  config = huggingface.read_hf_config(hf_dir)  # fails early, naming the file, on a bad directory
  sentiment = demo.data("sentiment")
  if FLAGS.quick or FLAGS.finetune_train_rows:
    sentiment = demo.path("sentiment_slice")
    _slice_sentiment(demo.data("sentiment"), sentiment, rows=64 if FLAGS.quick else None,
                     train_rows=64 if FLAGS.quick else FLAGS.finetune_train_rows)
  runs = [("pretrained", demo.path("finetuning"), [f"--init_checkpoint={hf_dir}"])]
  if FLAGS.compare_random_init or not FLAGS["compare_random_init"].present:
    # Same config (written as bert_config.json) and vocab as the pretrained run, random weights.
    config_path = demo.path("bert_config.json")
    config.to_json_file(config_path)
    vocab = huggingface.hf_vocab_file(hf_dir, demo.out)
    lower = huggingface.resolve_do_lower_case(None, hf_dir)
    runs.append(("random init", demo.path("finetuning_random_init"), [
        f"--bert_config_file={config_path}", f"--vocab_file={vocab}",
        f"--do_lower_case={str(lower).lower()}"]))
  common = [
      "--task_name=sst-2", f"--data_dir={sentiment}",
      f"--max_seq_length={32 if FLAGS.quick else FLAGS.finetune_max_seq_length}",
      "--do_train", "--do_eval", "--train_batch_size=32", "--eval_batch_size=64",
      f"--num_train_epochs={1.0 if FLAGS.quick else FLAGS.finetune_epochs}",
      "--save_checkpoints_steps=100000"]
  # The demo's default rate suits its small model trained from scratch, not pretrained weights.
  lr = FLAGS.finetune_learning_rate if FLAGS["finetune_learning_rate"].present else 5e-5
  common.append(f"--learning_rate={lr}")
  results = {}
  for name, out_dir, extra in runs:
    stage = "run_classifier" if name == "pretrained" else "run_classifier_random_init"
    demo.run_stage(stage, "bert_tf.cli.run_classifier", common + extra + [
        f"--output_dir={out_dir}"], len(runs))
    results[name] = (read_eval_results(os.path.join(out_dir, "eval_results.txt")).get(
        "eval_accuracy"), demo.timings[stage])
  top_label, baseline = majority_baseline(sentiment)
  summary = {"init_from": hf_dir, "output_dir": demo.out, "majority_label": top_label,
             "majority_baseline": baseline, "wall_time_s": round(time.time() - wall_start, 1),
             "runs": {n: {"dev_accuracy": a, "wall_time_s": round(t, 1)}
                      for n, (a, t) in results.items()}}
  with open(demo.path("summary.json"), "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=2, sort_keys=True)
  print("\n" + "=" * 72)
  print(f"fine-tuning from {hf_dir}  (lr {lr}, "
        f"{FLAGS.finetune_epochs} epochs, data {_shorten(sentiment, demo.out)})")
  print("=" * 72)
  for name, (accuracy, seconds) in results.items():
    print(f"  {name:<28} dev accuracy {_fmt(accuracy)}   {seconds:6.0f} s")
  print(f"  {'majority class (' + top_label + ')':<28} dev accuracy {_fmt(baseline)}")
  print("=" * 72, flush=True)
  return summary


def _slice_sentiment(src, dst, rows, train_rows=None):
  """The first `rows` rows of each split (None: all), or of train only `train_rows`."""
  os.makedirs(dst, exist_ok=True)
  for name in ("train.tsv", "dev.tsv", "test.tsv"):
    limit = train_rows if name == "train.tsv" and train_rows else rows
    with open(os.path.join(src, name), encoding="utf-8") as f:
      lines = f.readlines()
    if limit is not None:
      lines = lines[: limit + 1]
    with open(os.path.join(dst, name), "w", encoding="utf-8") as f:
      f.writelines(lines)


def collect_summary(demo, records, pretrain_dir, finetune_dir, random_dir, export_dir, sentiment,
                    wall_s):
  from bert_tf.features import read_manifest
  manifest = read_manifest(records) or {}
  log = _read_jsonl(os.path.join(pretrain_dir, "train_log.jsonl"))
  speeds = sorted(r["sequences_per_sec"] for r in log[1:] or log)
  pre_eval = read_eval_results(os.path.join(pretrain_dir, "eval_results.txt"))
  fine_eval = read_eval_results(os.path.join(finetune_dir, "eval_results.txt"))
  top_label, baseline = majority_baseline(sentiment)
  summary = {
      "output_dir": demo.out,
      "wall_time_s": round(wall_s, 1),
      "stage_times_s": {k: round(v, 1) for k, v in demo.timings.items()},
      "documents": manifest.get("num_documents", manifest.get("documents")),
      "instances": manifest.get("num_instances"),
      "tokens": manifest.get("num_tokens", manifest.get("tokens")),
      "pretrain_steps": int(pre_eval.get("global_step", log[-1]["step"] if log else 0)),
      "pretrain_sequences_per_sec": speeds[len(speeds) // 2] if speeds else None,
      "pretrain_first_loss": log[0]["loss"] if log else None,
      "pretrain_final_loss": log[-1]["loss"] if log else None,
      "pretrain_first_masked_lm_accuracy": log[0]["masked_lm_accuracy"] if log else None,
      "masked_lm_accuracy": pre_eval.get("masked_lm_accuracy"),
      "masked_lm_loss": pre_eval.get("masked_lm_loss"),
      "next_sentence_accuracy": pre_eval.get("next_sentence_accuracy"),
      "dev_accuracy": fine_eval.get("eval_accuracy"),
      "majority_label": top_label,
      "majority_baseline": baseline,
      "pretraining_dir": pretrain_dir,
      "finetuning_dir": finetune_dir,
      "export_dir": export_dir,
  }
  if random_dir:
    summary["dev_accuracy_random_init"] = read_eval_results(
        os.path.join(random_dir, "eval_results.txt")).get("eval_accuracy")
  return summary


def plot_curves(demo, pretrain_dir, summary):
  """Saves curves.png: pretraining loss and masked-LM accuracy, and the fine-tuning accuracy."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  log = _read_jsonl(os.path.join(pretrain_dir, "train_log.jsonl"))
  steps = [r["step"] for r in log]
  fig, axes = plt.subplots(1, 3, figsize=(15, 4))
  axes[0].plot(steps, [r["loss"] for r in log], label="total loss")
  if log and "masked_lm_loss" in log[0]:
    axes[0].plot(steps, [r["masked_lm_loss"] for r in log], label="masked-LM loss")
  axes[0].set(title="Pretraining loss", xlabel="step")
  axes[0].legend()
  axes[1].plot(steps, [r["masked_lm_accuracy"] for r in log], label="masked-LM accuracy (train)")
  if summary.get("masked_lm_accuracy") is not None:
    axes[1].axhline(summary["masked_lm_accuracy"], color="C1", linestyle="--",
                    label="masked-LM accuracy (eval)")
  axes[1].set(title="Pretraining masked-LM accuracy", xlabel="step")
  axes[1].legend()
  bars = [("majority class", summary["majority_baseline"], "grey")]
  if summary.get("dev_accuracy_random_init") is not None:
    bars.append(("random init", summary["dev_accuracy_random_init"], "C3"))
  bars.append(("pretrained", summary.get("dev_accuracy") or 0.0, "C2"))
  names, values, colors = zip(*bars)
  bars = axes[2].bar(names, values, color=colors)
  axes[2].bar_label(bars, fmt="%.3f")
  axes[2].set(title="Fine-tuning: sentiment dev accuracy", ylim=(0, 1))
  fig.tight_layout()
  path = demo.path("curves.png")
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def _fmt(value, spec=".4f"):
  if value is None:
    return "n/a"
  return format(value, spec) if isinstance(value, float) else str(value)


def _tensorboard_command():
  """`tensorboard` as it can be started from here (the demo extra installs it into the venv)."""
  beside = os.path.join(os.path.dirname(sys.executable), "tensorboard")
  if os.path.exists(beside):
    return os.path.relpath(beside) if beside.startswith(os.getcwd()) else beside
  return "tensorboard" if shutil.which("tensorboard") else "pip install tensorboard && tensorboard"


def print_summary(s):
  rows = [
      ("data", "documents", _fmt(s["documents"])),
      ("data", "instances", _fmt(s["instances"])),
      ("pretraining", "steps", _fmt(s["pretrain_steps"])),
      ("pretraining", "sequences/s (median)", _fmt(s["pretrain_sequences_per_sec"], ".1f")),
      ("pretraining", "loss first -> last logged",
       f"{_fmt(s['pretrain_first_loss'], '.3f')} -> {_fmt(s['pretrain_final_loss'], '.3f')}"),
      ("pretraining", "masked-LM accuracy (eval)", _fmt(s["masked_lm_accuracy"])),
      ("pretraining", "masked-LM loss (eval)", _fmt(s["masked_lm_loss"])),
      ("pretraining", "next-sentence accuracy (eval)", _fmt(s["next_sentence_accuracy"])),
      ("fine-tuning", "dev accuracy", _fmt(s["dev_accuracy"])),
      ("fine-tuning", f"majority baseline (label {s['majority_label']})", _fmt(s["majority_baseline"])),
  ]
  if "dev_accuracy_random_init" in s:
    rows.append(("fine-tuning", "dev accuracy, random init", _fmt(s["dev_accuracy_random_init"])))
  width = max(len(r[1]) for r in rows)
  print("\n" + "=" * 72)
  print(f"bert_tf demo summary   (wall time {s['wall_time_s']:.0f} s)")
  print("=" * 72)
  for group, key, value in rows:
    print(f"  {group:<12} {key:<{width}}  {value}")
  print("-" * 72)
  print(f"  output folder   {s['output_dir']}")
  print(f"  checkpoints     {s['pretraining_dir']}")
  print(f"  fine-tuned      {s['finetuning_dir']}")
  print(f"  SavedModel      {s['export_dir']}")
  print(f"  curves          {s['curves_png']}")
  print(f"  summary         {os.path.join(s['output_dir'], 'summary.json')}")
  print(f"  TensorBoard     {_tensorboard_command()} --logdir {s['output_dir']}")
  stages = ", ".join(f"{k} {v:.0f}s" for k, v in s["stage_times_s"].items())
  print(f"  stage times     {stages}")
  print("=" * 72, flush=True)


def main(argv):
  if len(argv) > 1:
    raise errors.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  run_demo()


def run():
  define_flags()
  errors.run_main(main)


if __name__ == "__main__":
  run()
