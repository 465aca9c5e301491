"""FullTokenizer and BertTokenizerLayer against google-research/bert's own output, plus the API."""

import json
import logging as std_logging
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from bert_tf.text import tokenization
from bert_tf.errors import UsageError

VOCAB = "vocab/bert-base-uncased-vocab.txt"


def _vocab(data_dir):
  return os.path.join(data_dir, VOCAB)


def _reference(data_dir, name):
  with open(os.path.join(data_dir, "google_reference", name), encoding="utf-8") as f:
    return [json.loads(line) for line in f]


DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")


@pytest.fixture(scope="module")
def uncased():
  return tokenization.FullTokenizer(_vocab(DATA_DIR), do_lower_case=True)


def _write_vocab(tmp_path, tokens, name="vocab.txt"):
  path = tmp_path / name
  path.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
  return str(path)


def _mismatches(rows, tokens, ids):
  """The first differing lines as a readable message ('' when everything agrees)."""
  bad = [(r, t, i) for r, t, i in zip(rows, tokens, ids) if t != r["tokens"] or i != r["ids"]]
  lines = [f"{len(bad)} of {len(rows)} lines differ"]
  for r, t, i in bad[:5]:
    lines.append(f"{r['file']}:{r['line']} {r['text']!r}\n  want {r['tokens']} {r['ids']}\n"
                 f"  got  {t} {i}")
  return "\n".join(lines) if bad else ""


# ---------------------------------------------------------------------------------------------
# Token-for-token agreement with the original on every reference line.


@pytest.mark.parametrize("name,lower", [("tokens_uncased.jsonl", True),
                                        ("tokens_cased.jsonl", False)])
def test_full_tokenizer_matches_google_reference(data_dir, name, lower):
  rows = _reference(data_dir, name)
  tok = tokenization.FullTokenizer(_vocab(data_dir), do_lower_case=lower)
  texts = [r["text"] for r in rows]
  tokens = tok.tokenize_batch(texts)
  ids = tok.tokenize_batch_ids(texts)
  assert len(rows) > 2000
  problem = _mismatches(rows, tokens, ids)
  assert not problem, problem


@pytest.mark.parametrize("name,lower", [("tokens_uncased.jsonl", True),
                                        ("tokens_cased.jsonl", False)])
def test_layer_matches_google_reference(data_dir, name, lower):
  rows = _reference(data_dir, name)
  layer = tokenization.BertTokenizerLayer(_vocab(data_dir), do_lower_case=lower)
  ids = layer(tf.constant([r["text"] for r in rows]))
  assert isinstance(ids, tf.RaggedTensor) and ids.dtype == tf.int32
  ids = ids.to_list()
  tokens = [r["tokens"] for r in rows]  # ids are compared; tokens are the reference's own
  problem = _mismatches(rows, tokens, ids)
  assert not problem, problem


def test_single_text_and_bytes(uncased):
  assert uncased.tokenize("Unaffable café!") == ["una", "##ffa", "##ble", "cafe", "!"]
  text = "Unaffable café!"
  assert uncased.tokenize(text.encode("utf-8")) == uncased.tokenize(text)
  assert uncased.tokenize(b"caf\xc3\xa9\xff!") == ["cafe", "!"]  # invalid bytes dropped
  assert uncased.tokenize("a\ud800b café") == ["[UNK]", "cafe"]  # lone surrogate: as original
  assert uncased.tokenize("") == [] and uncased.tokenize_batch_ids([]) == []
  with pytest.raises(ValueError):
    uncased.tokenize(17)


# ---------------------------------------------------------------------------------------------
# The places where tensorflow-text's own normaliser differs from the original, checked by hand.


def test_normalisation_follows_original_not_nfkc(uncased):
  words = uncased.basic_tokenize_batch([
      "Wait… ﬁne ＡＢ x²",  # NFKC would give "...", "fi", "ab", "x2"
      "ΟΔΟΣ. ΣΑ ΑΣ\u0301",  # final sigma as str.lower, also before a combining mark
      "a\ufffdb c\x07d e\u200bf\u00a0g\u2028h",  # U+FFFD/control/format dropped, spaces split
      "中文字 한국",  # CJK ideographs isolated; Hangul decomposed by NFD (not split)
  ])
  assert words[0] == ["wait", "…", "ﬁne", "ＡＢ".lower(), "x²"]
  assert words[1] == ["οδος", ".", "σα", "ας"]
  assert words[2] == ["ab", "cd", "ef", "g", "h"]
  assert words[3] == ["中", "文", "字", "\u1112\u1161\u11ab\u1100\u116e\u11a8"]


