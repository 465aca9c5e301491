"""Per-code-point tables that encode google-research/bert's text normalisation.

The original `BasicTokenizer` works character by character in Python:
  1. clean-up: drop NUL, U+FFFD and control characters (categories Cc/Cf other than tab, newline
     and carriage return); turn whitespace (space, tab, newline, CR, category Zs) into a space;
  2. put spaces around CJK ideographs (a fixed list of code-point ranges);
  3. split on Python whitespace (`str.split()`, which also splits on U+2028/U+2029);
  4. when lower-casing: `str.lower()`, NFD, drop category Mn (accents, combining marks);
  5. make every punctuation character (ASCII non-alphanumerics, categories P*) a token of its own.

Steps 1, 2, 4 and 5 depend on one character only, so this module evaluates them once for every
code point with the running Python's own `unicodedata` and `str.lower` (the very functions the
original calls) and stores the result as a small two-level lookup table that TensorFlow ops can
gather from. Each code point maps to a short replacement sequence in which the value 32 (space)
marks a word boundary; words are the runs between boundaries.

The one context-dependent rule, `str.lower()` turning a capital sigma into a final sigma at the end
of a word, needs the Unicode properties Cased and Case_Ignorable of the neighbouring characters;
they are stored as flags and the rule is applied with tensor ops in `bert_tf.text.tokenization`.

Known limit (lower-casing only): NFD's canonical reordering of combining marks is applied within
each character's own decomposition, not across neighbouring characters. Marks of category Mn are
removed anyway, so this differs from the original only when two of the 25 combining characters of
category Mc (a few viramas, Hangul tone marks, musical-symbol stems; Unicode 14) follow each other
out of canonical order, which never happens in NFC- or NFD-normalised text.
"""

import functools
import hashlib
import os
import sys
import tempfile
import unicodedata

import numpy as np

MAX_CODE_POINT = 0x110000
BLOCK_BITS = 7  # 128 code points per block of the two-level table

# Flags in the low bits of a table value; the replacement-entry index sits above them.
FLAG_DROPPED = 1  # removed by clean-up (never seen by lower-casing)
FLAG_BOUNDARY = 2  # a word boundary before lower-casing (whitespace or CJK ideograph)
FLAG_CASED = 4  # Unicode property Cased (as CPython's str.lower sees it)
FLAG_CASE_IGNORABLE = 8  # Unicode property Case_Ignorable (as CPython's str.lower sees it)
FLAG_ISOLATE = 16  # the replacement forms a word of its own (CJK ideograph, punctuation)
FLAG_BITS = 5

SPACE = 32
CAPITAL_SIGMA = 0x3A3
FINAL_SIGMA = 0x3C2

# The CJK ranges of the original `_is_chinese_char`, inclusive.
CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)


def is_cjk(cp):
  return any(lo <= cp <= hi for lo, hi in CJK_RANGES)


def is_punctuation(ch):
  """ASCII non-letters/digits and every Unicode P* category count as punctuation."""
  cp = ord(ch)
  if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
    return True
  return unicodedata.category(ch).startswith("P")


def is_dropped(ch):
  """NUL, U+FFFD and control/format characters (except tab, newline, CR) are deleted."""
  if ch in "\t\n\r":
    return False
  return ch in "\x00\ufffd" or unicodedata.category(ch) in ("Cc", "Cf")


def is_space(ch):
  """Whitespace for clean-up (space, tab, newline, CR, Zs) or for `str.split()`."""
  return ch in " \t\n\r" or unicodedata.category(ch) == "Zs" or ch.isspace()


def strip_accents(text):
  return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def _case_flags(ch):
  """Cased / Case_Ignorable as CPython's final-sigma rule sees them, probed through str.lower."""
  at_end = ("A\u03a3" + ch).lower()[1]
  before_cased = ("A\u03a3" + ch + "A").lower()[1]
  flags = 0
  if at_end == "\u03c2" and before_cased == "\u03c3":
    flags |= FLAG_CASE_IGNORABLE
  elif at_end == "\u03c3":
    flags |= FLAG_CASED
  return flags


def _replacement(ch, lower_case):
  """(code points `ch` turns into, isolate) where space = boundary; None = unchanged."""
  if is_dropped(ch):
    return [], False
  if is_space(ch):
    return [SPACE], False
  mapped = strip_accents(ch.lower()) if lower_case else ch
  if len(mapped) == 1 and not mapped.isspace():
    isolate = is_cjk(ord(ch)) or is_punctuation(mapped)
    return (None if mapped == ch else [ord(mapped)]), isolate
  out = []
  for c in mapped:
    if c.isspace():
      out.append(SPACE)
    elif is_punctuation(c):
      out.extend((SPACE, ord(c), SPACE))
    else:
      out.append(ord(c))
  return out, is_cjk(ord(ch))


class CharTable:
  """A two-level table from code point to (flags, replacement) for one lower-casing mode.

  Attributes:
    block_index: int32 [MAX_CODE_POINT >> BLOCK_BITS], the block of each high part.
    blocks: int32 [num_blocks << BLOCK_BITS], value = entry << FLAG_BITS | flags.
    entry_splits: int32 [num_entries + 1], row splits of `entry_values`; entry 0 means
      "the code point itself" and has length 1. With FLAG_ISOLATE the replacement is
      surrounded by boundaries.
    entry_values: int32 [total], the replacement code points.
  """

  def __init__(self, block_index, blocks, entry_splits, entry_values):
    self.block_index = block_index
    self.blocks = blocks
    self.entry_splits = entry_splits
    self.entry_values = entry_values

  def lookup(self, cps):
    """Numpy lookup of table values for an int array of code points."""
    cps = np.asarray(cps, dtype=np.int64)
    high = self.block_index[cps >> BLOCK_BITS].astype(np.int64)
    return self.blocks[(high << BLOCK_BITS) | (cps & ((1 << BLOCK_BITS) - 1))]


