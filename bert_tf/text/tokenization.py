"""google-research/bert's WordPiece tokenizer, token for token, running in TensorFlow ops.

Porting code written for the original is a one-line change:

    from bert_tf.text import tokenization
    tokenizer = tokenization.FullTokenizer(vocab_file="vocab.txt", do_lower_case=True)
    tokens = tokenizer.tokenize("Hello, world!")     # ['hello', ',', 'world', '!']
    ids = tokenizer.convert_tokens_to_ids(tokens)

and batches go through one C++ pass instead of a Python loop per character:

    ids = tokenizer.tokenize_batch_ids(lines)           # list[list[int]]

How it works. The original normalises text character by character (clean-up, CJK splitting,
lower-casing + NFD accent stripping, punctuation splitting; see `bert_tf.text.unicode_tables`). Those
rules are evaluated once per code point with Python's own `unicodedata`/`str.lower` and stored in a
lookup table; the pipeline below decodes UTF-8, gathers each code point's replacement from the
table, applies the one context-dependent rule (capital sigma at the end of a word becomes a final
sigma, as `str.lower` does), cuts words at boundaries and hands them to tensorflow-text's
`FastWordpieceTokenizer` (greedy longest-match-first, `##` continuation pieces). Words of more
than 200 characters become `[UNK]`, as in the original. Nothing uses tensorflow-text's own
normaliser, whose NFKC-based case folding differs from the original (it turns `…` into `...`,
`ﬁ` into `fi`, fullwidth letters into ASCII, final sigma into sigma, and keeps U+FFFD).

The same graph serves `FullTokenizer` (Python lists in and out) and `BertTokenizerLayer` (a Keras
layer for tf.data and SavedModels), so both are exact.

Outside valid text: lone surrogates in a Python `str` (not encodable as UTF-8) are passed as
U+FFFF, which the original's rules treat alike (a letter no vocab has: the word becomes [UNK]);
invalid UTF-8 bytes are dropped, as the original's `decode("utf-8", "ignore")` does.

A SavedModel that contains the tokenizer needs `import tensorflow_text` in the process that loads
it (that import registers the WordPiece op).
"""

import collections
import functools
import re

import numpy as np
import tensorflow as tf

from bert_tf.utils import gc_control
from bert_tf.text import unicode_tables as ut
from bert_tf.errors import UsageError
from bert_tf.text.vocab_file import (  # noqa: F401  (the original module's names; no TensorFlow there)
    convert_to_unicode,
    printable_text,
    load_vocab,
    convert_by_vocab,
    convert_tokens_to_ids,
    convert_ids_to_tokens,
    whitespace_tokenize,
    validate_case_matches_checkpoint,
    vocab_casing_problem,
    warn_if_casing_mismatch,
)
from bert_tf.text.vocab_file import UNK_TOKEN

MAX_INPUT_CHARS_PER_WORD = 200
_BATCH_LINES = 2048  # lines per TensorFlow call in the batch methods
_OVERLONG_WORD = "\x00"  # stands for over-long words; NUL never survives clean-up
# Lone surrogates cannot travel as UTF-8; the original keeps them as letters no vocab contains, so
# they travel as U+FFFF, a noncharacter that is treated the same way (kept, never punctuation).
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_STAND_IN = "\uffff"


# ---------------------------------------------------------------------------------------------
# The TensorFlow graph.


