"""Vocab files, conversions and casing checks of google-research/bert's tokenization module.

Plain Python (no TensorFlow import), so that offline jobs such as create_pretraining_data start
fast; `bert_tf.text.tokenization` re-exports every name here under the original's names.
"""

import collections
import re
import sys

from absl import logging

from bert_tf.utils import io_utils
from bert_tf.errors import UsageError

UNK_TOKEN = "[UNK]"


def _read_errors():
  """Exceptions a failed vocab read raises: OSError, and TensorFlow's for remote paths."""
  tf = sys.modules.get("tensorflow")
  errors = getattr(tf, "errors", None)
  return (OSError, errors.OpError) if errors is not None else (OSError,)


def convert_to_unicode(text):
  """Returns `text` as `str`; bytes are decoded as UTF-8, dropping invalid bytes."""
  if isinstance(text, str):
    return text
  if isinstance(text, bytes):
    return text.decode("utf-8", "ignore")
  raise ValueError(f"Unsupported string type: {type(text)}")


def printable_text(text):
  """Text suitable for printing or logging (a `str`)."""
  return convert_to_unicode(text)


def load_vocab(vocab_file):
  """Reads a vocab file into an OrderedDict token -> id (id = line number, from 0).

  As in the original: each line is stripped of surrounding whitespace; a token that appears twice
  keeps its first position in the dict but gets the id of its last line.

  Args:
    vocab_file: path of a UTF-8 text file, one token per line (local or any tf.io.gfile path).

  Raises:
    UsageError: the file is missing or a line is not valid UTF-8.
  """
  try:
    with io_utils.open_binary(vocab_file) as f:  # plain files without starting TensorFlow
      data = f.read()
  except _read_errors() as e:
    raise UsageError(f"vocab file {vocab_file} cannot be read: {e}") from None
  lines = data.split(b"\n")
  if lines and lines[-1] == b"":
    lines.pop()  # the newline that ends the last line
  vocab = collections.OrderedDict()
  for index, raw in enumerate(lines):
    try:
      token = raw.decode("utf-8")
    except UnicodeDecodeError as e:
      raise UsageError(f"vocab file {vocab_file}, line {index + 1}: not valid UTF-8 ({e})")
    vocab[token.strip()] = index
  return vocab


def convert_by_vocab(vocab, items):
  """Maps every item through `vocab` (a dict); raises KeyError naming an unknown item."""
  try:
    return [vocab[item] for item in items]
  except KeyError as e:
    raise KeyError(f"{e.args[0]!r} is not in the vocabulary") from None


def convert_tokens_to_ids(vocab, tokens):
  return convert_by_vocab(vocab, tokens)


def convert_ids_to_tokens(inv_vocab, ids):
  return convert_by_vocab(inv_vocab, ids)


def whitespace_tokenize(text):
  """Splits on whitespace (Python's definition), dropping empty pieces."""
  return text.split()


# ---------------------------------------------------------------------------------------------
# Case checks.


_LOWER_MODELS = ("uncased_L-24_H-1024_A-16", "uncased_L-12_H-768_A-12",
                 "multilingual_L-12_H-768_A-12", "chinese_L-12_H-768_A-12")
_CASED_MODELS = ("cased_L-12_H-768_A-12", "cased_L-24_H-1024_A-16",
                 "multi_cased_L-12_H-768_A-12")


def validate_case_matches_checkpoint(do_lower_case, init_checkpoint):
  """Raises UsageError when a released checkpoint's name contradicts `do_lower_case`.

  Only the names of Google's released models are recognised (as in the original); any other
  checkpoint passes.
  """
  if not init_checkpoint:
    return
  m = re.match(r"^.*?([A-Za-z0-9_-]+)/bert_model\.ckpt", init_checkpoint)
  if m is None:
    return
  name = m.group(1)
  if name in _LOWER_MODELS and not do_lower_case:
    want, kind = True, "lower-cased"
  elif name in _CASED_MODELS and do_lower_case:
    want, kind = False, "cased"
  else:
    return
  raise UsageError(f"--do_lower_case={not want} contradicts --init_checkpoint={init_checkpoint}: "
                   f"{name} is a {kind} model, pass --do_lower_case={want}")


def vocab_casing_problem(vocab, do_lower_case, vocab_file="vocab"):
  """Returns a message when `do_lower_case` contradicts the vocab's casing, else None.

  An uncased run with a vocab whose word pieces contain capital letters never uses those pieces;
  a cased run with a vocab that has no capital letter at all splits every capitalised word into
  more pieces or [UNK].

  Args:
    vocab: dict token -> id.
    do_lower_case: the setting to check.
    vocab_file: the name used in the message.
  """
  letters = upper = 0
  for token in vocab:
    if token.startswith("[") and token.endswith("]"):
      continue  # [PAD], [unused7], ...
    body = token[2:] if token.startswith("##") else token
    if any(c.isalpha() for c in body):
      letters += 1
      if body != body.lower():
        upper += 1
  if letters == 0:
    return None
  if do_lower_case and upper > max(10, letters // 100):
    return (f"do_lower_case=True but {upper} of the {letters} word pieces of {vocab_file} contain "
            f"capital letters (a cased vocab?): those pieces will never be used; "
            f"pass do_lower_case=False if the vocab is cased")
  if not do_lower_case and upper == 0 and letters >= 100:
    return (f"do_lower_case=False but {vocab_file} has no capital letter in any of its {letters} "
            f"word pieces (an uncased vocab?): capitalised words will split badly or become "
            f"[UNK]; pass do_lower_case=True if the vocab is uncased")
  return None


def warn_if_casing_mismatch(vocab, do_lower_case, vocab_file="vocab"):
  """Logs (absl warning) `vocab_casing_problem`'s message, if any; returns it."""
  problem = vocab_casing_problem(vocab, do_lower_case, vocab_file)
  if problem:
    logging.warning("%s", problem)
  return problem