@functools.lru_cache(maxsize=1)
def _categories():
  """The general category of every code point (a list of 0x110000 two-letter strings)."""
  return list(map(unicodedata.category, map(chr, range(MAX_CODE_POINT))))


def _plain_cjk_ranges(categories):
  """CJK ranges whose characters are all letters or unassigned and unchanged by lower-casing
  and NFD (checked on the whole range at once); they are only isolated, never mapped."""
  plain = []
  for lo, hi in CJK_RANGES:
    text = "".join(map(chr, range(lo, hi + 1)))
    if (set(categories[lo:hi + 1]) <= {"Lo", "Cn"} and text.lower() == text
        and unicodedata.is_normalized("NFD", text)):
      plain.append((lo, hi))
  return plain


_TABLE_FIELDS = ("block_index", "blocks", "entry_splits", "entry_values")


def _cache_path(lower_case):
  """Where the built table is cached: keyed by this module's source, the Unicode database and the
  Python version (whose str.lower and unicodedata define the table), and the mode."""
  folder = os.environ.get("BERT_TF_CACHE_DIR") or os.path.join(
      os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "bert_tf")
  with open(__file__, "rb") as f:
    source = hashlib.sha256(f.read()).hexdigest()[:16]
  key = f"{source}-u{unicodedata.unidata_version}-py{sys.version_info[0]}{sys.version_info[1]}"
  return os.path.join(folder, f"char_table-{key}-{'lower' if lower_case else 'cased'}.npz")


@functools.lru_cache(maxsize=2)
def char_table(lower_case):
  """The table for `lower_case` True or False: built once (about 2 s of pure Python over every code
  point), then read from a small file cache (`$BERT_TF_CACHE_DIR`, default ~/.cache/bert_tf) by later
  processes, so each worker of a preprocessing job starts fast. Any cache problem means a rebuild."""
  path = _cache_path(lower_case)
  try:
    with np.load(path) as cached:
      return CharTable(*(cached[name] for name in _TABLE_FIELDS))
  except (OSError, KeyError, ValueError):
    pass
  table = _build_char_table(lower_case)
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp.npz")
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **{name: getattr(table, name) for name in _TABLE_FIELDS})
    os.replace(tmp, path)
  except OSError:
    pass  # read-only home, full disk: the table was built, only the cache is missing
  return table


def _build_char_table(lower_case):
  """Builds the table for `lower_case` from Python's own unicodedata and str.lower."""
  categories = _categories()
  values = np.zeros(MAX_CODE_POINT, dtype=np.int32)
  plain_cjk = _plain_cjk_ranges(categories)
  for lo, hi in plain_cjk:
    values[lo:hi + 1] = FLAG_BOUNDARY | FLAG_ISOLATE
  skip = bytearray(MAX_CODE_POINT)
  for lo, hi in plain_cjk:
    skip[lo:hi + 1] = b"\x01" * (hi + 1 - lo)
  skip_categories = {"Cn", "Co", "Cs"}  # unassigned, private use, surrogates: default value
  to_tabulate = [cp for cp, cat in enumerate(categories) if cat not in skip_categories]
  to_tabulate = [cp for cp in to_tabulate if not skip[cp]]
  to_tabulate += [cp for lo, hi in CJK_RANGES for cp in range(lo, hi + 1)
                  if not skip[cp] and categories[cp] in skip_categories]

  entry_lists = [[0]]  # entry 0: identity (the value is unused)
  entry_ids = {}
  for cp in to_tabulate:
    ch = chr(cp)
    flags = 0
    if is_dropped(ch):
      flags |= FLAG_DROPPED
    elif is_space(ch) or is_cjk(cp):
      flags |= FLAG_BOUNDARY
    if lower_case:
      flags |= _case_flags(ch)
    out, isolate = _replacement(ch, lower_case)
    if isolate:
      flags |= FLAG_ISOLATE
    entry = 0
    if out is not None:
      key = tuple(out)
      entry = entry_ids.get(key)
      if entry is None:
        entry = entry_ids[key] = len(entry_lists)
        entry_lists.append(out)
    values[cp] = (entry << FLAG_BITS) | flags

  block_index, unique_blocks = _share_blocks(values)
  lengths = np.array([len(e) for e in entry_lists], dtype=np.int32)
  entry_splits = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
  entry_values = np.array([v for e in entry_lists for v in e], dtype=np.int32)
  return CharTable(block_index, unique_blocks, entry_splits, entry_values)


def _share_blocks(values):
  """Splits `values` into blocks and stores each distinct block once: (index, blocks)."""
  blocks2d = values.reshape(-1, 1 << BLOCK_BITS)
  first_of = {}
  block_index = np.empty(blocks2d.shape[0], dtype=np.int32)
  for i, block in enumerate(blocks2d):
    block_index[i] = first_of.setdefault(block.tobytes(), len(first_of))
  unique = np.empty((len(first_of), blocks2d.shape[1]), dtype=np.int32)
  for i, block in enumerate(blocks2d):
    unique[block_index[i]] = block
  return block_index, unique.reshape(-1)
