"""The WordPiece vocab builder: layout, size bound, casing, CJK, sampling, bad input."""

import gzip
import os
import shutil
import subprocess
import sys

import pytest

from bert_tf.text import tokenization

from bert_tf.text import vocab
from bert_tf.errors import UsageError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(REPO_ROOT, "data", "corpus")


def _lines(path, limit=None):
  with open(path, encoding="utf-8") as f:
    lines = [line.strip() for line in f if line.strip()]
  return lines[:limit]


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
  """First 250 lines of Moby-Dick as plain text, and Chinese lines gzipped: a comma list."""
  root = tmp_path_factory.mktemp("corpus")
  english = root / "moby.txt"
  english.write_text("\n".join(_lines(os.path.join(CORPUS, "mobydick_12ch.txt"), 250)) + "\n",
                     encoding="utf-8")
  chinese = root / "zh.txt.gz"
  with gzip.open(chinese, "wt", encoding="utf-8") as f:
    f.write("\n".join(_lines(os.path.join(CORPUS, "chinese_novels.txt"), 20)) + "\n")
  return [str(english), str(chinese)]


@pytest.fixture(scope="module")
def uncased_vocab(small_corpus, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("vocab") / "vocab.txt")
  tokens = vocab.build_vocab(",".join(small_corpus), out, vocab_size=1200, do_lower_case=True,
                             num_unused=5, min_count=2)
  return out, tokens


def test_reserved_layout_matches_bert_base_with_default_unused():
  reserved = vocab.reserved_tokens(99)
  ids = {t: i for i, t in enumerate(reserved)}
  assert (ids["[PAD]"], ids["[unused0]"], ids["[unused98]"]) == (0, 1, 99)
  assert (ids["[UNK]"], ids["[CLS]"], ids["[SEP]"], ids["[MASK]"]) == (100, 101, 102, 103)


def test_built_vocab_layout_and_size(uncased_vocab):
  path, tokens = uncased_vocab
  with open(path, encoding="utf-8") as f:
    written = f.read().split("\n")
  assert written[-1] == "" and written[:-1] == tokens
  assert tokens[:10] == ["[PAD]", "[unused0]", "[unused1]", "[unused2]", "[unused3]",
                         "[unused4]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
  assert 300 < len(tokens) <= 1200
  assert len(set(tokens)) == len(tokens)
  learned = tokens[10:]
  assert any(t.startswith("##") and len(t) > 3 for t in learned)  # real continuation pieces
  assert all(t == t.lower() for t in learned)  # uncased
  assert not [t for t in learned if len(t.lstrip("#")) > 1 and tokenization.ut.is_cjk(ord(t[-1]))]
  assert "中" in learned  # CJK characters are single-character tokens


def test_full_tokenizer_with_built_vocab_has_few_unknowns(uncased_vocab, small_corpus):
  path, _ = uncased_vocab
  tok = tokenization.FullTokenizer(path, do_lower_case=True)
  lines = _lines(small_corpus[0])
  ids = tok.tokenize_batch_ids(lines)
  total = sum(len(x) for x in ids)
  unknown = sum(x.count(tok.unk_id) for x in ids)
  assert total > 3000 and unknown / total < 0.01
  assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 6, 7, 8, 9)
  words = sum(len(w) for w in tok.basic_tokenize_batch(lines))
  assert total < 1.6 * words  # frequent words are whole pieces, not spelled out


def test_cased_vocab_keeps_capitals(small_corpus):
  tokens = vocab.build_vocab([small_corpus[0]], None, vocab_size=400, do_lower_case=False,
                             num_unused=0, min_count=2)
  assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
  assert any(t != t.lower() for t in tokens[5:])
  assert len(tokens) <= 400


def test_size_bound_drops_rare_pieces_not_characters(small_corpus):
  tokens = vocab.build_vocab([small_corpus[0]], None, vocab_size=150, do_lower_case=True,
                             num_unused=0, min_count=1, num_iterations=2)
  assert len(tokens) <= 150
  text = " ".join(_lines(small_corpus[0])).lower()
  chars = {c for c in text if c.isalpha() and c.isascii()}
  assert chars <= set(tokens)


def test_counting_is_streamed_sampled_and_bounded(small_corpus):
  lines = _lines(small_corpus[0])
  basic = tokenization.BasicTokenizer(True)
  first_50 = vocab.count_words([small_corpus[0]], max_lines=50)
  assert first_50.num_words == sum(len(w) for w in basic.tokenize_batch(lines[:50]))

  half = vocab.count_words([small_corpus[0]], sample_rate=0.5, seed=3)
  again = vocab.count_words([small_corpus[0]], sample_rate=0.5, seed=3)
  everything = vocab.count_words([small_corpus[0]])
  assert half.counts == again.counts
  assert 0.3 * everything.num_words < half.num_words < 0.7 * everything.num_words

  bounded = vocab.count_words([small_corpus[0]], max_unique_words=100)
  assert len(bounded.counts) <= 100 and bounded.prune_floor >= 1
  assert bounded.counts[b"the"] == everything.counts[b"the"]  # frequent words stay exact


def test_bad_input_is_a_usage_error(tmp_path, small_corpus):
  with pytest.raises(UsageError, match="--input_file is required"):
    vocab.build_vocab(None, None, vocab_size=500)
  with pytest.raises(UsageError, match="--input_file: no file matches"):
    vocab.build_vocab(str(tmp_path / "missing*.txt"), None, vocab_size=500)
  with pytest.raises(UsageError, match="--vocab_size=50"):
    vocab.build_vocab(small_corpus[0], None, vocab_size=50)
  with pytest.raises(UsageError, match="--sample_rate"):
    vocab.build_vocab(small_corpus[0], None, vocab_size=500, sample_rate=0.0)
  empty = tmp_path / "empty.txt"
  empty.write_text("\n  \n", encoding="utf-8")
  with pytest.raises(UsageError, match="no words in .*empty.txt"):
    vocab.build_vocab(str(empty), None, vocab_size=500)


def test_cli_reports_bad_flag_on_one_line(tmp_path):
  out = tmp_path / "vocab.txt"
  cmd = [sys.executable, "-m", "bert_tf.text.vocab", f"--input_file={tmp_path}/nothing*.txt",
         f"--output_file={out}"]
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith("error: --input_file: no file matches")
  assert not out.exists()
