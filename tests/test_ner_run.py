"""run_ner end to end on a slice of the bundled data with a tiny model: training, eval_results.txt,
test_predictions.txt, resume, the SavedModel in a fresh process, and one-line errors."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from bert_tf.errors import UsageError
from bert_tf.finetuning import ner_data, ner_metrics, tagging

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NER_DIR = os.path.join(REPO, "data", "ner")
VOCAB = os.path.join(REPO, "data", "vocab", "bert-base-uncased-vocab.txt")
TINY = {"vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 64, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 64, "type_vocab_size": 2,
        "initializer_range": 0.02}


def conll(sentences, with_tags=True):
  return "\n".join("".join(f"{w} {t}\n" if with_tags else f"{w}\n"
                           for w, t in zip(s.words, s.tags)) for s in sentences)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A short training run; dev is also the test set (with gold tags), to cross-check scores."""
  root = tmp_path_factory.mktemp("ner")
  data = root / "data"
  data.mkdir()
  train = ner_data.read_split(NER_DIR, "train")[:48]
  dev = ner_data.read_split(NER_DIR, "dev")[:24]
  (data / "train.txt").write_text(conll(train), encoding="utf-8")
  (data / "dev.txt").write_text(conll(dev), encoding="utf-8")
  (data / "test.txt").write_text(conll(dev), encoding="utf-8")
  config = root / "bert_config.json"
  config.write_text(json.dumps(TINY))
  opts = tagging.NerOptions(
      data_dir=str(data), vocab_file=VOCAB, output_dir=str(root / "out"),
      bert_config_file=str(config), max_seq_length=16, doc_stride=8, do_train=True,
      do_eval=True, do_predict=True, train_batch_size=8, eval_batch_size=16,
      predict_batch_size=16, learning_rate=2e-3, num_train_epochs=2.0, log_steps=10,
      export_dir=str(root / "export"))
  results = tagging.run_ner(opts)
  return dict(opts=opts, results=results, train=train, dev=dev, root=root)


def test_eval_results_are_conlleval_scores_of_the_written_predictions(run):
  out = run["opts"].output_dir
  on_disk = {}
  for line in open(os.path.join(out, "eval_results.txt"), encoding="utf-8"):
    key, value = line.rstrip("\n").split(" = ")
    on_disk[key] = float(value)
  for key in ("eval_precision", "eval_recall", "eval_f1", "eval_accuracy", "eval_loss",
              "global_step"):
    assert key in on_disk, key
  assert on_disk["global_step"] > 0 and np.isfinite(on_disk["eval_loss"])
  # Every gold type of dev has its F1, types unseen in the 48 training sentences included.
  gold_types = {e[0] for s in run["dev"] for e in ner_metrics.extract_entities(s.tags)}
  assert gold_types <= {k[len("eval_f1_"):] for k in on_disk if k.startswith("eval_f1_")}
  assert on_disk["eval_num_gold"] == sum(len(ner_metrics.extract_entities(s.tags))
                                         for s in run["dev"])
  # test.txt is dev: its predictions, scored again here, give the same figures.
  rows = open(os.path.join(out, "test_predictions.txt"), encoding="utf-8").read().split("\n\n")
  rows = [r.split("\n") for r in rows if r.strip()]
  assert len(rows) == len(run["dev"])
  gold, pred = [], []
  for sentence, lines in zip(run["dev"], rows):
    cols = [line.split(" ") for line in lines]
    assert [c[0] for c in cols] == sentence.words  # one line per word, order kept
    assert [c[1] for c in cols] == sentence.tags
    gold.append([c[1] for c in cols])
    pred.append([c[2] for c in cols])
  labels, _ = ner_data.load_labels(os.path.join(out, "labels.json"))
  assert {t for p in pred for t in p} <= set(labels)
  scores = ner_metrics.entity_scores(gold, pred)
  for key in ("precision", "recall", "f1", "accuracy"):
    assert on_disk[f"eval_{key}"] == pytest.approx(scores[key], abs=1e-6), key
  # The model learnt something: better token accuracy than at random over the labels.
  assert scores["accuracy"] > 0.5


