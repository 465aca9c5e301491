"""Token-classification data: CoNLL / JSONL files, tag schemes, sub-token alignment and windows.

Files (in `--data_dir`): `train`, `dev` and `test`, each `.txt` (CoNLL) or `.jsonl`.

- CoNLL: one word per line, the word in the first whitespace-separated column and its tag in the
  last (so CoNLL-2003's four columns and two-column files both read); a blank line between
  sentences; `-DOCSTART-` lines are document separators and are skipped. A test file may have one
  column (words only, no gold tags) on every line.
- JSONL: one sentence per line, `{"tokens": [...], "tags": [...]}` (`tags` optional in test).

Tags are `O`, `B-<type>`, `I-<type>`, in BIO (IOB2) or IOB1 (CoNLL-2003's original, where `B-` only
separates two adjacent entities of one type). The model always learns BIO: `to_bio` rewrites an
`I-` that starts an entity as `B-` (conlleval reads entities the same way in both schemes, see
`ner_metrics`), and predictions are written back in the files' scheme (`from_bio`).

Alignment: each word is WordPiece-tokenized on its own (the same tokenizer as every other
command); its label sits on its first sub-token and the other sub-tokens are ignored by the loss
(label id -1). A word that tokenizes to nothing (only control or zero-width characters) becomes
one `[UNK]`, so every word gets a prediction. A sentence of more sub-tokens than
`max_seq_length - 2` becomes several overlapping windows, `doc_stride` sub-tokens apart; each word
is predicted from the window where it has the most context on both sides (the SQuAD rule), so the
merged output has exactly one tag per input word.
"""

import dataclasses
import json
import os
from typing import List, Optional

import numpy as np

from bert_tf.errors import UsageError
from bert_tf.finetuning.ner_metrics import OUTSIDE, split_tag
from bert_tf.utils.io_utils import atomic_write_text, open_text

DOCSTART = "-DOCSTART-"
SPLITS = ("train", "dev", "test")
EXTENSIONS = (".txt", ".jsonl")
TAG_SCHEMES = ("auto", "bio", "iob1")
LABELS_FILENAME = "labels.json"
IGNORE = -1  # label id of positions outside the loss (later sub-tokens, specials, padding)


@dataclasses.dataclass
class Sentence:
  """One sentence: its words, their tags (None when the file has none) and where it came from.

  `lines[i]` is the 1-based line of word i in `path` (JSONL: the sentence's line).
  """
  words: List[str]
  tags: Optional[List[str]]
  path: str
  lines: List[int]

  def where(self, i=0):
    return f"{self.path}:{self.lines[i]}"


def split_path(data_dir, split):
  """The file of `split` in `data_dir` (`<split>.txt` or `<split>.jsonl`), or None."""
  found = [os.path.join(data_dir, split + ext) for ext in EXTENSIONS
           if os.path.exists(os.path.join(data_dir, split + ext))]
  if len(found) > 1:
    raise UsageError(f"--data_dir={data_dir}: both {found[0]} and {found[1]}; keep one")
  return found[0] if found else None


def _check_tag(tag, path, line):
  if split_tag(tag) is None:
    raise UsageError(f"{path}:{line}: tag {tag!r} is outside the BIO/IOB1 scheme "
                     "(O, B-<type> or I-<type>)")


