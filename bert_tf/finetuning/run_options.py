"""What run_classifier does (`RunOptions`) and every check of its inputs that needs no TensorFlow.

`preflight(opts)` runs before TensorFlow is imported (seconds of start-up) and before anything is
written: flag values, the local files and folders the flags name, and every row of every split the
run will read (train for --do_train, dev for --do_eval, test for --do_predict), so that a bad
dev.tsv is reported at once rather than after training. Remote paths (gs://...) are checked later,
through tf.io.gfile, still before the first write.
"""

import dataclasses
import os
from typing import Dict, List, Optional

from bert_tf.errors import UsageError
from bert_tf.finetuning import classifier_data
from bert_tf.pretraining.run_checks import check_init_checkpoint
from bert_tf.utils.io_utils import is_remote


@dataclasses.dataclass(kw_only=True)
class FineTuningOptions:
  """The options run_classifier and run_ner share (the same flags, meaning the same); each
  command's own options add theirs (`RunOptions`, `ner_options.NerOptions`). Keyword-only."""
  data_dir: str
  vocab_file: Optional[str]  # None: the vocab of a Hugging Face --init_checkpoint
  output_dir: str
  bert_config_file: Optional[str] = None
  init_checkpoint: Optional[str] = None
  do_lower_case: Optional[bool] = True  # None: a Hugging Face checkpoint's tokenizer setting, else True
  max_seq_length: int = 128
  do_train: bool = False
  do_eval: bool = False
  do_predict: bool = False
  train_batch_size: int = 32
  eval_batch_size: int = 8
  predict_batch_size: int = 8
  learning_rate: float = 5e-5
  num_train_epochs: float = 3.0
  warmup_proportion: float = 0.1
  save_checkpoints_steps: int = 1000
  export_dir: Optional[str] = None
  distribution_strategy: str = "auto"
  tpu: Optional[str] = None
  mixed_precision: str = "float32"
  jit_compile: bool = False
  skip_padding: bool = True
  steps_per_loop: int = 1
  log_steps: int = 100
  keep_checkpoint_max: int = 5
  seed: int = 12345
  strict_checkpoint: bool = False


@dataclasses.dataclass(kw_only=True)
class RunOptions(FineTuningOptions):
  """What `run_classifier.py` does; the fields are its flags (see bert_tf/cli/run_classifier.py)."""
  task_name: str
  xnli_language: str = "zh"
  text_a_column: str = "sentence"
  text_b_column: Optional[str] = None
  label_column: str = "label"


@dataclasses.dataclass
class Inputs:
  """What `preflight` read: the task's processor (labels fixed) and the examples of each split
  the run uses ({suffix: examples}; "" is the main file)."""
  processor: classifier_data.DataProcessor
  train: Optional[List[classifier_data.InputExample]]
  dev: Dict[str, List[classifier_data.InputExample]]
  test: Dict[str, List[classifier_data.InputExample]]


def exists(path):
  """Whether a local or remote (gs://...) path exists; TensorFlow is imported for remote ones only."""
  if is_remote(path):
    import tensorflow as tf
    return tf.io.gfile.exists(path)
  return os.path.exists(path)


def check_flag_values(opts):
  """Raises `UsageError` naming the flag for a value that cannot work (no file is looked at)."""
  if not (opts.do_train or opts.do_eval or opts.do_predict or opts.export_dir):
    raise UsageError("at least one of --do_train, --do_eval, --do_predict or --export_dir is needed")
  for name in ("train_batch_size", "eval_batch_size", "predict_batch_size", "max_seq_length",
               "save_checkpoints_steps"):
    if getattr(opts, name) < 1:
      raise UsageError(f"--{name} must be >= 1, got {getattr(opts, name)}")
  if opts.max_seq_length < 3:
    raise UsageError(f"--max_seq_length must be at least 3 ([CLS] a [SEP]), got {opts.max_seq_length}")
  if opts.do_train and opts.num_train_epochs <= 0:
    raise UsageError(f"--num_train_epochs must be positive, got {opts.num_train_epochs}")
  if not 0.0 <= opts.warmup_proportion < 1.0:
    raise UsageError(f"--warmup_proportion must be in [0, 1), got {opts.warmup_proportion}")


