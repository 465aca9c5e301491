"""Classification pipeline: pair packing, datasets, fine-tuning, result files, export, the CLI."""

import itertools
import os

import numpy as np
import pytest
import tensorflow as tf

from bert_tf import classification as cls


def _original_truncate(tokens_a, tokens_b, max_length):
  """google-research/bert's `_truncate_seq_pair`, reimplemented as a reference loop."""
  a, b = list(tokens_a), list(tokens_b)
  while len(a) + len(b) > max_length:
    if len(a) > len(b):
      a.pop()
    else:
      b.pop()
  return a, b


def test_truncated_pair_lengths_match_the_original_loop():
  cases = list(itertools.product(range(0, 13), range(0, 13)))
  len_a = tf.constant([c[0] for c in cases])
  len_b = tf.constant([c[1] for c in cases])
  for budget in range(1, 12):
    got_a, got_b = (t.numpy() for t in cls.truncated_pair_lengths(len_a, len_b, budget))
    for i, (la, lb) in enumerate(cases):
      a, b = _original_truncate(range(la), range(lb), budget)
      assert (got_a[i], got_b[i]) == (len(a), len(b)), (la, lb, budget)


def test_pack_inputs_pairs_and_singles():
  ids_a = tf.ragged.constant([[5, 6, 7, 8, 9, 10], [5]])
  ids_b = tf.ragged.constant([[20, 21], [20, 21, 22, 23, 24, 25, 26]])
  packed = cls.pack_inputs(ids_a, ids_b, max_seq_length=8, cls_id=101, sep_id=102)
  # row 0: budget 5, b (2) is short -> a keeps 3; row 1: a keeps 1, b keeps 4.
  assert packed["input_ids"].numpy().tolist() == [[101, 5, 6, 7, 102, 20, 21, 102],
                                                  [101, 5, 102, 20, 21, 22, 23, 102]]
  assert packed["segment_ids"].numpy().tolist() == [[0, 0, 0, 0, 0, 1, 1, 1],
                                                    [0, 0, 0, 1, 1, 1, 1, 1]]
  assert packed["input_mask"].numpy().tolist() == [[1] * 8, [1] * 8]
  single = cls.pack_inputs(tf.ragged.constant([[5, 6, 7, 8, 9, 10, 11], [5, 6]]), None, 6, 101, 102)
  assert single["input_ids"].numpy().tolist() == [[101, 5, 6, 7, 8, 102], [101, 5, 6, 102, 0, 0]]
  assert single["input_mask"].numpy().tolist() == [[1] * 6, [1, 1, 1, 1, 0, 0]]
  assert single["segment_ids"].numpy().tolist() == [[0] * 6] * 2
  assert single["input_ids"].dtype == tf.int32


def test_result_files_are_written_as_the_original(tmp_path):
  path = str(tmp_path / "eval_results.txt")
  cls.write_eval_results(path, {"eval_loss": 0.5, "global_step": 12, "eval_accuracy": 0.75})
  assert open(path).read() == "eval_accuracy = 0.75\neval_loss = 0.5\nglobal_step = 12\n"
  assert cls.read_eval_results(path)["global_step"] == 12
  tsv = str(tmp_path / "test_results.tsv")
  cls.write_test_results(tsv, np.array([[0.25, 0.75], [1.0, 0.0]], np.float32))
  assert open(tsv).read() == "0.25\t0.75\n1.0\t0.0\n"
  assert sorted(os.listdir(tmp_path)) == ["eval_results.txt", "test_results.tsv"]  # no temp files


# ---------------------------------------------------------------------------------------------
# Tokenization in tf.data = FullTokenizer + the original's convert_single_example
# ---------------------------------------------------------------------------------------------

VOCAB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "vocab",
                     "bert-base-uncased-vocab.txt")


def _original_features(tokenizer, tokens_a, tokens_b, max_seq_length):
  """google-research/bert's convert_single_example (ids, mask, segments), on FullTokenizer tokens."""
  if tokens_b:
    tokens_a, tokens_b = _original_truncate(tokens_a, tokens_b, max_seq_length - 3)
  else:
    tokens_a = tokens_a[:max_seq_length - 2]
  tokens = ["[CLS]"] + tokens_a + ["[SEP]"]
  segments = [0] * len(tokens)
  if tokens_b:
    tokens += tokens_b + ["[SEP]"]
    segments += [1] * (len(tokens_b) + 1)
  ids = tokenizer.convert_tokens_to_ids(tokens)
  pad = max_seq_length - len(ids)
  return ids + [0] * pad, [1] * len(ids) + [0] * pad, segments + [0] * pad


@pytest.fixture(scope="module")
def full_tokenizer():
  from bert_tf.tokenization import FullTokenizer
  return FullTokenizer(VOCAB, do_lower_case=True)


def test_dataset_features_match_the_original_conversion(data_dir, full_tokenizer):
  from bert_tf.classifier_data import InputExample
  rows = [line.rstrip("\n").split("\t") for line in
          open(os.path.join(data_dir, "sentiment", "dev.tsv"), encoding="utf-8")][1:41]
  examples = [InputExample(f"dev-{i}", rows[i][0], rows[i + 1][0] if i % 3 else None, rows[i][1])
              for i in range(39)]
  examples.append(InputExample("x", "Naïve CAFÉ déjà-vu 東京!", "Überraschung… ok", "1"))
  encoder = cls.load_text_encoder(VOCAB, True, max_seq_length=24)
  tokenizer = full_tokenizer
  singles = [e for e in examples if e.text_b is None]
  pairs = [e for e in examples if e.text_b is not None]
  texts = [e.text_a for e in examples] + [e.text_b or "" for e in examples]
  tokens = dict(zip(texts, tokenizer.tokenize_batch(texts)))  # one batched call: fast
  for group, use_b in ((singles, False), (pairs, True)):
    ds = cls.inference_dataset(group, encoder, use_b, batch_size=7)
    got = {k: np.concatenate([b[k].numpy() for b in ds]) for k in
           ("input_ids", "input_mask", "segment_ids", "example_id")}
    assert got["example_id"].tolist() == list(range(len(group))) + [-1] * (-len(group) % 7)
    for i, e in enumerate(group):
      ids, mask, segments = _original_features(
          tokenizer, tokens[e.text_a], tokens[e.text_b] if use_b else None, 24)
      assert got["input_ids"][i].tolist() == ids, e
      assert got["input_mask"][i].tolist() == mask
      assert got["segment_ids"][i].tolist() == segments