class _NormalizerGraph(tf.Module):
  """Text -> words (the original's BasicTokenizer) in TensorFlow ops; owns the character table.

  Args:
    do_lower_case: lower-case and strip accents.
  """

  def __init__(self, do_lower_case):
    super().__init__(name="bert_normalizer_graph")
    self.do_lower_case = bool(do_lower_case)
    table = ut.char_table(self.do_lower_case)
    self._block_index = tf.constant(table.block_index)  # [0x110000 >> BLOCK_BITS]
    self._blocks = tf.constant(table.blocks)  # [num_blocks << BLOCK_BITS]
    self._entry_splits = tf.constant(table.entry_splits)  # [num_entries + 1]
    self._entry_values = tf.constant(table.entry_values)  # [total replacement code points]
    lengths = np.diff(table.entry_splits)
    lengths[0] = 1  # entry 0: the code point itself
    firsts = table.entry_values[np.minimum(table.entry_splits[:-1], table.entry_values.size - 1)]
    self._entry_lengths = tf.constant(lengths.astype(np.int32))  # [num_entries]
    self._entry_first = tf.constant(firsts.astype(np.int32))  # [num_entries]

  def _lookup(self, cps):
    """Table value (entry << FLAG_BITS | flags) of each code point. cps: int32 [n]."""
    high = tf.gather(self._block_index, tf.bitwise.right_shift(cps, ut.BLOCK_BITS))
    low = tf.bitwise.bitwise_and(cps, (1 << ut.BLOCK_BITS) - 1)
    return tf.gather(self._blocks, high * (1 << ut.BLOCK_BITS) + low)

  def _final_sigmas(self, cps, info, line_of):
    """Turns capital sigmas into final sigmas where Python's str.lower would.

    A capital sigma is final when the nearest character before it (skipping case-ignorable and
    deleted characters) is cased and the nearest one after it is not cased or missing; words end at
    whitespace, CJK ideographs and line ends, which are never cased.

    Args:
      cps: int32 [n] code points; info: int32 [n] table values; line_of: int64 [n] line of each.
    Returns:
      (cps, info) with the final sigmas replaced.
    """
    skip = ((tf.bitwise.bitwise_and(info, ut.FLAG_DROPPED | ut.FLAG_CASE_IGNORABLE) != 0)
            & (tf.bitwise.bitwise_and(info, ut.FLAG_BOUNDARY) == 0))  # boundaries always count
    cased = tf.bitwise.bitwise_and(info, ut.FLAG_CASED) != 0
    anchors = tf.where(~skip)[:, 0]  # [a] positions that take part in the context
    sigmas = tf.where(tf.equal(cps, ut.CAPITAL_SIGMA))[:, 0]  # [s]
    # A sigma is an anchor itself: `rank` is its index in `anchors`.
    rank = tf.searchsorted(anchors, sigmas, side="left", out_type=tf.int64)  # [s]
    num = tf.shape(anchors, out_type=tf.int64)[0]

    def cased_neighbour(idx):
      valid = (idx >= 0) & (idx < num)
      pos = tf.gather(anchors, tf.clip_by_value(idx, 0, tf.maximum(num - 1, 0)))
      same_line = tf.equal(tf.gather(line_of, pos), tf.gather(line_of, sigmas))
      return valid & same_line & tf.gather(cased, pos)

    final = cased_neighbour(rank - 1) & ~cased_neighbour(rank + 1)  # [s]
    where = tf.boolean_mask(sigmas, final)[:, None]
    cps = tf.tensor_scatter_nd_update(
        cps, where, tf.fill(tf.shape(where)[:1], tf.constant(ut.FINAL_SIGMA, tf.int32)))
    return cps, self._lookup(cps)

  def _normalize(self, texts):
    """Texts -> normalised code points per line, with a space (32) at every word boundary.

    Every code point is replaced by its table entry (usually one code point, sometimes none or
    several) and surrounded by spaces when it is isolated (CJK ideograph, punctuation).

    Args:
      texts: tf.string [batch].
    Returns:
      RaggedTensor int32 [batch, (normalised code points)].
    """
    chars = tf.strings.unicode_decode(texts, "UTF-8", errors="replace",
                                      replacement_char=0xFFFD)  # [batch, (chars)]
    cps = chars.flat_values  # [n]
    info = self._lookup(cps)  # [n]
    if self.do_lower_case:
      has_sigma = tf.reduce_any(tf.equal(cps, ut.CAPITAL_SIGMA))
      cps, info = tf.cond(has_sigma,
                          lambda: self._final_sigmas(cps, info, chars.value_rowids()),
                          lambda: (cps, info))

    entry = tf.bitwise.right_shift(info, ut.FLAG_BITS)  # [n]
    isolate = tf.cast(tf.bitwise.bitwise_and(info, ut.FLAG_ISOLATE) != 0, tf.int32)  # [n]
    length = tf.gather(self._entry_lengths, entry)  # [n] length of the replacement
    out_len = length + 2 * isolate  # [n] with a space before and after an isolated one
    out_end = tf.cumsum(out_len)  # [n]
    begin = out_end - out_len + isolate  # [n] where the replacement starts in the output
    total = tf.reduce_sum(out_len)

    # Replacements of length 1 (nearly all): one scatter; others go to a spare slot at `total`.
    first = tf.where(entry == 0, cps, tf.gather(self._entry_first, entry))
    target = tf.where(length == 1, begin, total)
    out = tf.tensor_scatter_nd_update(
        tf.fill([total + 1], tf.constant(ut.SPACE, tf.int32)), target[:, None], first)

    def scatter_long_replacements(out):
      where = tf.where(length > 1)[:, 0]  # [r] (rare: e.g. Hangul syllables when lower-casing)
      lens = tf.gather(length, where)
      k = tf.range(tf.reduce_sum(lens)) - tf.repeat(tf.cumsum(lens, exclusive=True), lens)
      dest = tf.repeat(tf.gather(begin, where), lens) + k
      src = tf.repeat(tf.gather(self._entry_splits, tf.gather(entry, where)), lens) + k
      return tf.tensor_scatter_nd_update(out, dest[:, None], tf.gather(self._entry_values, src))

    out = tf.cond(tf.reduce_any(length > 1), lambda: scatter_long_replacements(out),
                  lambda: out)
    out_splits = tf.gather(tf.concat([[0], out_end], 0), chars.row_splits)  # [batch + 1]
    return tf.RaggedTensor.from_row_splits(out[:total], tf.cast(out_splits, tf.int64),
                                           validate=False)

  def word_strings(self, texts):
    """Basic tokenization (the original's BasicTokenizer): texts -> words.

    Args:
      texts: tf.string [batch].
    Returns:
      RaggedTensor tf.string [batch, (words)].
    """
    per_line = self._normalize(texts)  # [batch, (normalised code points)]
    joined = tf.strings.unicode_encode(per_line, "UTF-8")  # [batch], words separated by spaces
    # Split on runs of ASCII whitespace; the only one left after normalisation is the space.
    return tf.strings.split(joined)  # [batch, (words)]