def _looks_like_hf_directory(path):
  return os.path.isfile(os.path.join(path, "config.json"))


def check_local_paths(opts, required=("task_name", "data_dir", "output_dir")):
  """Raises `UsageError` for a local file or folder named by a flag that is missing or unusable,
  or for a flag of `required` that is not given (--vocab_file is required but for a Hugging Face
  --init_checkpoint)."""
  for name in required:
    if not getattr(opts, name):
      raise UsageError(f"--{name} is required")
  hf_init = bool(opts.init_checkpoint) and not is_remote(opts.init_checkpoint) and \
      _looks_like_hf_directory(opts.init_checkpoint)
  if not opts.vocab_file and not hf_init:
    raise UsageError("--vocab_file is required")
  if not is_remote(opts.data_dir) and not os.path.isdir(opts.data_dir):
    raise UsageError(f"--data_dir={opts.data_dir}: not a directory")
  if opts.vocab_file and not is_remote(opts.vocab_file) and not os.path.isfile(opts.vocab_file):
    raise UsageError(f"--vocab_file={opts.vocab_file}: file not found")
  if opts.bert_config_file and not is_remote(opts.bert_config_file):
    if not os.path.isfile(opts.bert_config_file):
      raise UsageError(f"--bert_config_file={opts.bert_config_file}: file not found")
    from bert_tf.configs import BertConfig
    BertConfig.from_json_file(opts.bert_config_file)  # raises UsageError naming a bad field
  check_init_checkpoint(opts.init_checkpoint)
  for name in ("output_dir", "export_dir"):
    path = getattr(opts, name)
    if path and not is_remote(path) and os.path.exists(path) and not os.path.isdir(path):
      raise UsageError(f"--{name}={path}: exists and is not a directory")


def resolve_labels(opts, processor, labels_path):
  """Fixes the processor's labels: discovered (generic, training) or read from labels.json."""
  saved = classifier_data.load_labels(labels_path) if exists(labels_path) else None
  if isinstance(processor, classifier_data.GenericProcessor):
    if opts.do_train:
      processor.discover_labels(opts.data_dir)
    elif saved is not None:
      processor.labels = tuple(saved["labels"])
    else:
      raise UsageError(f"--task_name=generic: no {labels_path} (the labels are saved by --do_train)")
  if saved is not None and not opts.do_train and saved.get("labels") != processor.get_labels():
    raise UsageError(f"{labels_path}: labels {saved.get('labels')} differ from the task's "
                     f"{processor.get_labels()}")


def available_suffixes(processor, data_dir, split):
  """The suffixes of `split` to read: the main file always, extra files only when present."""
  from absl import logging
  suffixes = [""]
  for suffix in processor.optional_suffixes(split):
    path = os.path.join(data_dir, processor.split_files(split)[suffix].filename)
    if exists(path):
      suffixes.append(suffix)
    else:
      logging.info("%s not found; skipping the %s %s set", path, suffix, split)
  return suffixes


def read_inputs(opts):
  """The processor and every split the run uses, read and validated row by row (`Inputs`)."""
  processor = classifier_data.get_processor(
      opts.task_name, xnli_language=opts.xnli_language, text_a_column=opts.text_a_column,
      text_b_column=opts.text_b_column, label_column=opts.label_column)
  resolve_labels(opts, processor, os.path.join(opts.output_dir, classifier_data.LABELS_FILENAME))
  train = processor.examples(opts.data_dir, "train") if opts.do_train else None
  dev, test = {}, {}
  if opts.do_eval:
    for suffix in available_suffixes(processor, opts.data_dir, "dev"):
      dev[suffix] = processor.examples(opts.data_dir, "dev", suffix)
      if classifier_data.label_ids(processor, dev[suffix]) is None:
        raise UsageError(f"--data_dir={opts.data_dir}: the dev set has no labels to evaluate")
  if opts.do_predict:
    for suffix in available_suffixes(processor, opts.data_dir, "test"):
      test[suffix] = processor.examples(opts.data_dir, "test", suffix)
  return Inputs(processor=processor, train=train, dev=dev, test=test)


def preflight(opts):
  """Every check that needs no TensorFlow, before anything is written; returns the `Inputs`."""
  check_flag_values(opts)
  check_local_paths(opts)
  return read_inputs(opts)