def read_conll(path, require_tags=True):
  """Sentences of a CoNLL file (see the module docstring); UsageError naming file:line otherwise."""
  sentences, words, tags, lines = [], [], [], []
  has_tags = None

  def flush():
    if words:
      sentences.append(Sentence(list(words), list(tags) if has_tags else None, path, list(lines)))
      words.clear(), tags.clear(), lines.clear()

  with open_text(path, errors="strict") as f:
    try:
      for n, line in enumerate(f, start=1):
        columns = line.split()
        if not columns:
          flush()
          continue
        if columns[0] == DOCSTART:
          flush()
          continue
        with_tag = len(columns) > 1
        if has_tags is None:
          has_tags = with_tag
          if not with_tag and require_tags:
            raise UsageError(f"{path}:{n}: expected a word and its tag separated by whitespace, "
                             f"found one column ({line.strip()!r})")
        elif with_tag != has_tags:
          raise UsageError(f"{path}:{n}: {len(columns)} column(s) but the file's first word line "
                           f"has {'a tag' if has_tags else 'no tag'}; every line needs the same "
                           "layout")
        if with_tag:
          _check_tag(columns[-1], path, n)
          tags.append(columns[-1])
        words.append(columns[0])
        lines.append(n)
    except UnicodeDecodeError as e:
      raise UsageError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start} of a line after "
                       f"line {len(lines) and lines[-1]})") from None
  flush()
  if not sentences:
    raise UsageError(f"{path}: no sentences (the file is empty or holds only blank and "
                     f"{DOCSTART} lines)")
  return sentences


def read_jsonl(path, require_tags=True):
  """Sentences of a JSONL file: one `{"tokens": [...], "tags": [...]}` object per line."""
  sentences, has_tags = [], None
  with open_text(path, errors="strict") as f:
    for n, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        obj = json.loads(line)
      except ValueError as e:
        raise UsageError(f"{path}:{n}: not a JSON object ({e})") from None
      if not isinstance(obj, dict) or not isinstance(obj.get("tokens"), list):
        raise UsageError(f"{path}:{n}: expected an object with a \"tokens\" list")
      words, tags = obj["tokens"], obj.get("tags")
      for w in words:
        if not isinstance(w, str) or not w or len(w.split()) != 1 or w != w.strip():
          raise UsageError(f"{path}:{n}: token {w!r} is not a non-empty string without "
                           "whitespace")
      if tags is None and require_tags:
        raise UsageError(f"{path}:{n}: \"tags\" is missing")
      if has_tags is None:
        has_tags = tags is not None
      elif (tags is not None) != has_tags:
        raise UsageError(f"{path}:{n}: \"tags\" {'missing' if tags is None else 'present'} here "
                         "but not so on the file's first line; every line needs the same keys")
      if tags is not None:
        if not isinstance(tags, list) or len(tags) != len(words):
          raise UsageError(f"{path}:{n}: {len(words)} tokens but "
                           f"{len(tags) if isinstance(tags, list) else 'no list of'} tags")
        for t in tags:
          if not isinstance(t, str):
            raise UsageError(f"{path}:{n}: tag {t!r} is not a string")
          _check_tag(t, path, n)
      if words:
        sentences.append(Sentence(list(words), list(tags) if tags is not None else None, path,
                                  [n] * len(words)))
  if not sentences:
    raise UsageError(f"{path}: no sentences (empty file)")
  return sentences


def read_split(data_dir, split, require_tags=True):
  """The sentences of `split` (train, dev or test) in `data_dir`."""
  path = split_path(data_dir, split)
  if path is None:
    raise UsageError(f"--data_dir={data_dir}: no {split}.txt or {split}.jsonl")
  reader = read_jsonl if path.endswith(".jsonl") else read_conll
  return reader(path, require_tags=require_tags)


# ----------------------------------------------------------------------------------------------
# Tag schemes


def scheme_evidence(sentences):
  """(I- tags that start an entity, B- tags that follow O / another type / the sentence start).

  BIO has none of the first kind; IOB1 none of the second.
  """
  i_starts = b_free = 0
  for s in sentences:
    prev_type = ""
    for tag in s.tags or ():
      prefix, kind = split_tag(tag)
      if prefix == "I" and kind != prev_type:
        i_starts += 1
      elif prefix == "B" and kind != prev_type:
        b_free += 1
      prev_type = kind
  return i_starts, b_free