def test_word_length_limit_counts_characters_not_bytes(tmp_path):
  path = _write_vocab(tmp_path, ["[PAD]", "[UNK]", "é", "##é", "a", "##a"])
  tok = tokenization.FullTokenizer(path, do_lower_case=False)
  assert tok.tokenize("é" * 200) == ["é"] + ["##é"] * 199  # 400 bytes, 200 characters
  assert tok.tokenize("é" * 201 + " a") == ["[UNK]", "a"]
  assert tok.tokenize("a" * 201) == ["[UNK]"]


def test_wordpiece_greedy_longest_match_and_unknown_words(tmp_path):
  path = _write_vocab(tmp_path, ["[UNK]", "un", "una", "##ff", "##able", "##a", "##b", "x"])
  tok = tokenization.FullTokenizer(path, do_lower_case=True)
  assert tok.tokenize("unaffable") == ["una", "##ff", "##able"]
  assert tok.tokenize("unab x unq") == ["una", "##b", "x", "[UNK]"]


# ---------------------------------------------------------------------------------------------
# Vocabulary, conversions and special ids.


def test_special_ids_come_from_the_vocab(uncased):
  assert (uncased.pad_id, uncased.unk_id, uncased.cls_id, uncased.sep_id, uncased.mask_id) == (
      0, 100, 101, 102, 103)
  assert uncased.vocab_size == 30522 and len(uncased.vocab) == 30522


def test_special_ids_follow_a_different_layout(tmp_path):
  path = _write_vocab(tmp_path, ["[CLS]", "[SEP]", "[UNK]", "[PAD]", "hello"])
  tok = tokenization.FullTokenizer(path, do_lower_case=True)
  assert (tok.cls_id, tok.sep_id, tok.unk_id, tok.pad_id) == (0, 1, 2, 3)
  with pytest.raises(UsageError, match=r"vocab\.txt has no \[MASK\]"):
    tok.mask_id


def test_convert_tokens_and_ids(uncased):
  tokens = uncased.tokenize("The quick brown fox.")
  ids = uncased.convert_tokens_to_ids(tokens)
  assert ids == [1996, 4248, 2829, 4419, 1012]
  assert uncased.convert_ids_to_tokens(ids) == tokens
  assert tokenization.convert_tokens_to_ids(uncased.vocab, ["[CLS]"]) == [101]
  assert tokenization.convert_ids_to_tokens(uncased.inv_vocab, [102]) == ["[SEP]"]
  with pytest.raises(KeyError, match="no-such-token"):
    uncased.convert_tokens_to_ids(["no-such-token"])


def test_load_vocab_keeps_original_line_semantics(tmp_path):
  path = tmp_path / "v.txt"
  path.write_bytes(b"[PAD]\n  [UNK] \r\nhello\n\nhello\nworld")  # no final newline
  vocab = tokenization.load_vocab(str(path))
  assert list(vocab.items()) == [("[PAD]", 0), ("[UNK]", 1), ("hello", 4), ("", 3), ("world", 5)]
  tok = tokenization.FullTokenizer(str(path), do_lower_case=True)
  assert tok.tokenize_batch_ids(["hello world"]) == [[4, 5]]  # duplicate: the last line's id
  assert tok.vocab_size == 6


def test_missing_or_broken_vocab_is_a_usage_error(tmp_path):
  missing = str(tmp_path / "nope.txt")
  with pytest.raises(UsageError, match="nope.txt"):
    tokenization.FullTokenizer(missing)
  bad = tmp_path / "bad.txt"
  bad.write_bytes(b"[UNK]\nok\n\xff\xfe\n")
  with pytest.raises(UsageError, match=r"bad\.txt, line 3"):
    tokenization.load_vocab(str(bad))