@functools.lru_cache(maxsize=2)
def _normalizer_graph(do_lower_case):
  with tf.init_scope():  # eager constants, even when first needed while tracing a function
    return _NormalizerGraph(do_lower_case)


class _TokenizerGraph(tf.Module):
  """Text -> WordPiece ids in TensorFlow ops: the normaliser followed by FastWordpiece.

  Args:
    vocab: OrderedDict token -> id (from `load_vocab`).
    do_lower_case: lower-case and strip accents.
  """

  def __init__(self, vocab, do_lower_case):
    super().__init__(name="bert_tokenizer_graph")
    import tensorflow_text as tf_text

    self.normalizer = _normalizer_graph(bool(do_lower_case))
    # WordPiece vocab: distinct tokens that can match (not "" nor a bare "##"); their ids are
    # the vocab's (last line wins for a token listed twice).
    pieces = [t for t in vocab if t and t != "##"]
    piece_ids = [vocab[t] for t in pieces]
    self.unk_in_vocab = UNK_TOKEN in vocab
    if not self.unk_in_vocab:
      pieces.append(UNK_TOKEN)
      piece_ids.append(-1)  # no id: an error where ids are needed, "[UNK]" where tokens are
    self.unk_id = vocab.get(UNK_TOKEN, -1)
    self._identity_ids = piece_ids == list(range(len(piece_ids)))
    self._piece_ids = tf.constant(piece_ids, tf.int64)
    self._wordpiece = tf_text.FastWordpieceTokenizer(
        vocab=pieces, suffix_indicator="##",
        max_bytes_per_word=4 * MAX_INPUT_CHARS_PER_WORD + 4, token_out_type=tf.int64,
        unknown_token=UNK_TOKEN, no_pretokenization=True, support_detokenization=False)

  def word_strings(self, texts):
    return self.normalizer.word_strings(texts)

  def piece_ids(self, texts):
    """Texts -> RaggedTensor int64 [batch, (pieces)] vocab ids (-1 = [UNK] missing in vocab)."""
    words = self.normalizer.word_strings(texts)  # [batch, (words)]
    flat = words.flat_values  # [words]
    too_long = tf.strings.length(flat, unit="UTF8_CHAR") > MAX_INPUT_CHARS_PER_WORD
    flat = tf.where(too_long, _OVERLONG_WORD, flat)  # one piece each, overridden below
    pieces = self._wordpiece.tokenize(flat)  # [words, (pieces)] indices into the piece list
    ids = pieces.flat_values
    if not self._identity_ids:
      ids = tf.gather(self._piece_ids, ids)
    long_piece = tf.repeat(too_long, pieces.row_lengths())
    ids = tf.where(long_piece, tf.constant(self.unk_id, tf.int64), ids)
    per_word = pieces.with_flat_values(ids)
    return words.with_flat_values(per_word).merge_dims(1, 2)


