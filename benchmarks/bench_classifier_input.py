"""Classifier input: tokenization inside tf.data versus the original's per-example Python pre-pass.

Both produce the same features for the same sentence pairs (`input_ids`, `input_mask`,
`segment_ids` of `[CLS] a [SEP] b [SEP]`, longest-first truncation):
  * reference: the original's `convert_single_example` loop, one example at a time in Python,
    each text tokenized by `FullTokenizer.tokenize` (as google-research/bert's run_classifier.py);
  * batched Python: one `FullTokenizer.tokenize_batch` call for all texts, then the same Python
    packing loop (the fastest pre-pass a Python script can do with this tokenizer);
  * tf.data: `classification.inference_dataset` (in-graph tokenizer, batched, parallel map).
Prints examples/s (median of --repeats) and each path's speed relative to the reference.

  python benchmarks/bench_classifier_input.py --examples=8000 --max_seq_length=128
"""

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _pack_python(tokenizer, tokens_a, tokens_b, max_seq_length):
  """The original's truncation and packing for one example, from WordPiece tokens."""
  a, b = list(tokens_a), list(tokens_b)
  while len(a) + len(b) > max_seq_length - 3:
    (a if len(a) > len(b) else b).pop()
  tokens = ["[CLS]"] + a + ["[SEP]"] + b + ["[SEP]"]
  segments = [0] * (len(a) + 2) + [1] * (len(b) + 1)
  ids = tokenizer.convert_tokens_to_ids(tokens)
  pad = max_seq_length - len(ids)
  return ids + [0] * pad, [1] * len(ids) + [0] * pad, segments + [0] * pad


def _pairs(path, n):
  with open(path, encoding="utf-8") as f:
    sentences = [line.split("\t")[0] for line in f][1:]
  sentences = (sentences * (n // len(sentences) + 2))
  return [(sentences[i], sentences[i + 1]) for i in range(n)]


def _rate(fn, n, repeats):
  rates = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    rates.append(n / (time.perf_counter() - start))
  return statistics.median(rates)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--examples", type=int, default=8000)
  parser.add_argument("--max_seq_length", type=int, default=128)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--reference_examples", type=int, default=300,
                      help="examples timed for the slow per-example reference")
  args = parser.parse_args()

  from bert_tf.finetuning import classification
  from bert_tf.finetuning.classifier_data import InputExample
  from bert_tf.text.tokenization import FullTokenizer
  repo = os.path.dirname(HERE)
  vocab = os.path.join(repo, "data", "vocab", "bert-base-uncased-vocab.txt")
  pairs = _pairs(os.path.join(repo, "data", "sentiment", "train.tsv"), args.examples)
  tokenizer = FullTokenizer(vocab, do_lower_case=True)
  encoder = classification.load_text_encoder(vocab, True, args.max_seq_length)
  examples = [InputExample(str(i), a, b, None) for i, (a, b) in enumerate(pairs)]

  def reference():
    for a, b in pairs[:args.reference_examples]:
      _pack_python(tokenizer, tokenizer.tokenize(a), tokenizer.tokenize(b), args.max_seq_length)

  def batched_python():
    tokens = tokenizer.tokenize_batch([t for pair in pairs for t in pair])
    for i in range(len(pairs)):
      _pack_python(tokenizer, tokens[2 * i], tokens[2 * i + 1], args.max_seq_length)

  dataset = classification.inference_dataset(examples, encoder, True, args.batch)

  def tf_data():  # the dataset is built once, as a run builds it; each pass tokenizes again
    for _ in dataset:
      pass

  reference()  # warm-up: tracing, caches
  batched_python()
  tf_data()
  rows = [("original per-example Python loop (reference)",
           _rate(reference, args.reference_examples, args.repeats)),
          ("batched FullTokenizer + Python packing", _rate(batched_python, len(pairs), args.repeats)),
          ("tf.data with the in-graph tokenizer", _rate(tf_data, len(pairs), args.repeats))]
  reference_rate = rows[0][1]
  print(f"{args.examples} sentence pairs, max_seq_length {args.max_seq_length}, "
        f"median of {args.repeats}")
  print(f"{'path':<48} {'examples/s':>12} {'vs reference':>13}")
  for name, rate in rows:
    print(f"{name:<48} {rate:>12.0f} {rate / reference_rate:>12.1f}x")
  try:
    from report import emit
    emit({name: {"examples_per_second": rate, "ratio": rate / reference_rate} for name, rate in rows})
  except ImportError:
    pass


if __name__ == "__main__":
  main()