def detect_scheme(sentences, requested="auto"):
  """"bio" or "iob1": `requested` unless it is "auto", then IOB1 when entities start with I- and
  no B- starts one on its own, else BIO (an ill-formed I- start is read as conlleval does)."""
  if requested not in TAG_SCHEMES:
    raise UsageError(f"--tag_scheme must be one of {', '.join(TAG_SCHEMES)}, got {requested!r}")
  if requested != "auto":
    return requested
  i_starts, b_free = scheme_evidence(sentences)
  return "iob1" if i_starts and not b_free else "bio"


def to_bio(tags):
  """BIO tags of the same entities: an I-X that starts an entity becomes B-X."""
  out, prev_type = [], ""
  for tag in tags:
    prefix, kind = split_tag(tag)
    out.append(f"B-{kind}" if prefix == "I" and kind != prev_type else tag)
    prev_type = kind
  return out


def from_bio(tags, scheme):
  """Tags in `scheme`: for IOB1, a B-X not preceded by an X word becomes I-X."""
  if scheme != "iob1":
    return list(tags)
  out, prev_type = [], ""
  for tag in tags:
    prefix, kind = split_tag(tag)
    out.append(f"I-{kind}" if prefix == "B" and kind != prev_type else tag)
    prev_type = kind
  return out


def labels_from_training(sentences):
  """The label list: O, then B-<type> and I-<type> for each type in order of first appearance."""
  types = []
  for s in sentences:
    for tag in s.tags:
      kind = split_tag(tag)[1]
      if kind and kind not in types:
        types.append(kind)
  return [OUTSIDE] + [f"{p}-{t}" for t in types for p in ("B", "I")]


def save_labels(path, labels, tag_scheme, **extra):
  atomic_write_text(path, json.dumps(dict(extra, labels=list(labels), tag_scheme=tag_scheme),
                                     indent=2) + "\n")


def load_labels(path):
  """(labels, tag_scheme) saved by `save_labels`."""
  try:
    with open(path, encoding="utf-8") as f:
      info = json.load(f)
    labels, scheme = info["labels"], info["tag_scheme"]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise UsageError(f"{path}: not a labels file written by run_ner ({e})") from None
  if OUTSIDE not in labels or scheme not in ("bio", "iob1"):
    raise UsageError(f"{path}: labels {labels} / tag_scheme {scheme!r} are not a tagger's")
  return list(labels), scheme


def unseen_tags(sentences, labels):
  """{tag: first "file:line"} of gold tags (in BIO) that the label list lacks."""
  known, out = set(labels), {}
  for s in sentences:
    for i, tag in enumerate(to_bio(s.tags) if s.tags else ()):
      if tag not in known and tag not in out:
        out[tag] = s.where(i)
  return out


# ----------------------------------------------------------------------------------------------
# Alignment and windows


@dataclasses.dataclass
class Features:
  """Model inputs of every window, and where each word's prediction is read.

  Arrays: input_ids, input_mask, segment_ids, label_ids (int32 [windows, max_seq_length];
  label_ids is -1 outside first sub-tokens and for tags without a label id), window_sentence
  (int32 [windows]). `word_window[s]`, `word_position[s]`: int arrays [words of sentence s], the
  window and position whose output is word i's prediction.
  """
  input_ids: np.ndarray
  input_mask: np.ndarray
  segment_ids: np.ndarray
  label_ids: np.ndarray
  window_sentence: np.ndarray
  word_window: list
  word_position: list
  num_split: int  # sentences that needed more than one window

  @property
  def num_windows(self):
    return len(self.input_ids)

  def model_inputs(self):
    return {"input_ids": self.input_ids, "input_mask": self.input_mask,
            "segment_ids": self.segment_ids}


def word_pieces(tokenizer, sentences):
  """Sub-token ids of every word, tokenized in one batch: list (sentences) of lists of lists."""
  unique = {}
  for s in sentences:
    for w in s.words:
      unique.setdefault(w, len(unique))
  ids = tokenizer.tokenize_batch_ids(list(unique))
  unk = tokenizer.unk_id
  ids = [row if row else [unk] for row in ids]
  return [[ids[unique[w]] for w in s.words] for s in sentences]


