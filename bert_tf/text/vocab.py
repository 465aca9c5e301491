"""Learns a WordPiece vocab (`vocab.txt`) from text files, in BERT's layout.

    bert-build-vocab --input_file='corpus/*.txt,more.txt.gz' --output_file=vocab.txt \\
        --vocab_size=30522 --do_lower_case=True

Words come from the same basic tokenization as `bert_tf.text.tokenization.FullTokenizer` (clean-up,
lower-casing and accent stripping when uncased, punctuation and CJK-character splitting), so the
learned pieces fit what the tokenizer will look up. Lines are streamed in batches; words are
counted in TensorFlow per batch and merged into one bounded table (rare words are pruned when it
grows past `max_unique_words`); `max_lines` and `sample_rate` read only part of a large corpus.
The pieces are learned by tensorflow-text's WordPiece learner
(`tensorflow_text.tools.wordpiece_vocab`), then written with the reserved tokens first:

    [PAD]=0, [unused0] .. [unused{N-1}], [UNK], [CLS], [SEP], [MASK], learned pieces ...

With the default `--num_unused=99` this puts [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103 as in
the released BERT vocabs. The file is written atomically.
"""

import collections
import functools
import random
import time

from absl import flags, logging

from bert_tf.utils import io_utils
from bert_tf.errors import UsageError, run_main

RESERVED_AFTER_UNUSED = ("[UNK]", "[CLS]", "[SEP]", "[MASK]")
_BATCH_LINES = 4096


def reserved_tokens(num_unused):
  """[PAD], [unused0..num_unused-1], [UNK], [CLS], [SEP], [MASK] (the original's id layout)."""
  return ["[PAD]"] + [f"[unused{i}]" for i in range(num_unused)] + list(RESERVED_AFTER_UNUSED)


@functools.lru_cache(maxsize=2)
def _batch_word_counter(do_lower_case):
  """A traced function: lines tf.string [batch] -> (distinct words [u], their counts [u])."""
  import tensorflow as tf
  from bert_tf.text import tokenization

  basic = tokenization.BasicTokenizer(do_lower_case)

  def count(texts):
    words = basic.words_graph(texts).flat_values  # [words]
    unique, _, counts = tf.unique_with_counts(words, out_idx=tf.int64)
    return unique, counts

  spec = [tf.TensorSpec([None], tf.string)]
  return tf.function(count, input_signature=spec, autograph=False).get_concrete_function()


class WordCounter:
  """Counts basic-tokenized words of text lines in batches, with bounded memory.

  Args:
    do_lower_case: basic tokenization mode (as the tokenizer that will use the vocab).
    max_unique_words: when more distinct words are held, the rarest are dropped (their counts
      are lost; the result is then approximate for rare words, exact for frequent ones).
  """

  def __init__(self, do_lower_case=True, max_unique_words=2_000_000):
    import tensorflow as tf

    self._tf = tf
    self._count_fn = _batch_word_counter(bool(do_lower_case))
    self.max_unique_words = max_unique_words
    self.counts = collections.Counter()  # word (bytes) -> count
    self.num_words = 0
    self.prune_floor = 0  # words seen at most this often may have been dropped

  def add_lines(self, lines):
    """Counts the words of `lines` (a list of str)."""
    unique, counts = self._count_fn(self._tf.constant(lines, self._tf.string, shape=[len(lines)]))
    counts = counts.numpy().tolist()
    self.counts.update(dict(zip(unique.numpy().tolist(), counts)))
    self.num_words += sum(counts)
    if len(self.counts) > self.max_unique_words:
      self._prune()

  def _prune(self):
    """Drops the rarest words until at most half of `max_unique_words` remain."""
    target = self.max_unique_words // 2
    while len(self.counts) > target:
      self.prune_floor += 1
      self.counts = collections.Counter(
          {w: c for w, c in self.counts.items() if c > self.prune_floor})
    logging.info("word table pruned: words seen <= %d times dropped, %d distinct words kept",
                 self.prune_floor, len(self.counts))

  def word_counts(self):
    """dict str -> count."""
    return {w.decode("utf-8"): c for w, c in self.counts.items()}


def _sampled_lines(files, max_lines, sample_rate, seed):
  """Yields (line, lines_read) for the non-empty lines kept by sampling, up to `max_lines` read."""
  rng = random.Random(seed)
  read = 0
  for path in files:
    with io_utils.open_text(path) as f:
      for line in f:
        if max_lines and read >= max_lines:
          return
        read += 1
        if sample_rate < 1.0 and rng.random() >= sample_rate:
          continue
        line = line.strip()
        if line:
          yield line, read


