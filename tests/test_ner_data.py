"""Token-classification data: CoNLL / JSONL reading, tag schemes, alignment, windows, merging."""

import json
import os

import numpy as np
import pytest

from bert_tf.errors import UsageError
from bert_tf.finetuning import ner_data
DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
VOCAB = os.path.join(DATA_DIR, "vocab", "bert-base-uncased-vocab.txt")


def write(tmp_path, name, text):
  path = tmp_path / name
  path.write_text(text, encoding="utf-8")
  return str(path)


# ----------------------------------------------------------------------------------------------
# Reading


def test_conll_four_columns_docstart_and_blank_lines(tmp_path):
  path = write(tmp_path, "train.txt",
               "-DOCSTART- -X- -X- O\n\n"
               "EU NNP B-NP I-ORG\nrejects VBZ B-VP O\n\n\n"
               "Peter NNP B-NP I-PER\r\nBlackburn NNP I-NP I-PER\n"
               "-DOCSTART- -X- O O\n"
               "Paris B-LOC\n")
  sentences = ner_data.read_conll(path)
  assert [s.words for s in sentences] == [["EU", "rejects"], ["Peter", "Blackburn"], ["Paris"]]
  assert [s.tags for s in sentences] == [["I-ORG", "O"], ["I-PER", "I-PER"], ["B-LOC"]]
  assert sentences[1].lines == [7, 8] and sentences[2].where() == f"{path}:10"


def test_conll_test_file_without_tags(tmp_path):
  path = write(tmp_path, "test.txt", "Obama\nspoke\n\nhi\n")
  sentences = ner_data.read_conll(path, require_tags=False)
  assert [s.words for s in sentences] == [["Obama", "spoke"], ["hi"]]
  assert all(s.tags is None for s in sentences)


@pytest.mark.parametrize("text, message", [
    ("EU B-ORG\nrejects\n", r"train.txt:2: 1 column\(s\) but the file's first word line has a tag"),
    ("EU\nrejects O\n", r"train.txt:1: expected a word and its tag .* one column \('EU'\)"),
    ("EU B-ORG\nrejects S-PER\n", r"train.txt:2: tag 'S-PER' is outside the BIO/IOB1 scheme"),
    ("EU PER\n", r"train.txt:1: tag 'PER' is outside"),
    ("", r"train.txt: no sentences"),
    ("\n\n-DOCSTART- -X- O O\n\n", r"train.txt: no sentences .*-DOCSTART-"),
])
def test_conll_bad_input_is_one_line_error_naming_file_and_line(tmp_path, text, message):
  path = write(tmp_path, "train.txt", text)
  with pytest.raises(UsageError, match=message) as info:
    ner_data.read_conll(path)
  assert "\n" not in str(info.value)


def test_conll_not_utf8(tmp_path):
  path = tmp_path / "train.txt"
  path.write_bytes(b"caf\xe9 O\n")
  with pytest.raises(UsageError, match="not UTF-8"):
    ner_data.read_conll(str(path))


def test_jsonl_reading_and_errors(tmp_path):
  good = write(tmp_path, "dev.jsonl", json.dumps({"tokens": ["New", "York"],
                                                   "tags": ["B-LOC", "I-LOC"]}) + "\n\n" +
               json.dumps({"tokens": ["hi"], "tags": ["O"]}) + "\n")
  sentences = ner_data.read_jsonl(good)
  assert [s.words for s in sentences] == [["New", "York"], ["hi"]]
  assert sentences[1].lines == [3]
  cases = [
      ("{\"tokens\": [\"a\"], \"tags\": [\"O\", \"O\"]}", r"x.jsonl:1: 1 tokens but 2 tags"),
      ("[1, 2]", r"x.jsonl:1: expected an object"),
      ("{\"tokens\": [\"a b\"], \"tags\": [\"O\"]}", r"x.jsonl:1: token 'a b'"),
      ("{\"tokens\": [\"a\"]}", r"x.jsonl:1: \"tags\" is missing"),
      ("{\"tokens\": [\"a\"], \"tags\": [\"X-1\"]}", r"x.jsonl:1: tag 'X-1' is outside"),
      ("{oops", r"x.jsonl:1: not a JSON object"),
  ]
  for text, message in cases:
    with pytest.raises(UsageError, match=message):
      ner_data.read_jsonl(write(tmp_path, "x.jsonl", text + "\n"))