def test_predict_only_on_words_without_tags_and_resume(run, tmp_path):
  opts = run["opts"]
  words_only = tmp_path / "data"
  words_only.mkdir()
  test = ner_data.read_split(NER_DIR, "test")[:5]
  (words_only / "test.txt").write_text(conll(test, with_tags=False), encoding="utf-8")
  again = tagging.NerOptions(**dict(vars(opts), data_dir=str(words_only), do_train=False,
                                    do_eval=False, export_dir=None,
                                    output_dir=opts.output_dir))
  tagging.run_ner(again)
  rows = [r for r in open(os.path.join(opts.output_dir, "test_predictions.txt"),
                          encoding="utf-8").read().split("\n\n") if r.strip()]
  assert [[line.split(" ")[0] for line in r.split("\n")] for r in rows] == [s.words for s in test]
  assert all(len(line.split(" ")) == 2 for r in rows for line in r.split("\n"))
  # Training again into the same output_dir resumes at the last step: nothing more to do.
  resumed = tagging.run_ner(tagging.NerOptions(**dict(vars(opts), do_predict=False,
                                                       export_dir=None)))
  assert resumed["global_step"] == run["results"]["global_step"]
  assert resumed["eval_f1"] == pytest.approx(run["results"]["eval_f1"])


LOAD_AND_TAG = r"""
import json, sys
import tensorflow as tf, tensorflow_text  # noqa: F401 (registers the WordPiece op)
fn = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
out = fn(text=tf.constant(json.loads(sys.argv[2])))
print(json.dumps({k: v.numpy().tolist() for k, v in out.items()},
                 default=lambda b: b.decode("utf-8")))
"""


