"""Checkpoint conversions and the `bert-checkpoints` command line.

  python -m bert_tf.checkpoints --import_tf1=bert_model.ckpt --bert_config_file=bert_config.json \\
      --output_dir=converted/
  python -m bert_tf.checkpoints --export_tf1=run/ --output_dir=exported/
  python -m bert_tf.checkpoints --import_hf=hf_model/ --output_dir=converted/
  python -m bert_tf.checkpoints --export_hf=run/ --vocab_file=vocab.txt --output_dir=hf_model/

The Hugging Face conversions live here, beside the command, because they use both formats' readers
(`core` and `huggingface`), which must not import each other both ways.
"""

import os

from absl import flags

from bert_tf.checkpoints import core, huggingface
from bert_tf.configs import BertConfig
from bert_tf.errors import UsageError, run_main
from bert_tf.utils.io_utils import atomic_write_text


def import_hf(directory, output_dir, what=None):
  """Converts an HF BERT directory into a bert_tf checkpoint: `ckpt-0`, `bert_config.json` and
  (when the directory has a vocab) `vocab.txt` in `output_dir`, which must hold no checkpoint.

  The checkpoint holds the model of the directory's layout (see `load_hf_model`). Returns its path.
  """
  import glob

  what = what or directory
  if not huggingface.is_hf_directory(directory):
    raise UsageError(f"{what}: not a Hugging Face model directory (no {huggingface.CONFIG_NAME} or weights)")
  if glob.glob(os.path.join(output_dir, "ckpt-*.index")):
    raise UsageError(f"--output_dir={output_dir} already holds a bert_tf checkpoint; choose an "
                     f"empty directory")
  model, _ = huggingface.load_hf_model(directory)
  tokens, _ = huggingface.hf_vocab(directory)
  os.makedirs(output_dir, exist_ok=True)
  if tokens is not None:
    atomic_write_text(os.path.join(output_dir, huggingface.VOCAB_NAME), "".join(t + "\n" for t in tokens))
  return core.save_bert_tf_checkpoint(model, output_dir, 0)


def export_hf(checkpoint_path, bert_config_file, output_dir, vocab_file=None, do_lower_case=True,
              what=None):
  """Writes a bert_tf (or TF1) checkpoint as an HF BERT directory; returns the weights' path.

  A pretraining checkpoint becomes `BertForPreTraining`, a run_classifier one
  `BertForSequenceClassification` (label names from its `labels.json`), an encoder-only one
  `BertModel`.

  Args:
    checkpoint_path: prefix, file or directory of the checkpoint.
    bert_config_file: its config, or None for the `bert_config.json` beside it.
    output_dir: where to write (see `save_hf_directory`).
    vocab_file: the model's vocab, or None for the `vocab.txt` beside the checkpoint.
    do_lower_case: the tokenizer's casing.
    what: how to name the checkpoint in errors (default: the path).
  """
  from bert_tf.modeling import BertClassifier, BertEncoder, BertPretrainer
  from bert_tf.modeling.layers import skip_weight_initialization
  what = what or checkpoint_path
  prefix, kind, num_labels = core.checkpoint_contents(checkpoint_path, what)
  config_file = core.config_file_for(prefix, bert_config_file, what)
  config = BertConfig.from_json_file(config_file)
  folder = os.path.dirname(prefix)
  if not vocab_file:
    vocab_file = os.path.join(folder, huggingface.VOCAB_NAME)
    if not os.path.isfile(vocab_file):
      raise UsageError(f"{what}: no {huggingface.VOCAB_NAME} beside the checkpoint; pass --vocab_file")
  labels = None
  labels_file = os.path.join(folder, "labels.json")
  if kind == "classifier" and os.path.isfile(labels_file):
    labels = huggingface.read_json(labels_file).get("labels")
  with skip_weight_initialization():  # every weight is overwritten below
    if kind == "pretrainer":
      model = BertPretrainer(config)
    elif kind == "classifier":
      model = BertClassifier(config, num_labels)
    else:
      model = BertEncoder(config)
  info = core.init_from_checkpoint(model, prefix, require_heads=True, config_source=config_file)
  if kind == "classifier" and "classifier output layer" not in info["loaded"]:
    raise UsageError(f"{what}: its classifier output layer could not be loaded")
  return huggingface.save_hf_directory(model, output_dir, vocab_file, do_lower_case, labels)


# ----------------------------------------------------------------------------------------------
# Command line.

FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string("import_tf1", None, "Original TF1 BERT checkpoint to convert into a bert_tf "
                      "checkpoint (prefix, file or directory).")
  flags.DEFINE_string("export_tf1", None, "bert_tf (or TF1) checkpoint to write as an original TF1 "
                      "checkpoint (prefix, file or directory).")
  flags.DEFINE_string("import_hf", None, "Hugging Face BERT directory (config.json, "
                      "model.safetensors or pytorch_model.bin, vocab.txt or tokenizer.json) to "
                      "convert into a bert_tf checkpoint.")
  flags.DEFINE_string("export_hf", None, "bert_tf (or TF1) checkpoint to write as a Hugging Face "
                      "directory into --output_dir (prefix, file or directory).")
  flags.DEFINE_string("bert_config_file", None, "bert_config.json of the checkpoint; default: the "
                      "bert_config.json beside it.")
  flags.DEFINE_string("vocab_file", None, "--export_hf: the model's vocab.txt; default: the "
                      "vocab.txt beside the checkpoint.")
  flags.DEFINE_bool("do_lower_case", True, "--export_hf: the tokenizer's casing, written to "
                    "tokenizer_config.json.")
  flags.DEFINE_string("output_dir", None, "Directory to write the converted checkpoint (with "
                      "bert_config.json) or Hugging Face model into.")




def main(argv):
  if len(argv) > 1:
    raise UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  modes = [m for m in ("import_tf1", "export_tf1", "import_hf", "export_hf") if getattr(FLAGS, m)]
  if len(modes) != 1:
    raise UsageError("pass exactly one of --import_tf1, --export_tf1, --import_hf or --export_hf")
  if not FLAGS.output_dir:
    raise UsageError("--output_dir is required")
  if FLAGS.import_hf or FLAGS.export_hf:
    if FLAGS.import_hf:
      path = import_hf(FLAGS.import_hf, FLAGS.output_dir,
                                   what=f"--import_hf={FLAGS.import_hf}")
    else:
      path = export_hf(FLAGS.export_hf, FLAGS.bert_config_file, FLAGS.output_dir,
                                   vocab_file=FLAGS.vocab_file, do_lower_case=FLAGS.do_lower_case,
                                   what=f"--export_hf={FLAGS.export_hf}")
  elif FLAGS.import_tf1:
    path = core.import_tf1(FLAGS.import_tf1, FLAGS.bert_config_file, FLAGS.output_dir,
                      what=f"--import_tf1={FLAGS.import_tf1}")
  else:
    path = core.export_tf1(FLAGS.export_tf1, FLAGS.bert_config_file, FLAGS.output_dir,
                      what=f"--export_tf1={FLAGS.export_tf1}")
  print(f"wrote {path}")


def run():
  define_flags()
  run_main(main)


if __name__ == "__main__":
  run()