def test_split_files_txt_or_jsonl_not_both(tmp_path):
  write(tmp_path, "train.txt", "a O\n")
  assert ner_data.read_split(str(tmp_path), "train")[0].words == ["a"]
  with pytest.raises(UsageError, match="no dev.txt or dev.jsonl"):
    ner_data.read_split(str(tmp_path), "dev")
  write(tmp_path, "train.jsonl", "{\"tokens\": [\"a\"], \"tags\": [\"O\"]}\n")
  with pytest.raises(UsageError, match="both"):
    ner_data.read_split(str(tmp_path), "train")


def test_bundled_data_reads():
  for split in ner_data.SPLITS:
    sentences = ner_data.read_split(os.path.join(DATA_DIR, "ner"), split)
    assert len(sentences) >= 300
    assert ner_data.detect_scheme(sentences) == "bio"


# ----------------------------------------------------------------------------------------------
# Tag schemes


def sentence(tags):
  return ner_data.Sentence([f"w{i}" for i in range(len(tags))], tags, "f.txt",
                           list(range(1, len(tags) + 1)))


def test_detect_scheme():
  iob1 = [sentence(["I-PER", "I-PER", "B-PER", "O"]), sentence(["O", "I-LOC"])]
  bio = [sentence(["B-PER", "I-PER", "B-PER", "O"]), sentence(["O", "B-LOC"])]
  assert ner_data.detect_scheme(iob1) == "iob1"
  assert ner_data.detect_scheme(bio) == "bio"
  # Both kinds of starts: ill-formed BIO, read as conlleval does.
  assert ner_data.detect_scheme([sentence(["B-PER", "O", "I-LOC"])]) == "bio"
  assert ner_data.detect_scheme(iob1, "bio") == "bio"
  with pytest.raises(UsageError, match="--tag_scheme"):
    ner_data.detect_scheme(iob1, "bioes")


def test_iob1_to_bio_and_back():
  iob1 = ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG"]
  bio = ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG"]
  assert ner_data.to_bio(iob1) == bio
  assert ner_data.from_bio(bio, "iob1") == iob1
  assert ner_data.from_bio(bio, "bio") == bio


def test_labels_from_training_and_unseen_tags():
  train = [sentence(["O", "I-PER", "B-LOC"]), sentence(["B-PER"])]
  labels = ner_data.labels_from_training(train)
  assert labels == ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
  dev = [sentence(["O", "B-MISC", "I-MISC"])]
  assert ner_data.unseen_tags(dev, labels) == {"B-MISC": "f.txt:2", "I-MISC": "f.txt:3"}


def test_labels_file_round_trip_and_bad_file(tmp_path):
  path = str(tmp_path / "labels.json")
  ner_data.save_labels(path, ["O", "B-X", "I-X"], "iob1", max_seq_length=16)
  assert ner_data.load_labels(path) == (["O", "B-X", "I-X"], "iob1")
  (tmp_path / "bad.json").write_text("{\"labels\": [\"B-X\"]}")
  with pytest.raises(UsageError, match="bad.json"):
    ner_data.load_labels(str(tmp_path / "bad.json"))


# ----------------------------------------------------------------------------------------------
# Alignment, windows, merging


class PieceTokenizer:
  """A stand-in tokenizer: word "aN" has N sub-tokens (ids 1000 + word index * 10 + k)."""
  unk_id, cls_id, sep_id = 100, 101, 102

  def tokenize_batch_ids(self, words):
    return [[1000 + 10 * int(w[1:]) + k for k in range(int(w[0:1] == "a" and w[-1]))]
            if w.startswith("a") else [] for w in words]