def serve_in_fresh_process(export_dir, texts):
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
  done = subprocess.run([sys.executable, "-c", LOAD_AND_TAG, export_dir, json.dumps(texts)],
                        capture_output=True, text=True, env=env, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  out = json.loads(done.stdout.strip().splitlines()[-1])
  return {k: [[x.decode() if isinstance(x, bytes) else x for x in row] if isinstance(row, list)
              else row for row in v] for k, v in out.items()}


def python_spans(text, starts, ends, tags):
  """Entity spans from word tags with the Python conlleval reader, in characters."""
  return [{"start": starts[a], "end": ends[b], "type": kind, "text": text[starts[a]:ends[b]]}
          for kind, a, b in ner_metrics.extract_entities(tags)]


def test_export_in_a_fresh_process_matches_python_prediction(tmp_path):
  """A tagger with large random output weights (so tags vary) exported and served elsewhere:
  its words, tags and spans are those of the Python path (windows, merge, conlleval reader)."""
  import keras

  from bert_tf.finetuning import classification
  from bert_tf.finetuning.ner_export import export_tagger
  from bert_tf.text.tokenization import FullTokenizer
  labels = ["O", "B-PER", "I-PER", "B-geo-loc", "I-geo-loc"]
  keras.utils.set_random_seed(3)
  model = tagging.BertTokenClassifier(TINY, len(labels))
  kernel, bias = model.classifier.get_weights()
  model.classifier.set_weights([np.random.RandomState(0).normal(0, 3, kernel.shape)
                                .astype("float32"), bias])
  max_seq_length = 12
  export_dir = str(tmp_path / "export")
  export_tagger(export_dir, model, VOCAB, True, labels, max_seq_length)
  texts = ["Obama visited Paris, then New York!", "",
           "Crème brûlée in Zürich: " + " ".join(f"word{i}" for i in range(30)),
           "unaffable people of Montréal"]
  out = serve_in_fresh_process(export_dir, texts)
  tokenizer = FullTokenizer(VOCAB, do_lower_case=True)
  strategy = tf.distribute.get_strategy()
  predictor = classification.Predictor(model, strategy, is_regression=False)
  total_entities = 0
  for i, text in enumerate(texts):
    words = re.findall(r"\w+|[^\w\s]", text)
    n = len(words)
    starts, ends = out["word_start"][i][:n], out["word_end"][i][:n]
    assert [text[a:b] for a, b in zip(starts, ends)] == words  # character offsets
    assert all(s == -1 for s in out["word_start"][i][n:])
    tags = out["word_tag"][i][:n]
    spans = [{"start": out["entity_start"][i][j], "end": out["entity_end"][i][j],
              "type": out["entity_type"][i][j], "text": out["entity_text"][i][j]}
             for j in range(out["num_entities"][i])]
    assert spans == python_spans(text, starts, ends, tags)
    total_entities += len(spans)
    if not words:
      continue
    sentence = ner_data.Sentence(words, None, "t", [1] * n)
    pieces = ner_data.word_pieces(tokenizer, [sentence])
    if sum(map(len, pieces[0])) <= max_seq_length - 2:  # one window: the same model input
      features = ner_data.build_features([sentence], pieces, None, max_seq_length, 4,
                                         tokenizer.cls_id, tokenizer.sep_id)
      predicted, _ = tagging.predict_tags(predictor, features, labels, "bio", 4)
      assert predicted[0] == ner_data.to_bio(tags)
  assert total_entities >= 3  # the comparison covered real spans


def test_masked_token_loss_is_the_mean_over_labelled_positions():
  logits = tf.constant([[[2.0, 0.0], [0.0, 0.0], [5.0, -5.0]]])
  labels = tf.constant([[0, -1, 1]])
  expected = np.mean([np.log(1 + np.exp(-2.0)), np.log(1 + np.exp(10.0))])
  assert float(tagging.masked_token_loss(logits, labels)) == pytest.approx(expected, rel=1e-5)
  assert float(tagging.masked_token_loss(logits, tf.constant([[-1, -1, -1]]))) == 0.0


def test_most_frequent_tag_baseline():
  train = [ner_data.Sentence(["Paris", "is", "Paris"], ["B-LOC", "O", "B-LOC"], "t", [1, 2, 3]),
           ner_data.Sentence(["paris", "Hilton"], ["B-PER", "I-PER"], "t", [5, 6])]
  dev = [ner_data.Sentence(["PARIS", "Paris", "Hilton", "zzz"], None, "d", [1, 2, 3, 4])]
  # PARIS: lower-cased counts (LOC 2, PER 1); Paris: exact; Hilton: I-PER after LOC -> B-PER.
  assert tagging.most_frequent_tag_baseline(train, dev, "bio") == [
      ["B-LOC", "B-LOC", "B-PER", "O"]]


def test_bad_input_is_a_one_line_error_from_the_command(tmp_path):
  data = tmp_path / "data"
  data.mkdir()
  (data / "train.txt").write_text("EU B-ORG\nrejects O\n\nPeter S-PER\n", encoding="utf-8")
  config = tmp_path / "bert_config.json"
  config.write_text(json.dumps(TINY))
  done = subprocess.run(
      [sys.executable, os.path.join(REPO, "run_ner.py"), f"--data_dir={data}",
       f"--vocab_file={VOCAB}", f"--bert_config_file={config}", f"--output_dir={tmp_path / 'o'}",
       "--do_train", "--max_seq_length=16"], capture_output=True, text=True, timeout=120,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  assert done.returncode == 2
  last = done.stderr.strip().splitlines()[-1]
  assert last == (f"error: {data / 'train.txt'}:4: tag 'S-PER' is outside the BIO/IOB1 scheme "
                  "(O, B-<type> or I-<type>)")
  assert "Traceback" not in done.stderr


def test_bad_options(tmp_path):
  config = tmp_path / "bert_config.json"
  config.write_text(json.dumps(TINY))
  base = dict(data_dir=NER_DIR, vocab_file=VOCAB, output_dir=str(tmp_path / "o"), do_train=True,
              bert_config_file=str(config))
  with pytest.raises(UsageError, match="--doc_stride must be between 1 and"):
    tagging.run_ner(tagging.NerOptions(**base, max_seq_length=16, doc_stride=15))
  with pytest.raises(UsageError, match="--tag_scheme"):
    tagging.run_ner(tagging.NerOptions(**base, tag_scheme="bioes"))
  with pytest.raises(UsageError, match="labels.json"):
    tagging.run_ner(tagging.NerOptions(**dict(base, do_train=False, do_eval=True),
                                       init_checkpoint=str(tmp_path), max_seq_length=16))
