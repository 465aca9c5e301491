"""Downstream datasets for fine-tuning: task processors (GLUE, XNLI, generic files) and their metrics.

A *processor* knows, for one task, which files hold the train / dev / test splits, which columns
hold the texts and the label, and what the labels are. Every split is read into `InputExample`s;
tokenization happens later, in `tf.data` (see `bert_tf.finetuning.classification`).

File names and columns follow google-research/bert's `run_classifier.py` for CoLA, MNLI, MRPC and
XNLI, and the GLUE distribution for the other tasks. Columns are looked up by their header name
when the file has a header, otherwise by the original's fixed position, so a GLUE file reads the
same way the original reads it. A `generic` processor reads any TSV / CSV / JSONL file with named
columns (`--text_a_column`, `--text_b_column`, `--label_column`) and discovers its labels from the
training file.

Bad rows raise `UsageError` naming the file and line (wrong number of fields, a missing column, an
empty text, a label the task does not have), except in formats known to contain a few broken rows
(QQP), where such rows are skipped and counted in a warning, as the usual GLUE readers do.

Metrics are those GLUE reports: accuracy; F1 and accuracy for MRPC and QQP; Matthews correlation
for CoLA; Pearson and Spearman correlation for STS-B. They use numpy only.
"""

import csv
import dataclasses
import json
import os
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from absl import logging

from bert_tf.errors import UsageError
from bert_tf.utils.io_utils import TextLines, open_text

# ----------------------------------------------------------------------------------------------
# Examples and file reading
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class InputExample:
  """One text (or text pair) to classify.

  Args:
    guid: a unique id, `<split>-<row>`.
    text_a: the first (or only) text.
    text_b: the second text of a pair, or None for single-sentence tasks.
    label: the label as a string, or None when the split is unlabeled (test sets).
  """
  guid: str
  text_a: str
  text_b: Optional[str] = None
  label: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Column:
  """Where a field lives: by header `name` when the file has a header holding it, else at `index`."""
  name: Optional[str]
  index: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class SplitFile:
  """How one split of a task is stored.

  Args:
    filename: path relative to `--data_dir`.
    has_header: whether the first line names the columns.
    text_a: column of the first text.
    text_b: column of the second text, or None.
    label: column of the label, or None for unlabeled splits.
    num_fields: fields per row when there is no header (with a header, its width is used).
    filter_column: (column, value): keep only rows whose column equals value (XNLI language).
  """
  filename: str
  has_header: bool
  text_a: Column
  text_b: Optional[Column] = None
  label: Optional[Column] = None
  num_fields: Optional[int] = None
  filter_column: Optional[Tuple[Column, str]] = None


def _sniff_format(path):
  lower = path[:-3] if path.endswith(".gz") else path
  lower = lower.lower()
  if lower.endswith(".csv"):
    return "csv"
  if lower.endswith(".jsonl") or lower.endswith(".json"):
    return "jsonl"
  return "tsv"


