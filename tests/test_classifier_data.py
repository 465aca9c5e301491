"""Task processors on small files in each task's real layout, bad-input errors, and GLUE metrics."""

import json
import logging as std_logging
import os

import numpy as np
import pytest

from bert_tf.finetuning import classifier_data
from bert_tf.errors import UsageError


def _write(root, name, lines):
  path = os.path.join(str(root), name)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join("\t".join(cols) if isinstance(cols, (list, tuple)) else cols
                      for cols in lines) + "\n")
  return path


def _triples(examples):
  return [(e.text_a, e.text_b, e.label) for e in examples]


# ---------------------------------------------------------------------------------------------
# GLUE / XNLI processors, one small directory each in the task's real layout
# ---------------------------------------------------------------------------------------------


def test_cola_headerless_train_and_header_test(tmp_path):
  _write(tmp_path, "train.tsv", [["gj04", "1", "", "Our friends won't buy this analysis."],
                                 ["gj04", "0", "*", "They drank the pub."]])
  _write(tmp_path, "dev.tsv", [["gj04", "0", "*", "The more we study verbs."]])
  _write(tmp_path, "test.tsv", [["index", "sentence"], ["0", "Bill whistled past the house."]])
  p = classifier_data.get_processor("CoLA")
  assert _triples(p.examples(tmp_path, "train")) == [
      ("Our friends won't buy this analysis.", None, "1"), ("They drank the pub.", None, "0")]
  assert _triples(p.examples(tmp_path, "dev")) == [("The more we study verbs.", None, "0")]
  assert _triples(p.examples(tmp_path, "test")) == [("Bill whistled past the house.", None, None)]
  assert p.metric == "matthews" and not p.has_text_b


MNLI_TRAIN_HEADER = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse",
                     "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1",
                     "sentence2", "label1", "gold_label"]


def _mnli_row(i, a, b, labels):
  return [str(i), "31193", "31193n", "government", "( ( x ) )", "( y )", "(ROOT x)", "(ROOT y)",
          a, b] + labels


def test_mnli_matched_and_mismatched(tmp_path):
  dev_header = MNLI_TRAIN_HEADER[:10] + ["label1", "label2", "label3", "label4", "label5",
                                         "gold_label"]
  _write(tmp_path, "train.tsv", [MNLI_TRAIN_HEADER,
                                 _mnli_row(0, "Conceptually cream skimming.", "Product and geography.",
                                           ["neutral", "neutral"])])
  _write(tmp_path, "dev_matched.tsv", [dev_header, _mnli_row(
      0, "The new rights are nice.", "Everyone really likes them.", ["neutral"] * 4 + ["entailment",
                                                                                       "neutral"])])
  _write(tmp_path, "dev_mismatched.tsv", [dev_header, _mnli_row(
      0, "Your contribution helped.", "It did not help.", ["contradiction"] * 6)])
  _write(tmp_path, "test_matched.tsv", [MNLI_TRAIN_HEADER[:10],
                                        _mnli_row(0, "Hierbas, ans seco.", "Hierbas is a name.", [])])
  p = classifier_data.get_processor("mnli")
  assert _triples(p.examples(tmp_path, "train")) == [
      ("Conceptually cream skimming.", "Product and geography.", "neutral")]
  assert _triples(p.examples(tmp_path, "dev")) == [
      ("The new rights are nice.", "Everyone really likes them.", "neutral")]
  assert _triples(p.examples(tmp_path, "dev", "mismatched")) == [
      ("Your contribution helped.", "It did not help.", "contradiction")]
  assert _triples(p.examples(tmp_path, "test")) == [("Hierbas, ans seco.", "Hierbas is a name.", None)]
  assert p.optional_suffixes("dev") == ["mismatched"]
  assert p.get_labels() == ["contradiction", "entailment", "neutral"]


