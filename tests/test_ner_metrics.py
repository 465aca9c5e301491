"""conlleval-exact entity scores, on cases computed by hand (BIO, IOB1, ill-formed sequences)."""

import pytest

from bert_tf.finetuning.ner_metrics import (entity_scores, eval_results, extract_entities,
                                            split_tag)


def test_split_tag_accepts_bio_and_rejects_other_schemes():
  assert split_tag("O") == ("O", "")
  assert split_tag("B-geo-loc") == ("B", "geo-loc")  # the type may contain '-'
  assert split_tag("I-PER") == ("I", "PER")
  for bad in ("PER", "S-PER", "E-LOC", "B-", "b-PER", "-PER", "o"):
    assert split_tag(bad) is None, bad


def test_entities_of_well_formed_bio():
  assert extract_entities(["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"]) == [
      ("PER", 0, 1), ("LOC", 3, 3), ("LOC", 4, 5)]


def test_ill_formed_i_without_b_starts_an_entity_as_conlleval_reads_it():
  # I- after O or at the sentence start opens an entity; I- of another type closes the previous one.
  assert extract_entities(["I-PER", "I-PER", "O", "I-LOC"]) == [("PER", 0, 1), ("LOC", 3, 3)]
  assert extract_entities(["B-PER", "I-LOC", "I-LOC"]) == [("PER", 0, 0), ("LOC", 1, 2)]


def test_iob1_b_separates_adjacent_entities_of_one_type():
  assert extract_entities(["I-PER", "I-PER", "B-PER", "O", "I-LOC"]) == [
      ("PER", 0, 1), ("PER", 2, 2), ("LOC", 4, 4)]


def test_scores_bio_one_right_one_wrong_type():
  gold = [["B-PER", "I-PER", "O", "B-LOC"]]
  pred = [["B-PER", "I-PER", "O", "B-ORG"]]
  s = entity_scores(gold, pred)
  # 2 gold (PER, LOC), 2 predicted (PER, ORG), 1 correct.
  assert (s["num_gold"], s["num_predicted"], s["num_correct"]) == (2, 2, 1)
  assert s["precision"] == pytest.approx(0.5) and s["recall"] == pytest.approx(0.5)
  assert s["f1"] == pytest.approx(0.5)
  assert s["accuracy"] == pytest.approx(3 / 4)
  assert s["per_type"]["PER"]["f1"] == pytest.approx(1.0)
  assert s["per_type"]["LOC"]["f1"] == 0.0 and s["per_type"]["LOC"]["num_gold"] == 1
  assert s["per_type"]["ORG"]["precision"] == 0.0 and s["per_type"]["ORG"]["num_predicted"] == 1


def test_scores_iob1_merged_entity_is_wrong():
  gold = [["I-PER", "I-PER", "B-PER", "O", "I-LOC"]]  # PER(0-1), PER(2), LOC(4)
  pred = [["I-PER", "I-PER", "I-PER", "O", "I-LOC"]]  # PER(0-2), LOC(4)
  s = entity_scores(gold, pred)
  assert (s["num_gold"], s["num_predicted"], s["num_correct"]) == (3, 2, 1)
  assert s["precision"] == pytest.approx(1 / 2)
  assert s["recall"] == pytest.approx(1 / 3)
  assert s["f1"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))  # 0.4
  assert s["accuracy"] == pytest.approx(4 / 5)


def test_ill_formed_prediction_matches_a_well_formed_gold_entity():
  # conlleval reads "O I-PER I-PER" as one PER entity: the same span and type as the gold one.
  s = entity_scores([["O", "B-PER", "I-PER"]], [["O", "I-PER", "I-PER"]])
  assert s["num_correct"] == 1 and s["f1"] == pytest.approx(1.0)
  # ... but token accuracy compares the tag strings: I-PER is not B-PER.
  assert s["accuracy"] == pytest.approx(2 / 3)


def test_partial_span_and_sentence_boundary():
  # A shorter predicted span is wrong; an entity never continues into the next sentence.
  gold = [["B-PER", "I-PER"], ["I-PER", "O"]]
  pred = [["B-PER", "O"], ["I-PER", "O"]]
  s = entity_scores(gold, pred)
  assert (s["num_gold"], s["num_predicted"], s["num_correct"]) == (2, 2, 1)
  assert s["f1"] == pytest.approx(0.5)


def test_no_predictions_scores_zero_not_an_error():
  s = entity_scores([["B-PER", "O"]], [["O", "O"]])
  assert (s["precision"], s["recall"], s["f1"]) == (0.0, 0.0, 0.0)
  assert s["accuracy"] == pytest.approx(0.5)


def test_eval_results_keys():
  s = entity_scores([["B-PER", "O", "B-geo-loc"]], [["B-PER", "O", "O"]])
  out = eval_results(s)
  for key in ("eval_precision", "eval_recall", "eval_f1", "eval_accuracy", "eval_f1_PER",
              "eval_f1_geo-loc"):
    assert key in out, key
  assert out["eval_f1_PER"] == pytest.approx(1.0) and out["eval_f1_geo-loc"] == 0.0
  assert out["eval_precision"] == pytest.approx(1.0) and out["eval_recall"] == pytest.approx(0.5)


def test_mismatched_lengths_and_bad_tags_raise():
  with pytest.raises(ValueError, match="sentence 0"):
    entity_scores([["O", "O"]], [["O"]])
  with pytest.raises(ValueError, match="S-PER"):
    extract_entities(["S-PER"])
