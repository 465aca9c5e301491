"""google-research/bert's FullTokenizer in plain Python with a per-word cache; no TensorFlow.

The offline job (create_pretraining_data) tokenizes whole corpora once and never needs a graph, so
it uses this tokenizer: it starts in milliseconds (no TensorFlow import, no tracing), and a corpus
of natural text repeats its whitespace-separated words so often that nearly every word is a cache
hit. The result is the original's, token for token:

  * The original cleans the text (drops NUL, U+FFFD and control/format characters; whitespace
    becomes a space), puts spaces around CJK ideographs and splits on whitespace. Everything after
    that split (lower-casing, NFD accent stripping, punctuation splitting, WordPiece) is applied
    to one whitespace-separated word at a time, so the ids of a word depend on the word alone and
    can be cached. `str.lower`'s one context rule (final sigma) only looks inside the word.
  * Clean-up and CJK spacing are per character: pure-ASCII lines need only the rare control
    character removed; other lines go through `str.translate` with a table filled on demand from
    the same per-character rules as `bert_tf.text.unicode_tables`.
  * A cache miss runs the original algorithm on the word: `str.lower`, NFD without category Mn,
    a token per punctuation character, then greedy longest-match-first WordPiece (`##`
    continuations; words over 200 characters or with an unmatched rest become `[UNK]`).

The cache holds at most `max_cached_words` words and starts over when full, so memory stays
bounded on any corpus. `bert_tf.text.tokenization.FullTokenizer` (TensorFlow) gives the same ids and is
what graphs and SavedModels use.
"""

import itertools
import re
import unicodedata

from bert_tf.utils import gc_control
from bert_tf.text import unicode_tables as ut
from bert_tf.text import vocab_file as vf
from bert_tf.errors import UsageError

MAX_INPUT_CHARS_PER_WORD = 200

# ASCII characters the clean-up deletes (control characters other than tab, newline and CR).
_ASCII_DROPPED = "".join(chr(c) for c in range(128) if ut.is_dropped(chr(c)))
_ASCII_CONTROL = re.compile("[" + re.escape(_ASCII_DROPPED) + "]")
_ASCII_CLEAN = str.maketrans("", "", _ASCII_DROPPED)
# An ASCII word (no whitespace or control character left) -> its basic tokens: each punctuation
# character alone, the runs between them whole.
_ASCII_PUNCTUATION = re.escape("".join(chr(c) for c in range(128) if ut.is_punctuation(chr(c))))
_ASCII_BASIC_TOKENS = re.compile(f"[{_ASCII_PUNCTUATION}]|[^{_ASCII_PUNCTUATION}]+")


class _CleanTable(dict):
  """`str.translate` table for non-ASCII text: code point -> replacement, filled on first sight.

  Deleted characters map to None, whitespace to a space, CJK ideographs to the ideograph with a
  space on each side, and every other character to itself.
  """

  def __missing__(self, cp):
    ch = chr(cp)
    if ut.is_dropped(ch):
      value = None
    elif ch in " \t\n\r" or unicodedata.category(ch) == "Zs":
      value = " "
    elif ut.is_cjk(cp):
      value = f" {ch} "
    else:
      value = ch
    self[cp] = value
    return value


class _WordCache(dict):
  """word -> tuple of ids; a missing word is computed by `compute` and kept (at most `limit`)."""

  def __init__(self, compute, limit):
    super().__init__()
    self._compute = compute
    self._limit = limit

  def __missing__(self, word):
    value = self._compute(word)
    if len(self) >= self._limit:
      self.clear()
    self[word] = value
    return value


