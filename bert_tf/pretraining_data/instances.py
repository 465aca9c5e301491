"""Documents -> masked-LM / next-sentence instances, exactly as google-research/bert builds them.

One shard of text is an independent pool: its documents are shuffled, each of `dupe_factor` passes
turns every document into `[CLS] A [SEP] B [SEP]` instances (B is the true continuation, or 50% of the
time -- always for single-segment chunks -- segments of another random document), the longer side
is truncated from a random end, candidate tokens are masked (80% `[MASK]`, 10% kept, 10% a random
vocab word; whole words on request), and all instances of the shard are shuffled at the end.

Every random choice is drawn, in the original's order, from a Mersenne Twister with the state of
`random.Random(seed)` (see `pyrandom`), so a shard seeded with `--random_seed` produces the original
script's records one for one. The loops are compiled (`kernels`: a C extension built at install
time, numba where none could be built); instances are kept compactly as
token spans plus masked positions, and expanded only when serialized.

`build_shard_instances` is the pure per-shard step (text + shard index + options -> instances in
output order), shared by the local multi-process job and any distributed pipeline.

Example:
  tables = VocabTables.from_vocab(tokenizer.vocab)
  shard = build_shard_instances(text, 0, InstanceOptions(random_seed=12345), tokenizer, tables)
  for record in shard.serialized_examples():
    ...
"""

import dataclasses
import hashlib
import itertools

import numpy as np

from bert_tf.utils import gc_control
from bert_tf.errors import UsageError


@dataclasses.dataclass(frozen=True)
class InstanceOptions:
  """The flags that decide which instances a shard produces (names as the original's flags).

  Args:
    max_seq_length: tokens per instance, including [CLS] and two [SEP].
    max_predictions_per_seq: most masked positions per instance.
    masked_lm_prob: fraction of the tokens to mask (rounded, at least one).
    short_seq_prob: probability of a shorter random target length for a document pass.
    dupe_factor: passes over the documents, each with fresh random choices.
    do_whole_word_mask: mask all `##` pieces of a word together.
    random_seed: seed of shard 0; other shards derive theirs from it (`shard_seed`).
  """
  max_seq_length: int = 128
  max_predictions_per_seq: int = 20
  masked_lm_prob: float = 0.15
  short_seq_prob: float = 0.1
  dupe_factor: int = 10
  do_whole_word_mask: bool = False
  random_seed: int = 12345


@dataclasses.dataclass(frozen=True)
class VocabTables:
  """What the instance builder needs to know about the vocabulary, as id arrays.

  Args:
    random_word_ids: ids of the vocab entries in file order (the original draws a random
      replacement word by index into `list(vocab.keys())`). [num_entries] int32
    is_subword: whether each id's token starts with `##`. [max_id + 1] bool
    cls_id, sep_id, mask_id: ids of the special tokens.
  """
  random_word_ids: np.ndarray
  is_subword: np.ndarray
  cls_id: int
  sep_id: int
  mask_id: int

  @classmethod
  def from_vocab(cls, vocab, vocab_file="the vocab"):
    """Builds the tables from an ordered token -> id mapping; UsageError if a special token is missing."""
    missing = [t for t in ("[CLS]", "[SEP]", "[MASK]") if t not in vocab]
    if missing:
      raise UsageError(f"{vocab_file}: vocabulary lacks {', '.join(missing)}")
    ids = np.fromiter(vocab.values(), dtype=np.int64, count=len(vocab))
    is_subword = np.zeros(int(ids.max()) + 1, dtype=np.bool_)
    for token, index in vocab.items():
      if token.startswith("##"):
        is_subword[index] = True
    return cls(random_word_ids=ids.astype(np.int32), is_subword=is_subword,
               cls_id=int(vocab["[CLS]"]), sep_id=int(vocab["[SEP]"]), mask_id=int(vocab["[MASK]"]))


def shard_seed(random_seed, shard_index):
  """The seed of a shard: `random_seed` itself for shard 0, a hash of both for the others."""
  if shard_index == 0:
    return random_seed
  digest = hashlib.sha256(f"bert_tf-shard:{random_seed}:{shard_index}".encode()).digest()
  return int.from_bytes(digest[:8], "little")


@dataclasses.dataclass
class Documents:
  """Tokenized documents of one shard, flat.

  Args:
    tokens: all token ids, sentence after sentence. [num_tokens] int32
    sentence_starts: offset of each sentence in `tokens`, plus the end. [num_sentences + 1] int64
    document_starts: index of each document's first sentence, plus the end. [num_documents + 1] int64
  """
  tokens: np.ndarray
  sentence_starts: np.ndarray
  document_starts: np.ndarray

  @property
  def num_documents(self):
    return len(self.document_starts) - 1

  @property
  def num_tokens(self):
    return len(self.tokens)


_TOKENIZE_BATCH_LINES = 16384


