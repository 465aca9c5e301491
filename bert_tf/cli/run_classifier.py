"""run_classifier.py: fine-tune BERT on a classification task, evaluate, predict, export.

The flags and defaults of google-research/bert's run_classifier.py, the runtime flags shared with
run_pretraining.py (strategy, precision, XLA), and additions: --export_dir, --xnli_language, the
generic-task columns and --seed. Example:

    python run_classifier.py --task_name=sst-2 --data_dir=data/sentiment \\
      --vocab_file=data/vocab/bert-base-uncased-vocab.txt --bert_config_file=out/bert_config.json \\
      --init_checkpoint=out --do_train --do_eval --output_dir=/tmp/sst2
"""

from absl import flags, logging

from bert_tf.cli import common
from bert_tf.cli.common import define_runtime_flags, validate_runtime_flags
from bert_tf.errors import UsageError, run_main

FLAGS = flags.FLAGS


def define_flags():
  """Defines the command's flags (idempotent)."""
  if "task_name" in FLAGS:
    return
  # The original's flags, same names and defaults.
  flags.DEFINE_string("data_dir", None, "The input data dir: the task's .tsv (or .csv/.jsonl) files.")
  flags.DEFINE_string("bert_config_file", None,
                      "bert_config.json of the pre-trained model (default: the one beside "
                      "--init_checkpoint).")
  flags.DEFINE_string("task_name", None, "cola, mnli, mrpc, xnli, sst-2, qnli, qqp, rte, wnli, "
                      "sts-b or generic.")
  flags.DEFINE_string("vocab_file", None, "The WordPiece vocabulary of the model (default for a "
                      "Hugging Face --init_checkpoint: its vocab.txt or tokenizer.json).")
  flags.DEFINE_string("output_dir", None, "Checkpoints, labels.json, eval_results.txt, "
                      "test_results.tsv and TensorBoard summaries go here.")
  flags.DEFINE_string("init_checkpoint", None,
                      "Pre-trained weights: a run_pretraining output dir or checkpoint prefix, an "
                      "original TF1 checkpoint (bert_model.ckpt), or a Hugging Face BERT directory "
                      "(config.json + model.safetensors or pytorch_model.bin); only the encoder is "
                      "loaded.")
  flags.DEFINE_bool("do_lower_case", True, "Lower-case the input (uncased models). Not given: "
                    "a Hugging Face --init_checkpoint's tokenizer setting, else True.")
  flags.DEFINE_integer("max_seq_length", 128, "Tokens per example after WordPiece, [CLS] and "
                       "[SEP] included; longer inputs are truncated, shorter ones padded.")
  flags.DEFINE_bool("do_train", False, "Fine-tune on train.")
  flags.DEFINE_bool("do_eval", False, "Evaluate on dev (writes eval_results.txt).")
  flags.DEFINE_bool("do_predict", False, "Predict the test set (writes test_results.tsv).")
  flags.DEFINE_integer("train_batch_size", 32, "Global training batch size.")
  common.define_fine_tuning_schedule_flags()
  # The original's TPU flags, accepted so old command lines run.
  common.define_legacy_tpu_flags()
  # Additions.
  define_runtime_flags()
  common.define_checkpoint_flags()
  flags.DEFINE_string("export_dir", None, "Write a SavedModel that classifies raw strings here.")
  flags.DEFINE_string("xnli_language", "zh", "The XNLI language (train and dev files).")
  flags.DEFINE_string("text_a_column", "sentence", "generic task: the (first) text column.")
  flags.DEFINE_string("text_b_column", None, "generic task: the second text column, for pairs.")
  flags.DEFINE_string("label_column", "label", "generic task: the label column.")
  flags.DEFINE_integer("seed", 12345, "Seed of the training-data shuffle, the classifier's initial "
                       "weights and the dropout.")


def options_from_flags(fv=None):
  """The `classification.RunOptions` of the parsed flags."""
  from bert_tf.finetuning.run_options import RunOptions
  fv = fv or FLAGS
  validate_runtime_flags(fv)
  strategy, tpu, steps_per_loop = common.resolve_legacy_tpu_flags(fv)
  return RunOptions(
      task_name=fv.task_name, data_dir=fv.data_dir, vocab_file=fv.vocab_file,
      output_dir=fv.output_dir, bert_config_file=fv.bert_config_file,
      init_checkpoint=fv.init_checkpoint,
      do_lower_case=common.explicit_bool("do_lower_case", fv),
      max_seq_length=fv.max_seq_length, do_train=fv.do_train, do_eval=fv.do_eval,
      do_predict=fv.do_predict, train_batch_size=fv.train_batch_size,
      eval_batch_size=fv.eval_batch_size, predict_batch_size=fv.predict_batch_size,
      learning_rate=fv.learning_rate, num_train_epochs=fv.num_train_epochs,
      warmup_proportion=fv.warmup_proportion, save_checkpoints_steps=fv.save_checkpoints_steps,
      export_dir=fv.export_dir, distribution_strategy=strategy, tpu=tpu,
      mixed_precision=fv.mixed_precision, jit_compile=fv.jit_compile,
      skip_padding=fv.skip_padding, steps_per_loop=steps_per_loop, log_steps=fv.log_steps,
      keep_checkpoint_max=fv.keep_checkpoint_max, xnli_language=fv.xnli_language,
      text_a_column=fv.text_a_column, text_b_column=fv.text_b_column,
      label_column=fv.label_column, seed=fv.seed, strict_checkpoint=fv.strict_checkpoint)


def main(argv):
  if len(argv) > 1:
    raise UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  common.refuse_if_output_dir_is_locked()
  from bert_tf.finetuning import run_options
  opts = options_from_flags()
  inputs = run_options.preflight(opts)  # flags, files and every row, before TensorFlow loads
  common.import_tensorflow_quietly()  # without its start-up INFO lines (unless --verbosity)
  from bert_tf.finetuning.classification import run_classifier
  logging.set_verbosity(logging.INFO)
  run_classifier(opts, inputs)


def run():
  define_flags()
  run_main(main, stop_on_sigterm=True)


if __name__ == "__main__":
  run()
