"""The classical baseline for an SST-2-layout dataset: TF-IDF + logistic regression, in numpy.

Word unigrams and bigrams (lower-cased; kept when in at least --min_df training sentences),
sublinear TF, smoothed IDF, L2-normalised rows; binary logistic regression with L2 penalty
(scikit-learn's defaults: C=1 on the summed log-loss), fitted by full-batch gradient descent to
convergence. No tuning on dev. Prints dev accuracy and the majority-class accuracy.

Usage:
  python benchmarks/tfidf_baseline.py --data_dir=data/sentiment [--train_rows=3000]
"""

import collections
import os
import re
import time

import numpy as np
from absl import app, flags

flags.DEFINE_string("data_dir", "data/sentiment", "train.tsv and dev.tsv (sentence<TAB>label).")
flags.DEFINE_integer("train_rows", None, "Use only the first N training rows.")
flags.DEFINE_integer("min_df", 2, "Keep n-grams seen in at least this many training sentences.")
flags.DEFINE_float("C", 1.0, "Inverse L2 strength, as scikit-learn's LogisticRegression.")
FLAGS = flags.FLAGS


def read_tsv(path, limit=None):
  with open(path, encoding="utf-8") as f:
    rows = [line.rstrip("\n").split("\t") for line in f][1:]
  rows = rows[:limit] if limit else rows
  return [r[0] for r in rows], np.array([int(r[1]) for r in rows])


def ngrams(text):
  words = re.findall(r"\w+", text.lower())
  return set(words) | {a + " " + b for a, b in zip(words, words[1:])}


def tfidf(texts, vocab, idf):
  x = np.zeros((len(texts), len(vocab)), np.float32)
  for i, text in enumerate(texts):
    words = re.findall(r"\w+", text.lower())
    counts = collections.Counter(words + [a + " " + b for a, b in zip(words, words[1:])])
    for gram, n in counts.items():
      j = vocab.get(gram)
      if j is not None:
        x[i, j] = (1.0 + np.log(n)) * idf[j]
  norms = np.linalg.norm(x, axis=1, keepdims=True)
  return x / np.maximum(norms, 1e-12)


def fit_logistic(x, y, C, steps=3000):
  """argmin_w,b sum(logloss) + ||w||^2 / (2C), by gradient descent with momentum."""
  x = np.asarray(x, np.float64)  # once, not an upcast copy per step
  n, d = x.shape
  w, b = np.zeros(d), 0.0
  vw, vb = np.zeros(d), 0.0
  # Lipschitz bound of the gradient: rows have norm 1, so sum-loss curvature <= n/4 (+ 1/C).
  lr = 1.0 / (n / 4.0 + 1.0 / C)
  for _ in range(steps):
    p = 1.0 / (1.0 + np.exp(-(x @ w + b)))
    gw = x.T @ (p - y) + w / C
    gb = float(np.sum(p - y))
    vw = 0.9 * vw - lr * gw
    vb = 0.9 * vb - lr * gb
    w, b = w + vw, b + vb
  return w, b


def main(argv):
  del argv
  start = time.time()
  train_x, train_y = read_tsv(os.path.join(FLAGS.data_dir, "train.tsv"), FLAGS.train_rows)
  dev_x, dev_y = read_tsv(os.path.join(FLAGS.data_dir, "dev.tsv"))
  df = collections.Counter(g for t in train_x for g in ngrams(t))
  grams = sorted(g for g, c in df.items() if c >= FLAGS.min_df)
  vocab = {g: i for i, g in enumerate(grams)}
  idf = np.array([np.log((1 + len(train_x)) / (1 + df[g])) + 1 for g in grams], np.float32)
  w, b = fit_logistic(tfidf(train_x, vocab, idf), train_y.astype(np.float64), FLAGS.C)
  predictions = (tfidf(dev_x, vocab, idf) @ w + b) > 0
  accuracy = float(np.mean(predictions == dev_y))
  majority = float(np.mean(dev_y == np.bincount(train_y).argmax()))
  print(f"{len(train_x)} training rows, {len(grams)} n-grams; dev {len(dev_y)} rows")
  print(f"TF-IDF + logistic regression dev accuracy: {accuracy:.4f}")
  print(f"majority class dev accuracy:               {majority:.4f}")
  print(f"wall time {time.time() - start:.1f} s")


if __name__ == "__main__":
  app.run(main)
