"""The pretraining loss of google-research/bert: weighted masked-LM mean + next-sentence mean."""

import tensorflow as tf


def masked_lm_loss(mlm_logits, masked_lm_ids, masked_lm_weights):
  """Weighted mean cross-entropy over the masked predictions.

  Args:
    mlm_logits: float [batch_size, num_predictions, vocab_size].
    masked_lm_ids: int [batch_size, num_predictions], the original tokens.
    masked_lm_weights: float [batch_size, num_predictions], 1 for real predictions, 0 for padding.
  Returns:
    float32 scalar: sum(weights * cross_entropy) / (sum(weights) + 1e-5), as the original.
  """
  logits = tf.cast(mlm_logits, tf.float32)
  labels = tf.cast(masked_lm_ids, tf.int32)
  per_prediction = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
  weights = tf.cast(masked_lm_weights, tf.float32)                      # [B, P]
  return tf.reduce_sum(weights * per_prediction) / (tf.reduce_sum(weights) + 1e-5)


def next_sentence_loss(nsp_logits, next_sentence_labels):
  """Mean cross-entropy of the next-sentence classifier.

  Args:
    nsp_logits: float [batch_size, 2].
    next_sentence_labels: int [batch_size] or [batch_size, 1]; 1 means B is a random sentence.
  Returns:
    float32 scalar.
  """
  labels = tf.reshape(tf.cast(next_sentence_labels, tf.int32), [-1])
  per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=labels, logits=tf.cast(nsp_logits, tf.float32))
  return tf.reduce_mean(per_example)


def pretraining_losses(features, outputs):
  """Both pretraining losses and their sum.

  Args:
    features: dict with `masked_lm_ids`, `masked_lm_weights`, `next_sentence_labels`.
    outputs: the `BertPretrainer` output dict (`mlm_logits`, `nsp_logits`).
  Returns:
    dict of float32 scalars `loss`, `masked_lm_loss`, `next_sentence_loss`.
  """
  mlm = masked_lm_loss(outputs["mlm_logits"], features["masked_lm_ids"],
                       features["masked_lm_weights"])
  nsp = next_sentence_loss(outputs["nsp_logits"], features["next_sentence_labels"])
  return {"loss": mlm + nsp, "masked_lm_loss": mlm, "next_sentence_loss": nsp}