def test_vocab_without_unk(tmp_path):
  path = _write_vocab(tmp_path, ["[PAD]", "hello"], name="nounk.txt")
  tok = tokenization.FullTokenizer(path, do_lower_case=True)
  assert tok.tokenize("hello zzz") == ["hello", "[UNK]"]  # as the original: the string [UNK]
  assert tok.tokenize_batch_ids(["hello"]) == [[1]]
  with pytest.raises(UsageError, match=r"nounk\.txt has no \[UNK\]"):
    tok.tokenize_batch_ids(["hello zzz"])
  with pytest.raises(UsageError, match=r"nounk\.txt has no \[UNK\]"):
    tokenization.BertTokenizerLayer(path)


# ---------------------------------------------------------------------------------------------
# Case checks.


def _warnings(caplog):
  return [r.getMessage() for r in caplog.records if r.levelno >= std_logging.WARNING]


def test_warns_when_do_lower_case_contradicts_vocab(tmp_path, data_dir, caplog):
  caplog.set_level(std_logging.WARNING)
  tokenization.FullTokenizer(_vocab(data_dir), do_lower_case=False)
  assert any("do_lower_case=False" in m and "no capital letter" in m for m in _warnings(caplog))

  caplog.clear()
  words = [f"Word{i}" for i in range(50)] + [f"word{i}" for i in range(50)] + ["[UNK]"]
  cased = _write_vocab(tmp_path, words, name="cased.txt")
  tokenization.FullTokenizer(cased, do_lower_case=True)
  assert any("do_lower_case=True" in m and "cased.txt" in m for m in _warnings(caplog))

  caplog.clear()
  tokenization.FullTokenizer(cased, do_lower_case=False)
  tokenization.FullTokenizer(_vocab(data_dir), do_lower_case=True)
  assert not _warnings(caplog)


def test_validate_case_matches_checkpoint():
  tokenization.validate_case_matches_checkpoint(True, "x/uncased_L-12_H-768_A-12/bert_model.ckpt")
  tokenization.validate_case_matches_checkpoint(False, "/some/own/run/ckpt-100")
  with pytest.raises(UsageError, match="--do_lower_case=True"):
    tokenization.validate_case_matches_checkpoint(
        False, "m/uncased_L-12_H-768_A-12/bert_model.ckpt")


# ---------------------------------------------------------------------------------------------
# In-graph use.


def test_layer_in_tf_data(data_dir, uncased):
  texts = ["Hello, world!", "", "ΟΔΟΣ 中文"]
  layer = tokenization.BertTokenizerLayer(_vocab(data_dir))
  ds = tf.data.Dataset.from_tensor_slices(texts).batch(2).map(layer)
  got = [row for batch in ds for row in batch.to_list()]
  assert got == uncased.tokenize_batch_ids(texts)
  assert layer(texts).to_list() == got  # a Python list works too
  again = tokenization.BertTokenizerLayer.from_config(layer.get_config())
  assert again(tf.constant(texts)).to_list() == got


def test_layer_saved_model_round_trip_in_fresh_process(tmp_path, data_dir, uncased):
  layer = tokenization.BertTokenizerLayer(_vocab(data_dir), do_lower_case=True)

  class Export(tf.Module):

    def __init__(self):
      super().__init__()
      self.tokenizer = layer

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(self, texts):
      ids = self.tokenizer(texts)
      return {"ids": ids.to_tensor(default_value=-1)}

  export_dir = str(tmp_path / "saved")
  tf.saved_model.save(Export(), export_dir)
  texts = ["Hello… ΟΔΟΣ!", "x" * 250, "中文 café"]
  code = (
      "import json, sys\n"
      "import tensorflow as tf, tensorflow_text  # registers the WordPiece ops\n"
      f"m = tf.saved_model.load({export_dir!r})\n"
      f"ids = m.serve(tf.constant({texts!r}))['ids'].numpy().tolist()\n"
      "print(json.dumps([[i for i in row if i >= 0] for row in ids]))\n")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert json.loads(out.stdout.strip().splitlines()[-1]) == uncased.tokenize_batch_ids(texts)