def test_first_subtoken_alignment_with_the_real_tokenizer():
  from bert_tf.text.tokenization import FullTokenizer
  tokenizer = FullTokenizer(VOCAB, do_lower_case=True)
  s = ner_data.Sentence(["Unaffable", "\x01", "Paris", "!"], ["B-PER", "O", "B-LOC", "O"],
                        "f.txt", [1, 2, 3, 4])
  pieces = ner_data.word_pieces(tokenizer, [s])
  assert pieces[0][0] == tokenizer.convert_tokens_to_ids(["una", "##ffa", "##ble"])
  assert pieces[0][1] == [tokenizer.unk_id]  # tokenizes to nothing: one [UNK]
  labels = {"O": 0, "B-PER": 1, "I-PER": 2, "B-LOC": 3}
  f = ner_data.build_features([s], pieces, labels, 16, 8, tokenizer.cls_id, tokenizer.sep_id)
  assert f.num_windows == 1
  ids = [tokenizer.cls_id] + [i for w in pieces[0] for i in w] + [tokenizer.sep_id]
  assert f.input_ids[0, :len(ids)].tolist() == ids and f.input_ids[0, len(ids):].sum() == 0
  assert f.input_mask[0].tolist() == [1] * len(ids) + [0] * (16 - len(ids))
  # [CLS] una ##ffa ##ble [UNK] paris ! [SEP]: labels on positions 1, 4, 5, 6 only.
  assert f.label_ids[0, :8].tolist() == [-1, 1, -1, -1, 0, 3, 0, -1]
  assert (f.label_ids[0, 8:] == -1).all()


def test_window_spans():
  assert ner_data.window_spans(3, 4, 2) == [(0, 3)]
  assert ner_data.window_spans(10, 4, 2) == [(0, 4), (2, 6), (4, 8), (6, 10)]
  assert ner_data.window_spans(9, 4, 3) == [(0, 4), (3, 7), (6, 9)]


def test_long_sentence_windows_and_max_context_merge():
  # Eight words of one sub-token each, windows of 4 sub-tokens, stride 2:
  # windows cover words 0-3, 2-5, 4-7.
  words = [f"a{i}1" for i in range(8)]
  s = ner_data.Sentence(words, ["O"] * 8, "f.txt", list(range(1, 9)))
  tok = PieceTokenizer()
  pieces = ner_data.word_pieces(tok, [s])
  f = ner_data.build_features([s], pieces, {"O": 0}, 6, 2, tok.cls_id, tok.sep_id)
  assert f.num_windows == 3 and f.num_split == 1
  assert f.window_sentence.tolist() == [0, 0, 0]
  # Context = min(words to the left, words to the right) inside the window. Word 2: window 0
  # gives min(2, 1) = 1, window 1 min(0, 3) = 0 -> window 0. Word 3: min(3, 0) = 0 vs
  # min(1, 2) = 1 -> window 1. Word 5: min(3, 0) vs min(1, 2) -> window 2.
  assert f.word_window[0].tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
  assert f.word_position[0].tolist() == [1, 2, 3, 2, 3, 2, 3, 4]
  # Merging a prediction of one distinct id per (window, position) returns each word once.
  predicted = np.arange(3 * 6).reshape(3, 6)
  merged = ner_data.merge_predictions(f, predicted)
  assert merged[0].tolist() == [predicted[w, p] for w, p in zip(f.word_window[0],
                                                                 f.word_position[0])]
  assert len(merged[0]) == 8


def test_windows_label_every_word_and_merge_returns_gold():
  # Words of 1-3 sub-tokens in a sentence far longer than a window: every word keeps its label.
  words = [f"a{i}{1 + i % 3}" for i in range(20)]
  tags = ["B-X" if i % 4 == 0 else "I-X" if i % 4 == 1 else "O" for i in range(20)]
  s = ner_data.Sentence(words, tags, "f.txt", list(range(1, 21)))
  tok = PieceTokenizer()
  pieces = ner_data.word_pieces(tok, [s, s])
  labels = {"O": 0, "B-X": 1, "I-X": 2}
  f = ner_data.build_features([s, s], pieces, labels, 8, 3, tok.cls_id, tok.sep_id)
  assert f.num_windows > 2 * 6 and f.num_split == 2
  assert (f.input_mask.sum(axis=1) <= 8).all()
  merged = ner_data.merge_predictions(f, f.label_ids)
  assert [m.tolist() for m in merged] == [[labels[t] for t in tags]] * 2


def test_bad_doc_stride():
  s = ner_data.Sentence(["a01"], ["O"], "f.txt", [1])
  pieces = ner_data.word_pieces(PieceTokenizer(), [s])
  for stride in (0, 7):
    with pytest.raises(UsageError, match="--doc_stride must be between 1 and"):
      ner_data.build_features([s], pieces, {"O": 0}, 8, stride, 101, 102)