def count_words(files, do_lower_case=True, max_lines=0, sample_rate=1.0, seed=12345,
                max_unique_words=2_000_000, log_every_lines=200_000):
  """Streams `files` and returns a WordCounter with their word counts.

  Args:
    files: list of paths (plain or .gz).
    do_lower_case: basic tokenization mode.
    max_lines: stop after reading this many lines (0 = all).
    sample_rate: fraction of lines counted (a seeded random choice per line).
    seed: seed of that choice.
    max_unique_words: bound on the distinct words held (see WordCounter).
    log_every_lines: progress is logged every this many lines read.
  """
  counter = WordCounter(do_lower_case, max_unique_words)
  batch, kept, read, next_log, start = [], 0, 0, log_every_lines, time.time()
  for line, read in _sampled_lines(files, max_lines, sample_rate, seed):
    batch.append(line)
    kept += 1
    if len(batch) == _BATCH_LINES:
      counter.add_lines(batch)
      batch = []
    if read >= next_log:
      next_log += log_every_lines
      logging.info("read %d lines, counted %d (%d words, %d distinct) in %.1fs", read, kept,
                   counter.num_words, len(counter.counts), time.time() - start)
  if batch:
    counter.add_lines(batch)
  logging.info("counted %d lines: %d words, %d distinct, %.1fs", kept, counter.num_words,
               len(counter.counts), time.time() - start)
  return counter