def _trace_for_batches(fn):
  """`fn` (texts -> RaggedTensor [batch, (n)]) traced once for a batch of strings [None], as a
  concrete function returning (flat values [total], row splits [batch + 1]): cheap to call."""

  def flat(texts):
    rt = fn(texts)
    return rt.flat_values, rt.row_splits

  spec = [tf.TensorSpec([None], tf.string)]
  return tf.function(flat, input_signature=spec, autograph=False).get_concrete_function()


@functools.lru_cache(maxsize=2)
def _words_fn(do_lower_case):
  with tf.init_scope():
    return _trace_for_batches(_normalizer_graph(do_lower_case).word_strings)


class _Compiled:
  """A tokenizer graph and its functions traced for a batch of strings [None]."""

  def __init__(self, vocab, do_lower_case):
    self.graph = _TokenizerGraph(vocab, do_lower_case)
    self.ids_fn = _trace_for_batches(self.graph.piece_ids)


_COMPILED_CACHE = collections.OrderedDict()
_COMPILED_CACHE_SIZE = 4


def _compiled_tokenizer(vocab, do_lower_case):
  """A shared `_Compiled` per (vocab contents, do_lower_case): tokenizers built again for the same
  vocab in one process (tests, notebooks, several commands) skip the model build and tracing."""
  key = (tuple(vocab.items()), bool(do_lower_case))
  compiled = _COMPILED_CACHE.pop(key, None)
  if compiled is None:
    with tf.init_scope():  # eager constants, even when first needed while tracing a function
      compiled = _Compiled(vocab, do_lower_case)
  _COMPILED_CACHE[key] = compiled
  while len(_COMPILED_CACHE) > _COMPILED_CACHE_SIZE:
    _COMPILED_CACHE.popitem(last=False)
  return compiled


# ---------------------------------------------------------------------------------------------
# Python API.


def _as_text_batch(texts):
  """A list of str/bytes -> a tf.string tensor [batch]."""
  out = []
  for t in texts:
    if isinstance(t, str):
      try:
        out.append(t.encode("utf-8"))
      except UnicodeEncodeError:
        out.append(_LONE_SURROGATE.sub(_SURROGATE_STAND_IN, t).encode("utf-8"))
    elif isinstance(t, bytes):
      out.append(t)
    else:
      raise ValueError(f"Unsupported string type: {type(t)}")
  return tf.constant(out, tf.string, shape=[len(out)])


def _split_rows(values, splits):
  """A flat Python list and row splits -> list of rows (slicing only, no per-element work).

  The cyclic garbage collector is paused meanwhile: it would otherwise rescan the heap many times
  while thousands of small lists are created, which costs more than the slicing.
  """
  with gc_control.paused():
    return [values[a:b] for a, b in zip(splits[:-1], splits[1:])]