def read_rows(path):
  """Reads a TSV (no quoting, as the original), CSV (standard quoting) or JSONL file.

  Args:
    path: the file; `.gz` is read transparently.

  Yields:
    (line_number, row): `row` is a list of strings for TSV / CSV and a dict for JSONL;
    `line_number` counts from 1 and is where the row starts. Bytes that are not UTF-8 become
    U+FFFD, with a warning naming the file and the first such line once the file is read.
  """
  if not os.path.exists(path) and "://" not in path:
    raise UsageError(f"{path}: file not found (check --data_dir)")
  fmt = _sniff_format(path)
  lines = TextLines(path, skip_bom=True)  # a leading byte-order mark is not data
  if fmt == "jsonl":
    for number, line in enumerate(lines, start=1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError as e:
        raise UsageError(f"{path}:{number}: not valid JSON ({e.msg})") from None
      if not isinstance(row, dict):
        raise UsageError(f"{path}:{number}: expected a JSON object per line")
      yield number, row
  else:
    if fmt == "csv":
      reader = csv.reader(lines)
    else:
      reader = csv.reader(lines, delimiter="\t", quotechar=None)
    for row in reader:
      # csv.reader counts physical lines; a quoted CSV field may span several.
      yield reader.line_num, row
  if lines.bad_lines:
    logging.warning("%s:%d: not valid UTF-8 (%d line(s) in the file, this one first); their bad "
                    "bytes became U+FFFD", path, lines.first_bad_line, lines.bad_lines)


# ----------------------------------------------------------------------------------------------
# Processors
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class SkipCounter:
  """Counts rows skipped in one file, for the warning printed when the file is done."""
  reasons: Dict[str, int] = dataclasses.field(default_factory=dict)

  def add(self, reason):
    self.reasons[reason] = self.reasons.get(reason, 0) + 1

  @property
  def total(self):
    return sum(self.reasons.values())


class DataProcessor:
  """A task: its split files, labels, kind (classification or regression) and metrics.

  Subclasses fill the class attributes; `examples(data_dir, split)` does the reading.

  Attributes:
    name: the `--task_name`.
    labels: the label strings in id order (empty for regression).
    is_regression: a single real-valued output (STS-B).
    train: the training file.
    dev: {suffix: file}; "" is the main dev set (eval_results.txt), others are extra sets whose
      metrics get the suffix in their keys and their own results files (MNLI mismatched).
    test: {suffix: file}, as `dev`.
    metric: the name of the task's metric function in `METRICS`.
    skip_malformed: skip (and count) rows with the wrong width or an empty text instead of failing.
  """

  name = ""
  labels: Sequence[str] = ()
  is_regression = False
  train: SplitFile = None
  dev: Dict[str, SplitFile] = {}
  test: Dict[str, SplitFile] = {}
  metric = "accuracy"
  skip_malformed = False
  label_aliases: Dict[str, str] = {}

  def get_labels(self):
    return list(self.labels)

  @property
  def has_text_b(self):
    return self.train.text_b is not None

  def split_files(self, split):
    """{suffix: SplitFile} of `split` ("train", "dev" or "test")."""
    if split == "train":
      return {"": self.train}
    if split == "dev":
      return dict(self.dev)
    if split == "test":
      return dict(self.test)
    raise ValueError(f"unknown split {split!r}")

  def examples(self, data_dir, split, suffix=""):
    """Reads one split file into `InputExample`s.

    Args:
      data_dir: the `--data_dir`.
      split: "train", "dev" or "test".
      suffix: which file of the split (see `dev` / `test`), "" for the main one.

    Returns:
      list of InputExample; labels are None for unlabeled files.
    """
    spec = self.split_files(split)[suffix]
    path = os.path.join(data_dir, spec.filename)
    known = None if self.is_regression else set(self.get_labels())
    return read_split(path, spec, split, known_labels=known, skip_malformed=self.skip_malformed,
                      label_aliases=self.label_aliases, regression=self.is_regression)

  def optional_suffixes(self, split):
    """Extra files of a split (all but the main one): read only when present."""
    return [s for s in self.split_files(split) if s]


def _resolve(column, header, path):
  """Index of `column` in a row, given the file's header (or None)."""
  if column is None:
    return None
  if header is not None and column.name is not None and column.name in header:
    return header.index(column.name)
  if column.index is not None:
    return column.index
  raise UsageError(f"{path}:1: missing column {column.name!r} (the header has: {', '.join(header or [])})")


def _field(row, index):
  if isinstance(row, dict):
    value = row.get(index)
    if value is None:
      return None
    if not isinstance(value, str):
      value = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return value
  return row[index]


def read_split(path, spec, split, known_labels=None, skip_malformed=False, label_aliases=None,
               regression=False):
  """Reads the rows of one split file into examples, validating each row.

  Args:
    path: the file.
    spec: its `SplitFile` (for JSONL files the column names are the object keys).
    split: "train", "dev" or "test" (used in guids).
    known_labels: set of valid labels, or None to accept any (label discovery, regression).
    skip_malformed: skip and count bad rows instead of raising.
    label_aliases: {raw label: label} applied before validation (XNLI "contradictory").
    regression: labels must parse as numbers.

  Returns:
    list of InputExample.
  """
  label_aliases = label_aliases or {}
  examples = []
  skipped = SkipCounter()
  header = None
  width = spec.num_fields
  indices = None
  for number, row in read_rows(path):
    if isinstance(row, dict):
      if indices is None:
        indices = _json_keys(spec)
      idx_a, idx_b, idx_label, idx_filter = indices
    else:
      if spec.has_header and header is None:
        header = [h.strip() for h in row]
        width = len(header)
        indices = None
        continue
      if not row or (len(row) == 1 and not row[0].strip()):
        continue  # blank line
      if indices is None:
        indices = tuple(_resolve(c, header, path) for c in
                        (spec.text_a, spec.text_b, spec.label,
                         spec.filter_column[0] if spec.filter_column else None))
        needed = max(i for i in indices if i is not None) + 1
        if width is not None and width < needed:
          raise UsageError(f"{path}:1: expected at least {needed} columns, the header has {width}")
      idx_a, idx_b, idx_label, idx_filter = indices
      expected = width if width is not None else max(i for i in indices if i is not None) + 1
      if len(row) != expected:
        problem = f"{path}:{number}: expected {expected} tab-separated fields, found {len(row)}"
        if _sniff_format(path) == "csv":
          problem = f"{path}:{number}: expected {expected} comma-separated fields, found {len(row)}"
        if skip_malformed:
          skipped.add("wrong number of fields")
          continue
        raise UsageError(problem)
    if idx_filter is not None and _field(row, idx_filter) != spec.filter_column[1]:
      continue
    text_a = _field(row, idx_a)
    text_b = _field(row, idx_b) if idx_b is not None else None
    for text, col in ((text_a, spec.text_a), (text_b, spec.text_b)):
      if col is None:
        continue
      if text is None:
        if skip_malformed:
          skipped.add("missing text")
          break
        raise UsageError(f"{path}:{number}: missing column {col.name!r}")
      if not text.strip():
        if skip_malformed:
          skipped.add("empty text")
          break
        raise UsageError(f"{path}:{number}: empty text in column {col.name or col.index!r}")
    else:
      label = None
      if idx_label is not None:
        label = _field(row, idx_label)
        if label is None:
          raise UsageError(f"{path}:{number}: missing column {spec.label.name!r}")
        label = label.strip()
        label = label_aliases.get(label, label)
        if regression:
          try:
            float(label)
          except ValueError:
            raise UsageError(f"{path}:{number}: label {label!r} is not a number") from None
        elif known_labels is not None and label not in known_labels:
          raise UsageError(f"{path}:{number}: label {label!r} is not one of the task's labels "
                           f"({', '.join(sorted(known_labels))})")
      examples.append(InputExample(guid=f"{split}-{len(examples)}", text_a=text_a,
                                   text_b=text_b, label=label))
  if skipped.total:
    details = ", ".join(f"{n} {r}" for r, n in sorted(skipped.reasons.items()))
    logging.warning("%s: skipped %d malformed row(s) (%s)", path, skipped.total, details)
  if not examples:
    raise UsageError(f"{path}: no examples")
  return examples


def _json_keys(spec):
  return tuple(c.name if c is not None else None for c in
               (spec.text_a, spec.text_b, spec.label,
                spec.filter_column[0] if spec.filter_column else None))


def _glue(filename, text_a, text_b=None, label=None, has_header=True, num_fields=None):
  """A GLUE split with a header; columns given as (name, original index)."""
  col = lambda c: None if c is None else Column(*c)  # noqa: E731
  return SplitFile(filename, has_header, col(text_a), col(text_b), col(label), num_fields)


def _tsv_splits(text_a, text_b=None, label=None, test_text_a=None, test_text_b=None):
  """(train, dev, test) for the usual `train.tsv`, `dev.tsv`, `test.tsv` with headers; the test
  file has no label and may hold its texts in other columns."""
  test_a, test_b = test_text_a or text_a, test_text_b or text_b
  return (_glue("train.tsv", text_a, text_b, label), {"": _glue("dev.tsv", text_a, text_b, label)},
          {"": _glue("test.tsv", test_a, test_b)})


class ColaProcessor(DataProcessor):
  """CoLA: train/dev have no header (source, label, original label, sentence); test has one."""
  name = "cola"
  labels = ("0", "1")
  train = _glue("train.tsv", (None, 3), label=(None, 1), has_header=False, num_fields=4)
  dev = {"": _glue("dev.tsv", (None, 3), label=(None, 1), has_header=False, num_fields=4)}
  test = {"": _glue("test.tsv", ("sentence", 1))}
  metric = "matthews"


class MnliProcessor(DataProcessor):
  """MultiNLI: sentence1/sentence2 (columns 8, 9), gold label last; matched and mismatched dev."""
  name = "mnli"
  labels = ("contradiction", "entailment", "neutral")
  _pair = (("sentence1", 8), ("sentence2", 9))
  train = _glue("train.tsv", *_pair, label=("gold_label", -1))
  dev = {"": _glue("dev_matched.tsv", *_pair, label=("gold_label", -1)),
         "mismatched": _glue("dev_mismatched.tsv", *_pair, label=("gold_label", -1))}
  test = {"": _glue("test_matched.tsv", *_pair),
          "mismatched": _glue("test_mismatched.tsv", *_pair)}


class MrpcProcessor(DataProcessor):
  """MRPC: Quality, #1 ID, #2 ID, #1 String, #2 String."""
  name = "mrpc"
  labels = ("0", "1")
  train, dev, test = _tsv_splits(("#1 String", 3), ("#2 String", 4), label=("Quality", 0))
  metric = "f1_accuracy"


class XnliProcessor(DataProcessor):
  """XNLI as the original: MultiNLI machine-translated train + the XNLI dev set of one language.

  Train: `multinli/multinli.train.<lang>.tsv` (premise, hypo, label; "contradictory" means
  "contradiction"). Dev / test: `xnli.dev.tsv` / `xnli.test.tsv`, rows of `--xnli_language` only.
  """
  name = "xnli"
  labels = ("contradiction", "entailment", "neutral")
  label_aliases = {"contradictory": "contradiction"}

  def __init__(self, language="zh"):
    self.language = language
    self.train = _glue(f"multinli/multinli.train.{language}.tsv", ("premise", 0), ("hypo", 1),
                       label=("label", 2))
    self.dev = {"": self._xnli("xnli.dev.tsv")}
    self.test = {"": self._xnli("xnli.test.tsv")}

  def _xnli(self, filename):
    return SplitFile(filename, True, Column("sentence1", 6), Column("sentence2", 7),
                     Column("gold_label", 1),
                     filter_column=(Column("language", 0), self.language))


class Sst2Processor(DataProcessor):
  """SST-2: sentence, label (test: index, sentence)."""
  name = "sst-2"
  labels = ("0", "1")
  train, dev, test = _tsv_splits(("sentence", 0), label=("label", 1), test_text_a=("sentence", 1))


class QnliProcessor(DataProcessor):
  """QNLI: index, question, sentence, label."""
  name = "qnli"
  labels = ("entailment", "not_entailment")
  train, dev, test = _tsv_splits(("question", 1), ("sentence", 2), label=("label", -1))


class QqpProcessor(DataProcessor):
  """QQP: id, qid1, qid2, question1, question2, is_duplicate (test: id, question1, question2).

  The released files hold a few broken rows; they are skipped and counted.
  """
  name = "qqp"
  labels = ("0", "1")
  train, dev, test = _tsv_splits(("question1", 3), ("question2", 4), label=("is_duplicate", 5),
                                 test_text_a=("question1", 1), test_text_b=("question2", 2))
  metric = "f1_accuracy"
  skip_malformed = True


class RteProcessor(DataProcessor):
  """RTE: index, sentence1, sentence2, label."""
  name = "rte"
  labels = ("entailment", "not_entailment")
  train, dev, test = _tsv_splits(("sentence1", 1), ("sentence2", 2), label=("label", -1))


class WnliProcessor(RteProcessor):
  """WNLI: index, sentence1, sentence2, label (0/1)."""
  name = "wnli"
  labels = ("0", "1")


class StsbProcessor(DataProcessor):
  """STS-B: regression on `score` (0-5), sentence1/sentence2 at columns 7, 8."""
  name = "sts-b"
  is_regression = True
  train, dev, test = _tsv_splits(("sentence1", 7), ("sentence2", 8), label=("score", -1))
  metric = "correlation"


GENERIC_EXTENSIONS = (".tsv", ".csv", ".jsonl", ".json", ".tsv.gz", ".csv.gz", ".jsonl.gz")


class GenericProcessor(DataProcessor):
  """Any TSV / CSV (with a header) or JSONL file with named columns.

  Files in `--data_dir`: `train.<ext>`, `dev.<ext>`, `test.<ext>`, ext one of tsv, csv, jsonl
  (optionally .gz). Labels are the distinct values of the training file's label column, sorted
  (numerically when they all are integers); `save_labels` / `load_labels` keep them with the model.

  Args:
    text_a_column: the first text column.
    text_b_column: the second text column, or "" / None for single texts.
    label_column: the label column.
    labels: the label list when already known (from a saved labels.json).
  """
  name = "generic"
  metric = "accuracy"

  def __init__(self, text_a_column="sentence", text_b_column=None, label_column="label",
               labels=None):
    if not text_a_column:
      raise UsageError("--text_a_column must name a column")
    if not label_column:
      raise UsageError("--label_column must name a column")
    self.columns = (text_a_column, text_b_column or None, label_column)
    self.labels = tuple(labels) if labels else ()

  def _spec(self, filename, labeled=True):
    a, b, label = self.columns
    return SplitFile(filename, True, Column(a), Column(b) if b else None,
                     Column(label) if labeled else None)

  @property
  def has_text_b(self):
    return self.columns[1] is not None

  def find_file(self, data_dir, split):
    """The path of `split` in data_dir (any supported extension), or None."""
    found = [split + ext for ext in GENERIC_EXTENSIONS
             if os.path.exists(os.path.join(data_dir, split + ext))]
    if len(found) > 1:
      raise UsageError(f"--data_dir={data_dir}: several {split} files ({', '.join(found)}); keep one")
    return found[0] if found else None

  def split_files(self, split):
    raise NotImplementedError("GenericProcessor resolves files with find_file")

  def optional_suffixes(self, split):
    return []

  def discover_labels(self, data_dir):
    """Reads the training file and sets (and returns) the sorted distinct labels."""
    path = self._path(data_dir, "train")
    examples = read_split(path, self._spec(os.path.basename(path)), "train")
    self.labels = tuple(sort_labels({e.label for e in examples}))
    if len(self.labels) < 2:
      raise UsageError(f"{path}: column {self.columns[2]!r} holds a single label "
                       f"({self.labels[0]!r}); a classifier needs at least two")
    return list(self.labels)

  def _path(self, data_dir, split):
    filename = self.find_file(data_dir, split)
    if filename is None:
      raise UsageError(f"--data_dir={data_dir}: no {split} file "
                       f"({' / '.join(split + e for e in GENERIC_EXTENSIONS[:3])})")
    return os.path.join(data_dir, filename)

  def examples(self, data_dir, split, suffix=""):
    if not self.labels:
      raise UsageError("the generic task's labels are unknown: train first, or keep labels.json "
                       "in --output_dir")
    path = self._path(data_dir, split)
    labeled = split != "test" or self._has_label_column(path)
    return read_split(path, self._spec(os.path.basename(path), labeled), split,
                      known_labels=set(self.labels))

  def _has_label_column(self, path):
    for _, row in read_rows(path):
      if isinstance(row, dict):
        return self.columns[2] in row
      return self.columns[2] in [h.strip() for h in row]
    return False


def sort_labels(labels):
  """Sorted label strings; numerically when every label is an integer ("2" before "10")."""
  labels = list(labels)
  try:
    return sorted(labels, key=int)
  except ValueError:
    return sorted(labels)


PROCESSORS = {
    "cola": ColaProcessor,
    "mnli": MnliProcessor,
    "mrpc": MrpcProcessor,
    "xnli": XnliProcessor,
    "sst-2": Sst2Processor,
    "qnli": QnliProcessor,
    "qqp": QqpProcessor,
    "rte": RteProcessor,
    "wnli": WnliProcessor,
    "sts-b": StsbProcessor,
    "generic": GenericProcessor,
}
_ALIASES = {"sst2": "sst-2", "stsb": "sts-b", "sts": "sts-b"}


def get_processor(task_name, xnli_language="zh", text_a_column="sentence", text_b_column=None,
                  label_column="label", labels=None):
  """The processor for `--task_name` (case-insensitive; "sst2" / "stsb" also accepted).

  Args:
    task_name: one of PROCESSORS.
    xnli_language: the XNLI language (original default "zh").
    text_a_column, text_b_column, label_column, labels: for the generic task.
  """
  key = (task_name or "").strip().lower()
  key = _ALIASES.get(key, key)
  if key not in PROCESSORS:
    raise UsageError(f"--task_name={task_name!r} is not one of: {', '.join(PROCESSORS)}")
  if key == "xnli":
    return XnliProcessor(xnli_language)
  if key == "generic":
    return GenericProcessor(text_a_column, text_b_column, label_column, labels)
  return PROCESSORS[key]()


# ----------------------------------------------------------------------------------------------
# Label files
# ----------------------------------------------------------------------------------------------

LABELS_FILENAME = "labels.json"


def save_labels(path, processor):
  """Writes labels.json: task name, labels in id order, regression flag, whether text_b is used."""
  from bert_tf.utils.io_utils import atomic_write_text
  info = {"task_name": processor.name, "labels": processor.get_labels(),
          "is_regression": processor.is_regression, "has_text_b": processor.has_text_b}
  atomic_write_text(path, json.dumps(info, indent=2) + "\n")


def load_labels(path):
  """Reads labels.json (see `save_labels`); raises UsageError if it is not one."""
  try:
    with open_text(path) as f:
      info = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise UsageError(f"{path}: cannot read the label file ({e})") from None
  if not isinstance(info, dict) or not isinstance(info.get("labels"), list):
    raise UsageError(f"{path}: expected an object with a 'labels' list")
  return info


# ----------------------------------------------------------------------------------------------
# Metrics (numpy only)
# ----------------------------------------------------------------------------------------------


def accuracy(predictions, labels):
  predictions, labels = np.asarray(predictions), np.asarray(labels)
  return float(np.mean(predictions == labels)) if labels.size else float("nan")


def f1_score(predictions, labels, positive=1):
  """Binary F1 of class `positive` (0 when it is never predicted nor present)."""
  predictions, labels = np.asarray(predictions), np.asarray(labels)
  tp = np.sum((predictions == positive) & (labels == positive))
  fp = np.sum((predictions == positive) & (labels != positive))
  fn = np.sum((predictions != positive) & (labels == positive))
  denominator = 2 * tp + fp + fn
  return float(2 * tp / denominator) if denominator else 0.0


def matthews_corrcoef(predictions, labels):
  """Matthews correlation (multi-class form; 0 when a margin is constant, like scikit-learn)."""
  predictions, labels = np.asarray(predictions), np.asarray(labels)
  classes = np.union1d(predictions, labels)
  # confusion[i, j]: true class i predicted as j.
  confusion = np.zeros((len(classes), len(classes)), dtype=np.float64)
  np.add.at(confusion, (np.searchsorted(classes, labels), np.searchsorted(classes, predictions)), 1)
  true_totals = confusion.sum(axis=1)
  pred_totals = confusion.sum(axis=0)
  correct = np.trace(confusion)
  n = confusion.sum()
  cov_pred_true = correct * n - np.dot(pred_totals, true_totals)
  cov_pred = n * n - np.dot(pred_totals, pred_totals)
  cov_true = n * n - np.dot(true_totals, true_totals)
  if cov_pred == 0 or cov_true == 0:
    return 0.0
  return float(cov_pred_true / np.sqrt(cov_pred * cov_true))


def pearson(x, y):
  """Pearson correlation; nan when either input is constant."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  xc, yc = x - x.mean(), y - y.mean()
  denominator = np.sqrt(np.sum(xc * xc) * np.sum(yc * yc))
  return float(np.sum(xc * yc) / denominator) if denominator else float("nan")


def rankdata(values):
  """Ranks from 1, ties sharing their average rank (as scipy.stats.rankdata's default)."""
  values = np.asarray(values, np.float64)
  order = np.argsort(values, kind="mergesort")
  sorted_values = values[order]
  # Start of each run of equal values in sorted order.
  starts = np.concatenate([[True], sorted_values[1:] != sorted_values[:-1]])
  run_id = np.cumsum(starts) - 1
  run_first = np.flatnonzero(starts)
  run_last = np.concatenate([run_first[1:], [len(values)]]) - 1
  average = (run_first + run_last) / 2.0 + 1.0
  ranks = np.empty(len(values), np.float64)
  ranks[order] = average[run_id]
  return ranks


def spearman(x, y):
  """Spearman rank correlation: Pearson correlation of the (tie-averaged) ranks."""
  return pearson(rankdata(x), rankdata(y))


def compute_metrics(metric, predictions, labels):
  """The task's metrics as a dict (keys without the "eval_" prefix).

  Args:
    metric: "accuracy", "f1_accuracy", "matthews" or "correlation".
    predictions: class ids [n] (or real values [n] for "correlation").
    labels: true class ids [n] (or real values).

  Returns:
    e.g. {"accuracy": 0.9, "f1": 0.85}. Classification always includes "accuracy".
  """
  if metric == "correlation":
    r, rho = pearson(predictions, labels), spearman(predictions, labels)
    return {"pearson": r, "spearmanr": rho, "corr": (r + rho) / 2}
  result = {"accuracy": accuracy(predictions, labels)}
  if metric == "f1_accuracy":
    result["f1"] = f1_score(predictions, labels)
    result["acc_and_f1"] = (result["accuracy"] + result["f1"]) / 2
  elif metric == "matthews":
    result["mcc"] = matthews_corrcoef(predictions, labels)
  elif metric != "accuracy":
    raise ValueError(f"unknown metric {metric!r}")
  return result


def label_ids(processor, examples):
  """Labels of `examples` as class ids (int64) or floats for regression; None if unlabeled."""
  if any(e.label is None for e in examples):
    return None
  if processor.is_regression:
    return np.array([float(e.label) for e in examples], np.float32)
  index = {label: i for i, label in enumerate(processor.get_labels())}
  return np.array([index[e.label] for e in examples], np.int64)


def majority_baseline(processor, train_examples, eval_examples):
  """Accuracy of always predicting the training set's most frequent label (a sanity reference)."""
  train_ids = label_ids(processor, train_examples)
  eval_ids = label_ids(processor, eval_examples)
  majority = np.bincount(train_ids).argmax()
  return accuracy(np.full_like(eval_ids, majority), eval_ids)

