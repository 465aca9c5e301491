"""What run_ner does (`NerOptions`) and every check of its inputs that needs no TensorFlow.

`preflight(opts)` runs before TensorFlow is imported (seconds of start-up) and before anything is
written, as run_classifier's does: the flag values, the local files and folders the flags name,
and every line of every split the run reads (train for --do_train, dev for --do_eval, test for
--do_predict), so that a bad dev.txt is reported at once rather than after training. Remote paths
(gs://...) are checked later, through tf.io.gfile, still before the first write.
"""

import dataclasses
import os
from typing import List, Optional

from bert_tf.errors import UsageError
from bert_tf.finetuning import ner_data, run_options


@dataclasses.dataclass(kw_only=True)
class NerOptions(run_options.FineTuningOptions):
  """What `run_ner.py` does; the fields are its flags (see bert_tf/cli/run_ner.py): the ones it
  shares with run_classifier, and these."""
  doc_stride: Optional[int] = None  # None: half a window
  tag_scheme: str = "auto"


@dataclasses.dataclass
class NerInputs:
  """The sentences `preflight` read for each split the run uses (None: not used)."""
  train: Optional[List[ner_data.Sentence]]
  dev: Optional[List[ner_data.Sentence]]
  test: Optional[List[ner_data.Sentence]]


def check_options(opts):
  """run_classifier's checks of the flags and local paths they share, and run_ner's own."""
  run_options.check_flag_values(opts)
  run_options.check_local_paths(opts, required=("data_dir", "output_dir"))
  # run_ner reads --data_dir with local file calls only.
  if not os.path.isdir(opts.data_dir):
    raise UsageError(f"--data_dir={opts.data_dir}: not a directory")
  if opts.doc_stride is not None and not 1 <= opts.doc_stride <= opts.max_seq_length - 2:
    raise UsageError(f"--doc_stride must be between 1 and --max_seq_length - 2 = "
                     f"{opts.max_seq_length - 2}, got {opts.doc_stride}")
  ner_data.detect_scheme([], opts.tag_scheme)  # validates the value


def read_inputs(opts):
  """Every split the run uses, read and checked line by line (`NerInputs`)."""
  train = ner_data.read_split(opts.data_dir, "train") if opts.do_train else None
  dev = ner_data.read_split(opts.data_dir, "dev") if opts.do_eval else None
  test = ner_data.read_split(opts.data_dir, "test", require_tags=False) if opts.do_predict else None
  return NerInputs(train=train, dev=dev, test=test)


def preflight(opts):
  """Every check that needs no TensorFlow, before anything is written; returns the `NerInputs`."""
  check_options(opts)
  return read_inputs(opts)