def _in_batches(texts, fn):
  """Runs `fn` on slices of `texts`; yields (flat values numpy, row splits list) per slice."""
  texts = list(texts)
  for start in range(0, len(texts), _BATCH_LINES):
    values, splits = fn(_as_text_batch(texts[start:start + _BATCH_LINES]))
    yield values.numpy(), splits.numpy().tolist()


class BasicTokenizer:
  """The original BasicTokenizer: clean-up, CJK and punctuation splitting, lower-casing.

  Args:
    do_lower_case: lower-case and strip accents.

  Example:
    >>> BasicTokenizer().tokenize_batch(["Héllo, WORLD!"])
    [['hello', ',', 'world', '!']]
  """

  def __init__(self, do_lower_case=True):
    self.do_lower_case = bool(do_lower_case)

  def words_graph(self, texts):
    """In-graph form: tf.string [batch] -> RaggedTensor tf.string [batch, (words)]."""
    return _normalizer_graph(self.do_lower_case).word_strings(texts)

  def tokenize_batch(self, texts):
    """Words of every text: list of str/bytes -> list[list[str]]."""
    out = []
    for values, splits in _in_batches(texts, _words_fn(self.do_lower_case)):
      out.extend(_split_rows([w.decode("utf-8") for w in values.tolist()], splits))
    return out

  def tokenize(self, text):
    return self.tokenize_batch([text])[0]


class FullTokenizer:
  """End-to-end tokenization as google-research/bert's FullTokenizer, batched in TensorFlow.

  Args:
    vocab_file: the WordPiece vocab (one token per line, id = line number).
    do_lower_case: lower-case and strip accents before WordPiece (uncased models).

  Attributes:
    vocab: OrderedDict token -> id; inv_vocab: dict id -> token; vocab_size: number of ids.

  Example:
    >>> tok = FullTokenizer("data/vocab/bert-base-uncased-vocab.txt", do_lower_case=True)
    >>> tok.tokenize("Unaffable café!")
    ['una', '##ffa', '##ble', 'cafe', '!']
    >>> tok.tokenize_batch_ids(["Hello.", "World"])
    [[7592, 1012], [2088]]
  """

  def __init__(self, vocab_file, do_lower_case=True):
    self.vocab_file = vocab_file
    self.do_lower_case = bool(do_lower_case)
    self.vocab = load_vocab(vocab_file)
    if not self.vocab:
      raise UsageError(f"vocab file {vocab_file} is empty")
    self.inv_vocab = {v: k for k, v in self.vocab.items()}
    self.vocab_size = max(self.vocab.values()) + 1
    warn_if_casing_mismatch(self.vocab, self.do_lower_case, vocab_file)
    self._compiled = None  # built on first use (tables, WordPiece model, traced functions)
    self.basic_tokenizer = BasicTokenizer(self.do_lower_case)
    id_to_token = np.full(self.vocab_size + 1, UNK_TOKEN, dtype=object)  # [-1] = "[UNK]"
    for token, i in self.vocab.items():
      id_to_token[i] = token
    self._id_to_token = id_to_token

  def _functions(self):
    if self._compiled is None:
      self._compiled = _compiled_tokenizer(self.vocab, self.do_lower_case)
    return self._compiled

  # -- special tokens ---------------------------------------------------------------------------

  def special_id(self, token):
    """The id of `token` (e.g. "[CLS]"); UsageError naming the vocab file if it is missing."""
    if token not in self.vocab:
      raise UsageError(f"vocab file {self.vocab_file} has no {token} token")
    return self.vocab[token]

  pad_id = property(lambda self: self.special_id("[PAD]"), doc="Id of [PAD].")
  unk_id = property(lambda self: self.special_id("[UNK]"), doc="Id of [UNK].")
  cls_id = property(lambda self: self.special_id("[CLS]"), doc="Id of [CLS].")
  sep_id = property(lambda self: self.special_id("[SEP]"), doc="Id of [SEP].")
  mask_id = property(lambda self: self.special_id("[MASK]"), doc="Id of [MASK].")

  # -- tokenization -----------------------------------------------------------------------------

  def tokenize_batch_ids(self, texts):
    """Token ids of every text: list of str/bytes -> list[list[int]] (the fast path)."""
    out = []
    compiled = self._functions()
    for values, splits in _in_batches(texts, compiled.ids_fn):
      if not compiled.graph.unk_in_vocab and (values < 0).any():
        self.special_id(UNK_TOKEN)  # raises UsageError naming the vocab file
      out.extend(_split_rows(values.tolist(), splits))
    return out

  def tokenize_batch(self, texts):
    """WordPiece tokens of every text: list of str/bytes -> list[list[str]]."""
    out = []
    for values, splits in _in_batches(texts, self._functions().ids_fn):
      out.extend(_split_rows(self._id_to_token[values].tolist(), splits))
    return out

  def tokenize(self, text):
    """WordPiece tokens of one text (str or UTF-8 bytes)."""
    return self.tokenize_batch([text])[0]

  def basic_tokenize_batch(self, texts):
    """The original BasicTokenizer's words (before WordPiece) for every text."""
    return self.basic_tokenizer.tokenize_batch(texts)

  def convert_tokens_to_ids(self, tokens):
    return convert_by_vocab(self.vocab, tokens)

  def convert_ids_to_tokens(self, ids):
    return convert_by_vocab(self.inv_vocab, ids)


