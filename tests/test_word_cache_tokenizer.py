"""The TensorFlow-free tokenizer of create_pretraining_data: the original's ids, token for token."""

import json
import os
import subprocess
import sys

import pytest

from bert_tf.text import tokenization
from bert_tf.text import word_cache_tokenizer
from bert_tf.errors import UsageError

DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
VOCAB = os.path.join(DATA_DIR, "vocab", "bert-base-uncased-vocab.txt")

# Lines where a per-word shortcut could go wrong: control and format characters inside ASCII and
# non-ASCII words, Unicode spaces, line separators, accents, final sigma, CJK next to Latin,
# ligatures, invalid bytes, over-long words, empty input.
TRICKY = [
    "", "   ", "Hello,world!!  (x)", "ab\x01cd e\x7ff\tg\rh", "caf\u00e9 CAF\u00c9 cafe\u0301",
    "a\u00a0b\u2028c\u2029d\u3000e\u200bf\ufeffg", "\u039f\u0394\u039f\u03a3. \u03a3\u0391 "
    "\u0391\u03a3\u0301 \u03a3", "\u4e2d\u6587abc\u5b57 \ud55c\uad6d\uc5b4", "\ufb01ne \u2026 "
    "\uff21\uff22 x\u00b2", "a\ufffdb", "x" * 201 + " y" + "\u00e9" * 200, "\u0130stanbul \u1e9e",
    b"caf\xc3\xa9\xff!", "a\ud800b caf\u00e9", "[CLS] [MASK] ##ing un##able", "1,000.50$ -- e-mail",
]


def _reference(name):
  with open(os.path.join(DATA_DIR, "google_reference", name), encoding="utf-8") as f:
    return [json.loads(line) for line in f]


@pytest.mark.parametrize("name,lower", [("tokens_uncased.jsonl", True),
                                        ("tokens_cased.jsonl", False)])
def test_matches_google_reference(name, lower):
  rows = _reference(name)
  tok = word_cache_tokenizer.CachedFullTokenizer(VOCAB, do_lower_case=lower)
  texts = [r["text"] for r in rows]
  ids = tok.tokenize_batch_ids(texts)
  tokens = tok.tokenize_batch(texts)
  bad = [(r["file"], r["line"]) for r, i, t in zip(rows, ids, tokens)
         if i != r["ids"] or t != r["tokens"]]
  assert len(rows) > 2000 and not bad, f"{len(bad)} lines differ, first {bad[:5]}"


@pytest.mark.parametrize("lower,files", [
    (True, ["austen.txt", "mobydick.txt", "chinese_novels.txt", "unicode_stress.txt"]),
    (False, ["mobydick.txt", "chinese_novels.txt", "unicode_stress.txt"])])
def test_same_ids_as_tensorflow_tokenizer_on_bundled_corpora(lower, files):
  fast = word_cache_tokenizer.CachedFullTokenizer(VOCAB, do_lower_case=lower)
  graph = tokenization.FullTokenizer(VOCAB, do_lower_case=lower)
  for name in files:
    with open(os.path.join(DATA_DIR, "corpus", name), encoding="utf-8") as f:
      lines = f.read().split("\n")
    want = graph.tokenize_batch_ids(lines)
    got = fast.tokenize_batch_ids(lines)
    bad = [k for k in range(len(lines)) if got[k] != want[k]]
    assert not bad, f"{name}: {len(bad)} lines differ, e.g. {lines[bad[0]]!r}"


@pytest.mark.parametrize("lower", [True, False])
def test_same_tokens_as_tensorflow_tokenizer_on_edge_cases(lower):
  fast = word_cache_tokenizer.CachedFullTokenizer(VOCAB, do_lower_case=lower)
  graph = tokenization.FullTokenizer(VOCAB, do_lower_case=lower)
  want = graph.tokenize_batch(TRICKY)
  assert fast.tokenize_batch(TRICKY) == want
  assert fast.tokenize_batch(TRICKY) == want  # second pass: every word from the cache
  assert fast.tokenize("Unaffable caf\u00e9!") == graph.tokenize("Unaffable caf\u00e9!")
  with pytest.raises(ValueError):
    fast.tokenize(17)


def test_bounded_cache_gives_the_same_ids():
  with open(os.path.join(DATA_DIR, "corpus", "sample_text.txt"), encoding="utf-8") as f:
    lines = f.read().split("\n")
  unbounded = word_cache_tokenizer.CachedFullTokenizer(VOCAB)
  small = word_cache_tokenizer.CachedFullTokenizer(VOCAB, max_cached_words=3)
  assert small.tokenize_batch_ids(lines) == unbounded.tokenize_batch_ids(lines)
  assert len(small._cache) <= 3 < len(unbounded._cache)


def test_wordpiece_rules(tmp_path):
  path = tmp_path / "vocab.txt"
  path.write_text("[UNK]\nun\nuna\n##ff\n##able\n##a\n##b\nx\n\u00e9\n##\u00e9\n", encoding="utf-8")
  tok = word_cache_tokenizer.CachedFullTokenizer(str(path), do_lower_case=False)
  assert tok.tokenize("unaffable unab x unq") == ["una", "##ff", "##able", "una", "##b", "x", "[UNK]"]
  assert tok.tokenize("\u00e9" * 200) == ["\u00e9"] + ["##\u00e9"] * 199  # characters, not bytes
  assert tok.tokenize("\u00e9" * 201 + " x") == ["[UNK]", "x"]


def test_vocab_without_unk_fails_only_when_unk_is_needed(tmp_path):
  path = tmp_path / "nounk.txt"
  path.write_text("[PAD]\nhello\n", encoding="utf-8")
  tok = word_cache_tokenizer.CachedFullTokenizer(str(path))
  assert tok.tokenize_batch_ids(["Hello"]) == [[1]]
  with pytest.raises(UsageError, match=r"nounk\.txt has no \[UNK\]"):
    tok.tokenize_batch_ids(["hello zzz"])
  with pytest.raises(UsageError, match="nope.txt"):
    word_cache_tokenizer.CachedFullTokenizer(str(tmp_path / "nope.txt"))


def test_create_pretraining_data_never_imports_tensorflow(tmp_path):
  """The offline job's start-up: the tokenizer and the record writer run without TensorFlow, and
  workers are then forked (the pytest process has TensorFlow loaded, so other tests cover the
  spawned workers); forked workers write the same bytes as the job in one process."""
  corpus = os.path.join(DATA_DIR, "corpus", "mobydick_12ch.txt")
  outs = [tmp_path / "one.tfrecord", tmp_path / "forked.tfrecord"]
  code = (
      "import sys\n"
      "from bert_tf.pretraining_data import job as pretraining_job\n"
      f"for out, workers in (({str(outs[0])!r}, 1), ({str(outs[1])!r}, 2)):\n"
      f"  pretraining_job.create_pretraining_data(input_file={corpus!r}, output_file=out, "
      f"vocab_file={VOCAB!r}, dupe_factor=1, num_workers=workers, shard_size_mb=0.02, gzip=True)\n"
      "print(pretraining_job._start_method(), 'tensorflow' in sys.modules, "
      "'tensorflow_text' in sys.modules)\n")
  env = dict(os.environ, PYTHONPATH=os.path.dirname(DATA_DIR))
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().splitlines()[-1] == "fork False False"
  assert outs[0].stat().st_size > 0 and outs[0].read_bytes() == outs[1].read_bytes()