def test_mrpc(tmp_path):
  _write(tmp_path, "train.tsv", [["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
                                 ["1", "702876", "702977", "Amrozi accused his brother.",
                                  "Referring to him, Amrozi accused his brother."]])
  _write(tmp_path, "test.tsv", [["Index", "#1 ID", "#2 ID", "#1 String", "#2 String"],
                                ["0", "1089874", "1089925", "PCCW's chief will quit.",
                                 "The chief of PCCW will quit."]])
  p = classifier_data.get_processor("mrpc")
  assert _triples(p.examples(tmp_path, "train")) == [
      ("Amrozi accused his brother.", "Referring to him, Amrozi accused his brother.", "1")]
  assert _triples(p.examples(tmp_path, "test")) == [
      ("PCCW's chief will quit.", "The chief of PCCW will quit.", None)]
  assert p.metric == "f1_accuracy"


def test_xnli_reads_multinli_train_and_filters_dev_by_language(tmp_path):
  _write(tmp_path, "multinli/multinli.train.de.tsv", [
      ["premise", "hypo", "label"], ["Der Mann isst.", "Jemand isst.", "entailment"],
      ["Der Hund schläft.", "Der Hund rennt.", "contradictory"]])
  xnli_header = ["language", "gold_label", "sentence1_binary_parse", "sentence2_binary_parse",
                 "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "promptID",
                 "pairID", "genre", "label1", "label2", "label3", "label4", "label5",
                 "sentence1_tokenized", "sentence2_tokenized", "match"]
  def row(lang, label, a, b):
    return [lang, label, "", "", "", "", a, b, "1", "1", "facetoface", label, label, label, label,
            label, a, b, "True"]
  _write(tmp_path, "xnli.dev.tsv", [xnli_header, row("en", "neutral", "He came.", "He left."),
                                    row("de", "neutral", "Er kam.", "Er ging."),
                                    row("zh", "entailment", "他来了。", "他在。")])
  p = classifier_data.get_processor("xnli", xnli_language="de")
  assert _triples(p.examples(tmp_path, "train")) == [
      ("Der Mann isst.", "Jemand isst.", "entailment"),
      ("Der Hund schläft.", "Der Hund rennt.", "contradiction")]
  assert _triples(p.examples(tmp_path, "dev")) == [("Er kam.", "Er ging.", "neutral")]
  assert _triples(classifier_data.get_processor("xnli").examples(tmp_path, "dev")) == [
      ("他来了。", "他在。", "entailment")]  # the original's default language is zh


def test_sst2_glue_test_layout_and_bundled_layout(tmp_path, data_dir):
  _write(tmp_path, "train.tsv", [["sentence", "label"], ["hide new secretions ", "0"]])
  _write(tmp_path, "test.tsv", [["index", "sentence"], ["0", "uneasy mishmash of styles"]])
  p = classifier_data.get_processor("sst2")
  assert _triples(p.examples(tmp_path, "train")) == [("hide new secretions ", None, "0")]
  assert _triples(p.examples(tmp_path, "test")) == [("uneasy mishmash of styles", None, None)]
  bundled = p.examples(os.path.join(data_dir, "sentiment"), "test")  # header sentence, label
  assert bundled[0].text_a == "Witless but watchable." and bundled[0].label is None


@pytest.mark.parametrize("task,labels", [("qnli", ["entailment", "not_entailment"]),
                                         ("rte", ["entailment", "not_entailment"]),
                                         ("wnli", ["0", "1"])])
def test_index_pair_label_tasks(tmp_path, task, labels):
  header = ["index", "question", "sentence", "label"] if task == "qnli" else [
      "index", "sentence1", "sentence2", "label"]
  _write(tmp_path, "train.tsv", [header, ["0", "What came first?", "The egg.", labels[1]]])
  _write(tmp_path, "dev.tsv", [header, ["0", "Who?", "Nobody.", labels[0]]])
  _write(tmp_path, "test.tsv", [header[:3], ["0", "Where?", "Here."]])
  p = classifier_data.get_processor(task)
  assert _triples(p.examples(tmp_path, "train")) == [("What came first?", "The egg.", labels[1])]
  assert _triples(p.examples(tmp_path, "dev")) == [("Who?", "Nobody.", labels[0])]
  assert _triples(p.examples(tmp_path, "test")) == [("Where?", "Here.", None)]
  assert p.get_labels() == labels


def test_qqp_skips_and_counts_broken_rows(tmp_path, caplog):
  header = ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]
  _write(tmp_path, "train.tsv", [header, ["0", "1", "2", "How do I learn?", "How to learn?", "1"],
                                 ["1", "3", "4", "A question with a broken row"],
                                 ["2", "5", "6", "Is this empty?", "", "0"],
                                 ["3", "7", "8", "Why?", "Why not?", "0"]])
  _write(tmp_path, "test.tsv", [["id", "question1", "question2"], ["0", "Q one?", "Q two?"]])
  p = classifier_data.get_processor("qqp")
  caplog.set_level(std_logging.WARNING)
  assert _triples(p.examples(tmp_path, "train")) == [
      ("How do I learn?", "How to learn?", "1"), ("Why?", "Why not?", "0")]
  assert "skipped 2 malformed row(s)" in caplog.text
  assert _triples(p.examples(tmp_path, "test")) == [("Q one?", "Q two?", None)]