# ---------------------------------------------------------------------------------------------
# In-graph form.


def _keras_layer_base():
  import keras
  return keras.layers.Layer


class BertTokenizerLayer(_keras_layer_base()):
  """Keras layer: tf.string [batch] -> tf.RaggedTensor int32 [batch, (tokens)] of vocab ids.

  Same ids as `FullTokenizer` (the same TensorFlow graph, every normalisation rule included).
  Works eagerly, inside `tf.data.Dataset.map` and inside a `tf.Module` saved with
  `tf.saved_model.save` (the vocab and tables are baked into the graph; the vocab file is not
  needed after saving). The vocab must contain [UNK].

  Args:
    vocab_file: the WordPiece vocab.
    do_lower_case: lower-case and strip accents (uncased models).

  Example:
    >>> layer = BertTokenizerLayer("data/vocab/bert-base-uncased-vocab.txt")
    >>> ds = tf.data.Dataset.from_tensor_slices(["a b", "c"]).batch(2).map(layer)
  """

  def __init__(self, vocab_file, do_lower_case=True, **kwargs):
    kwargs.setdefault("trainable", False)
    super().__init__(**kwargs)
    self.vocab_file = vocab_file
    self.do_lower_case = bool(do_lower_case)
    vocab = load_vocab(vocab_file)
    if UNK_TOKEN not in vocab:
      raise UsageError(f"vocab file {vocab_file} has no {UNK_TOKEN} token")
    warn_if_casing_mismatch(vocab, self.do_lower_case, vocab_file)
    self.vocab_size = max(vocab.values()) + 1
    self._graph = _compiled_tokenizer(vocab, self.do_lower_case).graph

  def __call__(self, texts, *args, **kwargs):
    if not tf.is_tensor(texts):  # a Python list or numpy array of strings
      texts = tf.convert_to_tensor(texts, tf.string)
    return super().__call__(texts, *args, **kwargs)

  def call(self, texts):
    texts = tf.convert_to_tensor(texts, tf.string)
    if texts.shape.rank == 0:
      raise ValueError("BertTokenizerLayer expects a batch of strings [batch], got a scalar")
    return tf.cast(self._graph.piece_ids(texts), tf.int32)  # [batch, (tokens)]

  def compute_output_spec(self, texts):
    return tf.RaggedTensorSpec([texts.shape[0], None], tf.int32, ragged_rank=1)

  def get_config(self):
    config = super().get_config()
    config.update(vocab_file=self.vocab_file, do_lower_case=self.do_lower_case)
    return config
