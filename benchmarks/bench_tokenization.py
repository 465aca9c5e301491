"""Benchmark: FullTokenizer.tokenize_batch_ids on a corpus, against references measured in this run.

Cases (every line of --corpus, after one warm-up call):
  ours_batch    bert_tf FullTokenizer.tokenize_batch_ids(lines)  (TensorFlow graph, as in tf.data)
  ours_cached   bert_tf CachedFullTokenizer.tokenize_batch_ids(lines), a fresh one (empty word
                cache): plain Python, what create_pretraining_data uses
  ours_single   bert_tf FullTokenizer.tokenize(line), one call per line (first --single_lines)
  tf_text       tensorflow_text.BertTokenizer(lower_case=True) on the same batches: C++ with
                tensorflow-text's own normaliser, which does NOT match the original (reference
                for the cost of the exact normalisation)
  original      google-research/bert's FullTokenizer, tokenize + convert_tokens_to_ids per line,
                only with --original_tokenization=/path/to/its/tokenization.py (not bundled)

TensorFlow is limited to --threads threads (default 1: one core). When the original is measured,
its ids are compared with ours line by line.

  python benchmarks/bench_tokenization.py \
      --original_tokenization=/tmp/google_bert/tokenization.py
"""

import importlib.util
import os
import sys
import time

from absl import app
from absl import flags

import report  # benchmarks/report.py

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

flags.DEFINE_string("corpus", os.path.join(REPO, "data/corpus/austen.txt"), "Text, one line each.")
flags.DEFINE_string("vocab_file", os.path.join(REPO, "data/vocab/bert-base-uncased-vocab.txt"),
                    "WordPiece vocab.")
flags.DEFINE_bool("do_lower_case", True, "Uncased tokenization.")
flags.DEFINE_string("original_tokenization", None,
                    "Path of google-research/bert's tokenization.py to measure it in this run.")
flags.DEFINE_integer("single_lines", 2000, "Lines for the one-call-per-line case.")
flags.DEFINE_integer("threads", 1, "TensorFlow intra/inter-op threads.")
FLAGS = flags.FLAGS


def _timed(fn):
  """(result, wall seconds, process CPU seconds) of fn()."""
  wall, cpu = time.perf_counter(), time.process_time()
  result = fn()
  return result, time.perf_counter() - wall, time.process_time() - cpu


def _load_original(path):
  """Imports the original tokenization.py with `tensorflow` resolved to the v1 compat layer."""
  import tensorflow.compat.v1 as v1
  saved = sys.modules.get("tensorflow")
  sys.modules["tensorflow"] = v1
  try:
    spec = importlib.util.spec_from_file_location("original_tokenization", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
  finally:
    sys.modules["tensorflow"] = saved
  return module


def main(argv):
  del argv
  import tensorflow as tf
  tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
  tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
  import tensorflow_text as tf_text
  from bert_tf.text import tokenization

  with open(FLAGS.corpus, encoding="utf-8") as f:
    lines = f.read().split("\n")
  n = len(lines)
  print(f"corpus {FLAGS.corpus}: {n} lines, {sum(map(len, lines)) / 1e6:.1f} M characters, "
        f"TensorFlow threads {FLAGS.threads}")
  rows = []

  def build():
    tok = tokenization.FullTokenizer(FLAGS.vocab_file, FLAGS.do_lower_case)
    tok.tokenize_batch_ids(lines[:100])  # the first call builds tables, WordPiece model, trace
    return tok

  tok, build_wall, build_cpu = _timed(build)
  ours, wall, cpu = _timed(lambda: tok.tokenize_batch_ids(lines))
  rows.append(("ours_batch", n, wall, cpu))
  from bert_tf.text import word_cache_tokenizer
  cached_ids, wall, cpu = _timed(lambda: word_cache_tokenizer.CachedFullTokenizer(
      FLAGS.vocab_file, FLAGS.do_lower_case).tokenize_batch_ids(lines))
  rows.append(("ours_cached", n, wall, cpu))
  differ_cached = sum(a != b for a, b in zip(ours, cached_ids))
  single = lines[:FLAGS.single_lines]
  _, wall, cpu = _timed(lambda: [tok.tokenize(line) for line in single])
  rows.append(("ours_single", len(single), wall, cpu))

  vocab = [t for t in tokenization.load_vocab(FLAGS.vocab_file)]
  reference = tf_text.BertTokenizer(
      tf.lookup.StaticVocabularyTable(tf.lookup.KeyValueTensorInitializer(
          vocab, tf.range(len(vocab), dtype=tf.int64)), num_oov_buckets=1),
      lower_case=FLAGS.do_lower_case)
  fn = tf.function(lambda t: reference.tokenize(t).merge_dims(1, 2),
                   input_signature=[tf.TensorSpec([None], tf.string)])
  fn(tf.constant(lines[:100]))

  def run_reference():
    out = []
    for start in range(0, n, 2048):
      rt = fn(tf.constant(lines[start:start + 2048]))
      out.extend(rt.to_list())
    return out

  theirs, wall, cpu = _timed(run_reference)
  rows.append(("tf_text", n, wall, cpu))
  differ_tf_text = sum(a != b for a, b in zip(ours, theirs))

  differ_original = None
  if FLAGS.original_tokenization:
    original = _load_original(FLAGS.original_tokenization)
    otok = original.FullTokenizer(FLAGS.vocab_file, FLAGS.do_lower_case)
    ids, wall, cpu = _timed(
        lambda: [otok.convert_tokens_to_ids(otok.tokenize(line)) for line in lines])
    rows.append(("original", n, wall, cpu))
    differ_original = sum(a != b for a, b in zip(ours, ids))

  print(f"FullTokenizer construction + first call (tables, WordPiece model, tracing): "
        f"{build_wall:.2f}s wall, {build_cpu:.2f}s cpu")
  base = rows[0][1] / rows[0][2]
  header = ("case", "lines", "wall s", "cpu s", "lines/s", "ours_batch x")
  print(f"{header[0]:<12} {header[1]:>7} {header[2]:>8} {header[3]:>8} {header[4]:>10} "
        f"{header[5]:>13}")
  for name, count, wall, cpu in rows:
    rate = count / wall
    print(f"{name:<12} {count:>7} {wall:>8.2f} {cpu:>8.2f} {rate:>10.0f} {base / rate:>13.2f}")
  print(f"lines where tf_text's ids differ from ours: {differ_tf_text} of {n}")
  print(f"lines where ours_cached's ids differ from ours_batch: {differ_cached} of {n}")
  if differ_original is not None:
    print(f"lines where the original's ids differ from ours: {differ_original} of {n}")
  report.emit({"lines": n, "threads": FLAGS.threads,
               "cases": {name: {"lines": count, "wall_s": wall, "cpu_s": cpu, "lines_per_s": count / wall}
                         for name, count, wall, cpu in rows},
               "lines_differing_from_tf_text": differ_tf_text,
               "lines_differing_cached_from_batch": differ_cached,
               "lines_differing_from_original": differ_original})


if __name__ == "__main__":
  app.run(main)