def test_stsb_regression_labels(tmp_path):
  header = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1",
            "sentence2", "score"]
  _write(tmp_path, "train.tsv", [header, ["0", "main-captions", "MSRvid", "2012test", "0001", "none",
                                          "none", "A plane is taking off.",
                                          "An air plane is taking off.", "5.000"]])
  _write(tmp_path, "dev.tsv", [header, ["0", "main-captions", "MSRvid", "2012test", "0000", "none",
                                        "none", "A man plays.", "A man sings.", "high"]])
  p = classifier_data.get_processor("sts-b")
  examples = p.examples(tmp_path, "train")
  assert _triples(examples) == [("A plane is taking off.", "An air plane is taking off.", "5.000")]
  assert p.is_regression and classifier_data.label_ids(p, examples).tolist() == [5.0]
  with pytest.raises(UsageError, match=r"dev.tsv:2: label 'high' is not a number"):
    p.examples(tmp_path, "dev")


# ---------------------------------------------------------------------------------------------
# Bad input: the error names the file and the line
# ---------------------------------------------------------------------------------------------


def test_wrong_number_of_fields_names_file_and_line(tmp_path):
  _write(tmp_path, "train.tsv", [["sentence", "label"], ["fine", "1"], ["an extra", "tab", "0"]])
  with pytest.raises(UsageError, match=r"train.tsv:3: expected 2 tab-separated fields, found 3"):
    classifier_data.get_processor("sst-2").examples(tmp_path, "train")


def test_unknown_label_and_empty_text(tmp_path):
  _write(tmp_path, "train.tsv", [["sentence", "label"], ["good", "1"], ["meh", "2"]])
  with pytest.raises(UsageError, match=r"train.tsv:3: label '2' is not one of"):
    classifier_data.get_processor("sst-2").examples(tmp_path, "train")
  _write(tmp_path, "dev.tsv", [["sentence", "label"], ["good", "1"], ["  ", "0"]])
  with pytest.raises(UsageError, match=r"dev.tsv:3: empty text in column 'sentence'"):
    classifier_data.get_processor("sst-2").examples(tmp_path, "dev")


def test_missing_file_and_missing_column(tmp_path):
  with pytest.raises(UsageError, match=r"dev_matched.tsv: file not found"):
    classifier_data.get_processor("mnli").examples(tmp_path, "dev")
  _write(tmp_path, "train.csv", ["review,stars", "nice,5"])
  p = classifier_data.get_processor("generic", text_a_column="text", label_column="stars")
  with pytest.raises(UsageError, match=r"train.csv:1: missing column 'text'"):
    p.discover_labels(str(tmp_path))
  with pytest.raises(UsageError, match="task_name"):
    classifier_data.get_processor("glue")


# ---------------------------------------------------------------------------------------------
# Generic processor
# ---------------------------------------------------------------------------------------------


def test_generic_csv_with_quotes_discovers_sorted_labels(tmp_path):
  _write(tmp_path, "train.csv", ['premise,hypothesis,y',
                                 '"A quoted, comma",Something,10',
                                 '"Two\nlines",Other,2', 'Plain,Third,2'])
  _write(tmp_path, "dev.csv", ['premise,hypothesis,y', 'Fine,Ok,10', 'Bad,Label,3'])
  p = classifier_data.get_processor("generic", text_a_column="premise", text_b_column="hypothesis",
                       label_column="y")
  assert p.discover_labels(str(tmp_path)) == ["2", "10"]  # numeric order, not "10" < "2"
  train = p.examples(str(tmp_path), "train")
  assert _triples(train) == [("A quoted, comma", "Something", "10"), ("Two\nlines", "Other", "2"),
                             ("Plain", "Third", "2")]
  assert classifier_data.label_ids(p, train).tolist() == [1, 0, 0]
  with pytest.raises(UsageError, match=r"dev.csv:3: label '3' is not one of"):
    p.examples(str(tmp_path), "dev")