def window_spans(num_pieces, window, stride):
  """[(start, end)] sub-token spans of the windows of a sentence (the last ends at num_pieces)."""
  spans, start = [], 0
  while True:
    end = min(start + window, num_pieces)
    spans.append((start, end))
    if end >= num_pieces:
      return spans
    start += stride


def build_features(sentences, pieces, label_ids_of, max_seq_length, doc_stride, cls_id, sep_id):
  """Windows of `[CLS] sub-tokens [SEP]`, labels on first sub-tokens.

  Args:
    sentences: `Sentence`s.
    pieces: `word_pieces(...)` of the sentences.
    label_ids_of: dict tag -> label id, or None (no labels: all -1). Tags are converted to BIO
      first; a tag missing from it gets -1 (outside the loss).
    max_seq_length: window length including [CLS] and [SEP].
    doc_stride: sub-tokens between the starts of consecutive windows of a long sentence.
    cls_id, sep_id: ids of [CLS] and [SEP].

  Returns:
    `Features`.
  """
  width = max_seq_length - 2
  if not 1 <= doc_stride <= width:
    raise UsageError(f"--doc_stride must be between 1 and --max_seq_length - 2 = {width}, got "
                     f"{doc_stride}")
  rows_ids, rows_labels, rows_sentence = [], [], []
  word_window, word_position, num_split = [], [], 0
  for s_index, (sentence, word_ids) in enumerate(zip(sentences, pieces)):
    flat = [i for w in word_ids for i in w]
    first = np.cumsum([0] + [len(w) for w in word_ids[:-1]])  # first sub-token of each word
    if label_ids_of is not None and sentence.tags is not None:
      word_labels = [label_ids_of.get(t, IGNORE) for t in to_bio(sentence.tags)]
    else:
      word_labels = [IGNORE] * len(word_ids)
    spans = window_spans(len(flat), width, doc_stride)
    num_split += len(spans) > 1
    best_window = np.zeros(len(word_ids), np.int64)
    best_position = np.zeros(len(word_ids), np.int64)
    best_score = np.full(len(word_ids), -np.inf)
    for start, end in spans:
      row = len(rows_ids)
      rows_ids.append([cls_id] + flat[start:end] + [sep_id])
      labels = np.full(end - start + 2, IGNORE, np.int32)
      inside = (first >= start) & (first < end)
      positions = first[inside] - start + 1
      labels[positions] = np.asarray(word_labels, np.int32)[inside]
      rows_labels.append(labels)
      rows_sentence.append(s_index)
      # Context on the shorter side, plus a little for longer windows (SQuAD's max-context rule).
      score = np.minimum(first - start, end - 1 - first) + 0.01 * (end - start)
      better = inside & (score > best_score)
      best_score[better] = score[better]
      best_window[better] = row
      best_position[better] = (first - start + 1)[better]
    word_window.append(best_window)
    word_position.append(best_position)
  n = len(rows_ids)
  input_ids = np.zeros([n, max_seq_length], np.int32)
  input_mask = np.zeros([n, max_seq_length], np.int32)
  label_ids = np.full([n, max_seq_length], IGNORE, np.int32)
  for r, (ids, labels) in enumerate(zip(rows_ids, rows_labels)):
    input_ids[r, :len(ids)] = ids
    input_mask[r, :len(ids)] = 1
    label_ids[r, :len(ids)] = labels
  return Features(input_ids, input_mask, np.zeros_like(input_ids), label_ids,
                  np.asarray(rows_sentence, np.int32), word_window, word_position, num_split)


def merge_predictions(features, window_label_ids):
  """One label id per word: the window prediction at each word's chosen window and position.

  Args:
    features: the `Features` the predictions were made for.
    window_label_ids: int [windows, max_seq_length] (e.g. argmax of the logits).

  Returns:
    list (sentences) of int arrays [words].
  """
  window_label_ids = np.asarray(window_label_ids)
  return [window_label_ids[w, p] for w, p in zip(features.word_window, features.word_position)]