class CachedFullTokenizer:
  """The original FullTokenizer's ids (and tokens), computed in Python with a per-word cache.

  Args:
    vocab_file: the WordPiece vocab (one token per line, id = line number).
    do_lower_case: lower-case and strip accents before WordPiece (uncased models).
    max_cached_words: most distinct words remembered at a time (the cache restarts when full).

  Attributes:
    vocab: OrderedDict token -> id; inv_vocab: dict id -> token; vocab_size: number of ids.

  Example:
    >>> tok = CachedFullTokenizer("data/vocab/bert-base-uncased-vocab.txt")
    >>> tok.tokenize_batch_ids(["Hello.", "World"])
    [[7592, 1012], [2088]]
  """

  def __init__(self, vocab_file, do_lower_case=True, max_cached_words=1 << 20):
    self.vocab_file = vocab_file
    self.do_lower_case = bool(do_lower_case)
    self.vocab = vf.load_vocab(vocab_file)
    if not self.vocab:
      raise UsageError(f"vocab file {vocab_file} is empty")
    self.inv_vocab = {v: k for k, v in self.vocab.items()}
    self.vocab_size = max(self.vocab.values()) + 1
    vf.warn_if_casing_mismatch(self.vocab, self.do_lower_case, vocab_file)
    self.max_cached_words = int(max_cached_words)
    self._unk = self.vocab.get(vf.UNK_TOKEN)
    self._clean_table = _CleanTable()
    self._cache = _WordCache(self._word_ids, self.max_cached_words)
    self._piece_cache = _WordCache(self._wordpiece_ids, self.max_cached_words)
    self._punctuation = _WordCache(ut.is_punctuation, 1 << 20)  # char -> bool

  # -- special tokens ---------------------------------------------------------------------------

  def special_id(self, token):
    """The id of `token` (e.g. "[CLS]"); UsageError naming the vocab file if it is missing."""
    if token not in self.vocab:
      raise UsageError(f"vocab file {self.vocab_file} has no {token} token")
    return self.vocab[token]

  # -- tokenization -----------------------------------------------------------------------------

  def clean_words(self, text):
    """The original's clean-up, CJK spacing and whitespace split: text -> raw words."""
    if not isinstance(text, str):
      if not isinstance(text, bytes):
        raise ValueError(f"Unsupported string type: {type(text)}")
      text = text.decode("utf-8", "ignore")
    if not text.isascii():
      text = text.translate(self._clean_table)
    elif _ASCII_CONTROL.search(text):
      text = text.translate(_ASCII_CLEAN)
    return text.split()

  def tokenize_batch_ids(self, texts):
    """Token ids of every text: list of str/bytes -> list[list[int]]."""
    word_ids = self._cache.__getitem__  # a miss computes and remembers the word
    chain = itertools.chain.from_iterable
    with gc_control.paused():  # a list per text, and cycles nowhere
      return [list(chain(map(word_ids, words))) for words in map(self.clean_words, texts)]

  def tokenize_batch(self, texts):
    """WordPiece tokens of every text: list of str/bytes -> list[list[str]]."""
    inv = self.inv_vocab
    return [[inv[i] for i in ids] for ids in self.tokenize_batch_ids(texts)]

  def tokenize(self, text):
    """WordPiece tokens of one text (str or UTF-8 bytes)."""
    return self.tokenize_batch([text])[0]

  def convert_tokens_to_ids(self, tokens):
    return vf.convert_by_vocab(self.vocab, tokens)

  def convert_ids_to_tokens(self, ids):
    return vf.convert_by_vocab(self.inv_vocab, ids)

  # -- the word cache, shared between processes -------------------------------------------------

  def num_cached_words(self):
    return len(self._cache)

  def cached_words(self, start=0):
    """The remembered (word, ids) pairs, from the `start`-th remembered on."""
    return list(itertools.islice(self._cache.items(), start, None))

  def remember_words(self, pairs):
    """Adds (word, ids) pairs that another tokenizer of the same vocab and casing computed (as
    many as the cache has room for)."""
    room = self.max_cached_words - len(self._cache)
    self._cache.update(pairs if len(pairs) <= room else pairs[:max(0, room)])

  # -- one word (a cache miss) --------------------------------------------------------------------

  def basic_words(self, word):
    """The original BasicTokenizer's tokens of one whitespace-separated word."""
    if word.isascii():  # no accents to strip; str.lower of ASCII stays ASCII
      return _ASCII_BASIC_TOKENS.findall(word.lower() if self.do_lower_case else word)
    if self.do_lower_case:
      word = word.lower()
      word = "".join(c for c in unicodedata.normalize("NFD", word)
                     if unicodedata.category(c) != "Mn")
    is_punctuation = self._punctuation.__getitem__
    pieces = []
    current = []
    for ch in word:
      if is_punctuation(ch):
        if current:
          pieces.append("".join(current))
          current = []
        pieces.append(ch)
      else:
        current.append(ch)
    if current:
      pieces.append("".join(current))
    return " ".join(pieces).split()

  def _word_ids(self, word):
    """Ids of one whitespace-separated word (a tuple)."""
    if word.isascii() and word.isalnum():  # most words: one basic token, no punctuation to split
      return self._piece_cache[word.lower() if self.do_lower_case else word]
    basic = self.basic_words(word)
    if len(basic) == 1:
      return self._piece_cache[basic[0]]
    piece_ids = self._piece_cache.__getitem__
    return tuple(itertools.chain.from_iterable(map(piece_ids, basic)))

  def _wordpiece_ids(self, token):
    """Greedy longest-match-first WordPiece of one basic token (a tuple); [UNK] when it cannot be
    split."""
    vocab = self.vocab
    if len(token) > MAX_INPUT_CHARS_PER_WORD:
      return (self._unk_id(),)
    ids = []
    start = 0
    end_of_token = len(token)
    while start < end_of_token:
      end = end_of_token
      found = None
      while start < end:
        piece = token[start:end] if start == 0 else "##" + token[start:end]
        found = vocab.get(piece)
        if found is not None:
          break
        end -= 1
      if found is None:
        return (self._unk_id(),)
      ids.append(found)
      start = end
    return tuple(ids)

  def _unk_id(self):
    if self._unk is None:
      raise UsageError(f"vocab file {self.vocab_file} has no {vf.UNK_TOKEN} token")
    return self._unk
