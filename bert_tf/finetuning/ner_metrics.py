"""Entity-level scores as conlleval (the CoNLL-2000/2003 evaluation script) computes them.

A tag is `O`, `B-<type>` or `I-<type>`. Chunks (entities) are read with conlleval's rules, which do
not depend on the tag scheme, so BIO (IOB2) and IOB1 files are scored alike:

- a chunk starts at a `B-X`, and at an `I-X` whose previous tag is `O`, of another type, or the
  sentence start (an ill-formed `I-` without `B-` in BIO, the normal start in IOB1);
- it goes on over the `I-X` tags that follow and ends before the next `B-`, `O`, other type or
  sentence end.

A predicted entity is correct when a gold entity has the same first word, last word and type.
Precision, recall and F1 are micro-averaged over all entities (per type too); token accuracy is
the fraction of words whose predicted tag string equals the gold one (`B-X` differs from `I-X`).
Scores are fractions in [0, 1] (conlleval prints percentages); a ratio with a zero denominator
is 0, as conlleval reports it.

    >>> gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    >>> pred = [["B-PER", "I-PER", "O", "B-ORG"]]
    >>> round(entity_scores(gold, pred)["f1"], 3)
    0.5
"""

import collections

OUTSIDE = "O"


def split_tag(tag):
  """("B" | "I" | "O", type) of a tag: `B-geo-loc` -> ("B", "geo-loc"), `O` -> ("O", "").

  Returns None for a tag outside the BIO/IOB1 scheme (no B-/I- prefix, an empty type, or E-/S-).
  """
  if tag == OUTSIDE:
    return OUTSIDE, ""
  prefix, sep, kind = tag.partition("-")
  if sep and prefix in ("B", "I") and kind:
    return prefix, kind
  return None


def _parts(tag):
  parts = split_tag(tag)
  if parts is None:
    raise ValueError(f"tag {tag!r} is not O, B-<type> or I-<type>")
  return parts


def chunk_starts(tags):
  """list[bool]: where conlleval starts a chunk, for one sentence's tags."""
  starts, prev_type = [], ""
  for tag in tags:
    prefix, kind = _parts(tag)
    starts.append(prefix != OUTSIDE and (prefix == "B" or kind != prev_type))
    prev_type = kind
  return starts


def extract_entities(tags):
  """The chunks of one sentence: list of (type, first word index, last word index), in order."""
  entities, current = [], None
  for i, (tag, start) in enumerate(zip(tags, chunk_starts(tags))):
    prefix, kind = _parts(tag)
    if current is not None and (prefix == OUTSIDE or start):
      entities.append(tuple(current))
      current = None
    if start:
      current = [kind, i, i]
    elif current is not None:
      current[2] = i
  if current is not None:
    entities.append(tuple(current))
  return entities


def _ratio(a, b):
  return a / b if b else 0.0


def _prf(correct, predicted, gold):
  precision, recall = _ratio(correct, predicted), _ratio(correct, gold)
  f1 = _ratio(2 * precision * recall, precision + recall)
  return precision, recall, f1


def entity_scores(gold_sentences, predicted_sentences):
  """conlleval's scores over sentences of gold and predicted tags (same lengths).

  Returns:
    dict: precision, recall, f1, accuracy (floats), num_gold, num_predicted, num_correct
    (entity counts), and per_type: {type: dict(precision, recall, f1, num_gold,
    num_predicted, num_correct)} for every type seen in gold or predictions.
  """
  gold_count, pred_count, correct_count = (collections.Counter() for _ in range(3))
  tokens = correct_tokens = 0
  for n, (gold, pred) in enumerate(zip(gold_sentences, predicted_sentences)):
    if len(gold) != len(pred):
      raise ValueError(f"sentence {n}: {len(gold)} gold tags but {len(pred)} predicted")
    gold_entities = extract_entities(gold)
    pred_entities = extract_entities(pred)
    gold_count.update(e[0] for e in gold_entities)
    pred_count.update(e[0] for e in pred_entities)
    correct_count.update(e[0] for e in set(gold_entities) & set(pred_entities))
    tokens += len(gold)
    correct_tokens += sum(g == p for g, p in zip(gold, pred))
  if len(gold_sentences) != len(predicted_sentences):
    raise ValueError(f"{len(gold_sentences)} gold sentences but {len(predicted_sentences)} "
                     "predicted")
  per_type = {}
  for kind in sorted(set(gold_count) | set(pred_count)):
    p, r, f = _prf(correct_count[kind], pred_count[kind], gold_count[kind])
    per_type[kind] = dict(precision=p, recall=r, f1=f, num_gold=gold_count[kind],
                          num_predicted=pred_count[kind], num_correct=correct_count[kind])
  num_gold, num_pred = sum(gold_count.values()), sum(pred_count.values())
  num_correct = sum(correct_count.values())
  p, r, f = _prf(num_correct, num_pred, num_gold)
  return dict(precision=p, recall=r, f1=f, accuracy=_ratio(correct_tokens, tokens),
              num_gold=num_gold, num_predicted=num_pred, num_correct=num_correct,
              per_type=per_type)


def eval_results(scores):
  """The eval_results.txt keys: eval_precision, eval_recall, eval_f1, eval_accuracy,
  eval_f1_<TYPE> for each type, and the entity counts."""
  out = {f"eval_{k}": scores[k] for k in ("precision", "recall", "f1", "accuracy")}
  for k in ("num_gold", "num_predicted", "num_correct"):
    out[f"eval_{k}"] = scores[k]
  for kind, s in scores["per_type"].items():
    out[f"eval_f1_{kind}"] = s["f1"]
  return out