def build_vocab(input_files, output_file=None, vocab_size=30522, do_lower_case=True,
                num_unused=99, max_lines=0, sample_rate=1.0, seed=12345,
                max_unique_words=2_000_000, max_token_length=50, max_unique_chars=1000,
                num_iterations=4, min_count=10, log_every_lines=200_000):
  """Learns a WordPiece vocab and (if `output_file`) writes it; returns the token list.

  Args:
    input_files: comma-separated paths/globs (a string) or a list of paths; .gz is read as gzip.
    output_file: where to write vocab.txt (atomically); None = only return the tokens.
    vocab_size: the most tokens in the vocab, reserved ones included.
    do_lower_case: lower-case and strip accents (an uncased vocab).
    num_unused: number of [unusedN] slots after [PAD].
    max_lines, sample_rate, seed, max_unique_words, log_every_lines: see `count_words`.
    max_token_length: longest learned piece, in characters.
    max_unique_chars: the alphabet: only the most frequent this many characters are kept.
    num_iterations: rounds of the learner.
    min_count: lowest piece-frequency threshold the learner may pick.

  Raises:
    UsageError: bad sizes or rates, no input file or no words in them.
  """
  if num_unused < 0:
    raise UsageError(f"--num_unused must be >= 0, got {num_unused}")
  reserved = reserved_tokens(num_unused)
  if vocab_size <= len(reserved):
    raise UsageError(f"--vocab_size={vocab_size} leaves no room for learned pieces after the "
                     f"{len(reserved)} reserved tokens (--num_unused={num_unused})")
  if not 0.0 < sample_rate <= 1.0:
    raise UsageError(f"--sample_rate must be in (0, 1], got {sample_rate}")
  if max_lines < 0:
    raise UsageError(f"--max_lines must be >= 0, got {max_lines}")
  if input_files is None or isinstance(input_files, str):
    files = io_utils.expand_input_patterns(input_files, "--input_file")
  else:
    files = list(input_files)
    if not files:
      raise UsageError("--input_file names no file")

  from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib as learner

  counter = count_words(files, do_lower_case, max_lines, sample_rate, seed, max_unique_words,
                        log_every_lines)
  word_counts = counter.word_counts()
  if not word_counts:
    raise UsageError(f"--input_file: no words in {', '.join(files)}")

  # Characters that the basic tokenizer always isolates (CJK, punctuation) never follow another
  # character in a word, so their "##" forms are useless: ask the learner for room to drop them.
  isolated = {w for w in word_counts if len(w) == 1 and _always_isolated(w)}
  logging.info("learning at most %d tokens from %d distinct words (tensorflow-text's learner; "
               "its time grows with the distinct words)", vocab_size, len(word_counts))
  start = time.time()
  learned = learner.learn(
      word_counts, vocab_size=vocab_size + len(isolated), reserved_tokens=reserved,
      lower_thresh=max(1, min(min_count, max(word_counts.values()))),
      num_iterations=num_iterations, max_token_length=max_token_length,
      max_unique_chars=max_unique_chars, include_joiner_token=True, joiner="##")
  reserved_set = set(reserved)
  unusable = {"##" + c for c in isolated}
  tokens = reserved + [t for t in learned if t not in reserved_set and t not in unusable]
  tokens = _fit(tokens, vocab_size, len(reserved))
  logging.info("learned %d pieces in %.1fs (%d tokens with the reserved ones)",
               len(tokens) - len(reserved), time.time() - start, len(tokens))
  if output_file:
    with io_utils.atomic_output(output_file) as tmp:
      with open(tmp, "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in tokens))
    logging.info("wrote %s", output_file)
  return tokens


def _always_isolated(char):
  from bert_tf.text import unicode_tables
  return unicode_tables.is_cjk(ord(char)) or unicode_tables.is_punctuation(char)


def _fit(tokens, vocab_size, num_reserved):
  """Drops the rarest multi-character pieces (the learner lists them last) until `vocab_size`
  tokens remain; reserved tokens and single characters (with or without ##) always stay."""
  excess = len(tokens) - vocab_size
  if excess <= 0:
    return tokens
  single = lambda t: len(t[2:] if t.startswith("##") else t) == 1
  drop = set()
  for i in range(len(tokens) - 1, num_reserved - 1, -1):
    if len(drop) == excess:
      break
    if not single(tokens[i]):
      drop.add(i)
  if len(drop) < excess:
    raise UsageError(f"--vocab_size={vocab_size} is too small for the {num_reserved} reserved "
                     f"tokens and the corpus's characters; raise it or lower --max_unique_chars")
  logging.info("learner returned %d tokens; dropped the %d rarest pieces", len(tokens), excess)
  return [t for i, t in enumerate(tokens) if i not in drop]


FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string("input_file", None, "Text files: comma-separated paths or globs (.gz ok).")
  flags.DEFINE_string("output_file", None, "Where to write the vocab (one token per line).")
  flags.DEFINE_integer("vocab_size", 30522, "Most tokens in the vocab, reserved ones included.")
  flags.DEFINE_bool("do_lower_case", True, "Lower-case and strip accents (an uncased vocab).")
  flags.DEFINE_integer("num_unused", 99, "Number of [unusedN] tokens after [PAD] (99 gives "
                       "[UNK]=100 [CLS]=101 [SEP]=102 [MASK]=103 as BERT-Base).")
  flags.DEFINE_integer("max_lines", 0, "Read at most this many lines (0 = all).")
  flags.DEFINE_float("sample_rate", 1.0, "Fraction of lines counted (seeded random choice).")
  flags.DEFINE_integer("random_seed", 12345, "Seed of the line sampling.")
  flags.DEFINE_integer("max_unique_words", 2_000_000,
                       "Bound on distinct words held while counting (the rarest are pruned).")
  flags.DEFINE_integer("max_token_length", 50, "Longest learned piece, in characters.")
  flags.DEFINE_integer("max_unique_chars", 1000, "Alphabet size: the most frequent characters.")
  flags.DEFINE_integer("num_iterations", 4, "Rounds of the WordPiece learner.")
  flags.DEFINE_integer("min_count", 10, "Lowest piece-frequency threshold the learner may use.")
  flags.DEFINE_integer("log_every_lines", 200_000, "Progress log interval, in lines read.")


def main(argv):
  if len(argv) > 1:
    raise UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS.output_file:
    raise UsageError("--output_file is required")
  build_vocab(FLAGS.input_file, FLAGS.output_file, vocab_size=FLAGS.vocab_size,
              do_lower_case=FLAGS.do_lower_case, num_unused=FLAGS.num_unused,
              max_lines=FLAGS.max_lines, sample_rate=FLAGS.sample_rate, seed=FLAGS.random_seed,
              max_unique_words=FLAGS.max_unique_words, max_token_length=FLAGS.max_token_length,
              max_unique_chars=FLAGS.max_unique_chars, num_iterations=FLAGS.num_iterations,
              min_count=FLAGS.min_count, log_every_lines=FLAGS.log_every_lines)


def run():
  """Console entry point `bert-build-vocab`."""
  define_flags()
  run_main(main)


if __name__ == "__main__":
  run()
