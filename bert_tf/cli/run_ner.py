"""run_ner.py: fine-tune BERT for token classification (named-entity recognition).

The flags of run_classifier.py where they mean the same (data, model, training, runtime:
strategy, precision, XLA, padding skipping, resume from --output_dir), plus --doc_stride and
--tag_scheme. See docs/token_classification.md. Example:

    python run_ner.py --data_dir=data/ner --vocab_file=data/vocab/bert-base-uncased-vocab.txt \\
      --bert_config_file=out/bert_config.json --init_checkpoint=out --do_train --do_eval \\
      --do_predict --output_dir=/tmp/ner --export_dir=/tmp/ner/export
"""

from absl import flags, logging

from bert_tf.cli import common
from bert_tf.cli.common import define_runtime_flags, validate_runtime_flags
from bert_tf.errors import UsageError, run_main

FLAGS = flags.FLAGS


def define_flags():
  """Defines the command's flags (idempotent)."""
  if "doc_stride" in FLAGS:
    return
  flags.DEFINE_string("data_dir", None, "Folder with train, dev and test files: .txt (CoNLL: the "
                      "word in the first column, the tag in the last, a blank line between "
                      "sentences) or .jsonl ({\"tokens\": [...], \"tags\": [...]}).")
  flags.DEFINE_string("bert_config_file", None,
                      "bert_config.json of the pre-trained model (default: the one beside "
                      "--init_checkpoint).")
  flags.DEFINE_string("vocab_file", None, "The WordPiece vocabulary of the model (default with a "
                      "Hugging Face --init_checkpoint: its own).")
  flags.DEFINE_string("output_dir", None, "Checkpoints, labels.json, eval_results.txt, "
                      "test_predictions.txt and TensorBoard summaries go here.")
  flags.DEFINE_string("init_checkpoint", None,
                      "Pre-trained weights: a run_pretraining output dir or checkpoint prefix, an "
                      "original TF1 checkpoint (bert_model.ckpt) or a Hugging Face BERT directory; "
                      "only the encoder is loaded.")
  flags.DEFINE_bool("do_lower_case", True, "Lower-case the input (uncased models). Not given: "
                    "a Hugging Face --init_checkpoint's tokenizer setting, else true.")
  flags.DEFINE_integer("max_seq_length", 128, "Sub-tokens per window, [CLS] and [SEP] included; "
                       "longer sentences are split into overlapping windows (--doc_stride).")
  flags.DEFINE_integer("doc_stride", None, "Sub-tokens between the starts of two windows of a "
                       "sentence longer than --max_seq_length - 2 (default: half of that).")
  flags.DEFINE_enum("tag_scheme", "auto", ["auto", "bio", "iob1"],
                    "Tag scheme of the files: bio (IOB2), iob1 (CoNLL-2003's original) or auto "
                    "(detected from train.txt; saved in labels.json).")
  flags.DEFINE_bool("do_train", False, "Fine-tune on train.")
  flags.DEFINE_bool("do_eval", False, "Evaluate on dev (writes eval_results.txt).")
  flags.DEFINE_bool("do_predict", False, "Tag the test set (writes test_predictions.txt).")
  flags.DEFINE_integer("train_batch_size", 32, "Global training batch size (windows).")
  common.define_fine_tuning_schedule_flags()
  common.define_legacy_tpu_flags()
  define_runtime_flags()
  common.define_checkpoint_flags()
  flags.DEFINE_string("export_dir", None, "Write a SavedModel that takes raw text and returns "
                      "entity spans here.")
  flags.DEFINE_integer("seed", 12345, "Seed of the training-data shuffle, the output layer's "
                       "initial weights and the dropout.")


def options_from_flags(fv=None):
  """The `ner_options.NerOptions` of the parsed flags."""
  from bert_tf.finetuning.ner_options import NerOptions
  fv = fv or FLAGS
  validate_runtime_flags(fv)
  strategy, tpu, steps_per_loop = common.resolve_legacy_tpu_flags(fv)
  names = ("data_dir", "vocab_file", "output_dir", "bert_config_file", "init_checkpoint",
           "max_seq_length", "doc_stride", "tag_scheme", "do_train", "do_eval",
           "do_predict", "train_batch_size", "eval_batch_size", "predict_batch_size",
           "learning_rate", "num_train_epochs", "warmup_proportion", "save_checkpoints_steps",
           "export_dir", "mixed_precision", "jit_compile", "skip_padding", "log_steps",
           "keep_checkpoint_max", "seed", "strict_checkpoint")
  return NerOptions(distribution_strategy=strategy, tpu=tpu, steps_per_loop=steps_per_loop,
                    do_lower_case=common.explicit_bool("do_lower_case", fv),
                    **{name: getattr(fv, name) for name in names})


def main(argv):
  if len(argv) > 1:
    raise UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  from bert_tf.finetuning import ner_options
  opts = options_from_flags()
  inputs = ner_options.preflight(opts)  # flags, files and every line, before TensorFlow loads
  common.refuse_if_output_dir_is_locked()
  common.import_tensorflow_quietly()
  from bert_tf.finetuning.tagging import run_ner
  logging.set_verbosity(logging.INFO)
  run_ner(opts, inputs)


def run():
  define_flags()
  run_main(main, stop_on_sigterm=True)


if __name__ == "__main__":
  run()