def test_generic_files_with_a_byte_order_mark(tmp_path):
  # Spreadsheet exports start with U+FEFF; it must not become part of the first column's name.
  import gzip
  files = {"csv": (b"text,label\nGood,pos\nBad,neg\n", open),
           "tsv": (b"text\tlabel\nGood\tpos\nBad\tneg\n", open),
           "jsonl.gz": (b'{"text": "Good", "label": "pos"}\n{"text": "Bad", "label": "neg"}\n',
                        gzip.open)}
  p = classifier_data.get_processor("generic", text_a_column="text", label_column="label")
  for ext, (content, opener) in files.items():
    folder = tmp_path / ext
    folder.mkdir()
    with opener(folder / f"train.{ext}", "wb") as f:
      f.write(b"\xef\xbb\xbf" + content)
    assert p.discover_labels(str(folder)) == ["neg", "pos"], ext
    assert _triples(p.examples(str(folder), "train")) == [("Good", None, "pos"),
                                                         ("Bad", None, "neg")], ext


def test_generic_jsonl_and_label_file_roundtrip(tmp_path):
  with open(tmp_path / "train.jsonl", "w") as f:
    for text, label in [("great", "pos"), ("awful", "neg"), ("fine", "pos")]:
      f.write(json.dumps({"text": text, "label": label}) + "\n")
  with open(tmp_path / "test.jsonl", "w") as f:
    f.write(json.dumps({"text": "unlabeled"}) + "\n")
    f.write(json.dumps({"body": "no text key"}) + "\n")
  p = classifier_data.get_processor("generic", text_a_column="text")
  assert p.discover_labels(str(tmp_path)) == ["neg", "pos"]
  classifier_data.save_labels(str(tmp_path / "labels.json"), p)
  info = classifier_data.load_labels(str(tmp_path / "labels.json"))
  assert info == {"task_name": "generic", "labels": ["neg", "pos"], "is_regression": False,
                  "has_text_b": False}
  again = classifier_data.get_processor("generic", text_a_column="text", labels=info["labels"])
  assert _triples(again.examples(str(tmp_path), "train"))[1] == ("awful", None, "neg")
  with pytest.raises(UsageError, match=r"test.jsonl:2: missing column 'text'"):
    again.examples(str(tmp_path), "test")


def test_generic_single_label_is_rejected(tmp_path):
  _write(tmp_path, "train.tsv", [["sentence", "label"], ["a", "x"], ["b", "x"]])
  with pytest.raises(UsageError, match="single label"):
    classifier_data.get_processor("generic").discover_labels(str(tmp_path))


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def test_classification_metrics_against_hand_computed_values():
  labels = [1, 1, 1, 0, 0, 0, 1, 0]
  preds = [1, 1, 0, 0, 0, 1, 1, 1]
  # tp=3, fp=2, fn=1, tn=2
  assert classifier_data.accuracy(preds, labels) == pytest.approx(5 / 8)
  assert classifier_data.f1_score(preds, labels) == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
  mcc = (3 * 2 - 2 * 1) / np.sqrt((3 + 2) * (3 + 1) * (2 + 2) * (2 + 1))
  assert classifier_data.matthews_corrcoef(preds, labels) == pytest.approx(mcc)
  assert classifier_data.matthews_corrcoef([1, 1, 1], [0, 1, 1]) == 0.0  # constant predictions
  # Multi-class MCC, checked against the covariance formula on one-hot matrices.
  rng = np.random.default_rng(0)
  y, p = rng.integers(0, 3, 50), rng.integers(0, 3, 50)
  Y, P = np.eye(3)[y], np.eye(3)[p]
  cov = lambda a, b: np.sum((a - a.mean(0)) * (b - b.mean(0)))  # noqa: E731
  assert classifier_data.matthews_corrcoef(p, y) == pytest.approx(cov(P, Y) / np.sqrt(cov(P, P) * cov(Y, Y)))
  result = classifier_data.compute_metrics("f1_accuracy", preds, labels)
  assert set(result) == {"accuracy", "f1", "acc_and_f1"}


def test_correlations_with_ties():
  x = [1.0, 2.0, 2.0, 4.0, 5.0]
  y = [5.0, 6.0, 7.0, 7.0, 10.0]
  assert classifier_data.rankdata(x).tolist() == [1.0, 2.5, 2.5, 4.0, 5.0]
  assert classifier_data.pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])
  rx, ry = np.array([1, 2.5, 2.5, 4, 5]), np.array([1, 2, 3.5, 3.5, 5])
  assert classifier_data.spearman(x, y) == pytest.approx(np.corrcoef(rx, ry)[0, 1])
  assert classifier_data.spearman([3, 1, 2], [30, 10, 20]) == pytest.approx(1.0)
  result = classifier_data.compute_metrics("correlation", x, y)
  assert result["corr"] == pytest.approx((result["pearson"] + result["spearmanr"]) / 2)