def split_documents(lines, tokenize_batch_ids):
  """Groups stripped lines into tokenized documents, as the original reader does.

  A blank line starts a new document; a line whose tokenization is empty is dropped; documents
  without sentences are removed.

  Args:
    lines: the shard's lines, already stripped (str).
    tokenize_batch_ids: callable mapping a list of str to a list of id lists.
  Returns:
    A `Documents`.
  """
  text_lines = [line for line in lines if line]
  # Tokenized in batches turned into arrays at once: lists of Python ints take ~9x the memory.
  length_parts, token_parts = [np.zeros(0, np.int64)], [np.zeros(0, np.int32)]
  for begin in range(0, len(text_lines), _TOKENIZE_BATCH_LINES):
    # The collector is paused until the batch's lists (one per line, no cycles) are freed again.
    with gc_control.paused():
      ids = tokenize_batch_ids(text_lines[begin:begin + _TOKENIZE_BATCH_LINES])
      batch_lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
      length_parts.append(batch_lengths)
      token_parts.append(np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32,
                                     count=int(batch_lengths.sum())))
      del ids
  lengths = np.concatenate(length_parts)
  tokens = np.concatenate(token_parts)
  del token_parts
  # A document starts at the first non-empty sentence after a blank line.
  doc_starts = []
  sentence = 0  # index among non-empty sentences
  text_index = 0
  new_document = True
  for line in lines:
    if not line:
      new_document = True
      continue
    if lengths[text_index] > 0:
      if new_document:
        doc_starts.append(sentence)
        new_document = False
      sentence += 1
    text_index += 1
  doc_starts.append(sentence)
  lengths = lengths[lengths > 0]
  sentence_starts = np.zeros(len(lengths) + 1, dtype=np.int64)
  np.cumsum(lengths, out=sentence_starts[1:])
  return Documents(tokens=tokens, sentence_starts=sentence_starts,
                   document_starts=np.asarray(doc_starts, dtype=np.int64))


@dataclasses.dataclass
class ShardInstances:
  """A shard's instances, already in output order, kept as spans of `documents.tokens`.

  Instance i is `[CLS] tokens[a_start:a_start+a_length] [SEP] tokens[b_start:b_start+b_length] [SEP]`
  with `masked_tokens[i, :num_masked[i]]` written at `masked_positions[i, :num_masked[i]]`
  (positions ascending).
  """
  documents: Documents
  tables: VocabTables
  options: InstanceOptions
  a_start: np.ndarray           # [num_instances] int64
  a_length: np.ndarray          # [num_instances] int32
  b_start: np.ndarray           # [num_instances] int64
  b_length: np.ndarray          # [num_instances] int32
  is_random_next: np.ndarray    # [num_instances] uint8
  num_masked: np.ndarray        # [num_instances] int32
  masked_positions: np.ndarray  # [num_instances, max_predictions_per_seq] int32
  masked_tokens: np.ndarray     # [num_instances, max_predictions_per_seq] int32

  def __len__(self):
    return len(self.a_start)

  def framed_record_chunks(self, chunk_size=8192):
    """Yields `(buffer, ends)`: TFRecord-framed serialized examples, `chunk_size` at a time.

    `buffer` is uint8 bytes of consecutive framed records, `ends[k]` the end offset of record k.
    """
    from bert_tf.pretraining_data import records as pretraining_records
    for begin in range(0, len(self), chunk_size):
      end = min(begin + chunk_size, len(self))
      yield pretraining_records.serialize_instances(self, begin, end, framed=True)

  def serialized_examples(self, chunk_size=8192):
    """Yields the serialized `tf.train.Example` bytes of every instance, in order."""
    from bert_tf.pretraining_data import records as pretraining_records
    for begin in range(0, len(self), chunk_size):
      end = min(begin + chunk_size, len(self))
      buffer, ends = pretraining_records.serialize_instances(self, begin, end, framed=False)
      data = buffer.tobytes()
      start = 0
      for stop in ends.tolist():
        yield data[start:stop]
        start = stop

  def padded_arrays(self):
    """The instances as padded feature arrays (the record contents), for tests and inspection."""
    from bert_tf.pretraining_data import records as pretraining_records
    return pretraining_records.instances_to_arrays(self)


def build_shard_instances(lines, shard_index, options, tokenize_batch_ids, tables):
  """The whole per-shard step: tokenize, build instances with the shard's seed, shuffle them.

  Args:
    lines: the shard's stripped lines (str), blank lines separating documents.
    shard_index: position of the shard in the document stream (0 reproduces the original).
    options: `InstanceOptions`.
    tokenize_batch_ids: callable mapping a list of str to a list of id lists.
    tables: `VocabTables` of the tokenizer's vocabulary.
  Returns:
    `ShardInstances`, in the order the records are written.
  """
  documents = split_documents(lines, tokenize_batch_ids)
  return create_instances(documents, shard_index, options, tables)


def create_instances(documents, shard_index, options, tables):
  """Builds and shuffles the instances of tokenized documents (see `build_shard_instances`)."""
  from bert_tf.pretraining_data import kernels  # the C extension, or numba loaded on first use
  arrays = kernels.create_instances(
      documents.tokens, documents.sentence_starts, documents.document_starts,
      shard_seed(options.random_seed, shard_index), options.max_seq_length,
      options.max_predictions_per_seq, float(options.masked_lm_prob), float(options.short_seq_prob),
      options.dupe_factor, bool(options.do_whole_word_mask), tables.is_subword, tables.random_word_ids,
      tables.mask_id)
  return ShardInstances(documents, tables, options, *arrays)


def warm_up():
  """Loads the compiled code on a tiny shard (with numba kernels: loads or compiles them).

  Numba's work here is mostly outside the GIL, so running this in a thread while the vocab and the
  tokenizer load hides most of its cost; the C extension takes a millisecond.
  """
  vocab = {token: i for i, token in enumerate(["[PAD]", "[CLS]", "[SEP]", "[MASK]", "a", "##b", "c", "d"])}
  documents = Documents(tokens=np.array([4, 5, 6, 7, 4, 6], np.int32),
                        sentence_starts=np.array([0, 2, 4, 6], np.int64),
                        document_starts=np.array([0, 2, 3], np.int64))
  for whole_word in (False, True):
    options = InstanceOptions(max_seq_length=8, max_predictions_per_seq=2, dupe_factor=1,
                              do_whole_word_mask=whole_word)
    shard = create_instances(documents, 0, options, VocabTables.from_vocab(vocab))
    for _ in shard.framed_record_chunks():
      pass
