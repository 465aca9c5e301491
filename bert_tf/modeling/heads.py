"""Output heads on top of the encoder: masked-LM (tied to the word embeddings) and next-sentence."""

import keras
import tensorflow as tf

from bert_tf.modeling.layers import Dense, LayerNorm, truncated_normal


def gather_positions(sequence, positions):
  """Picks the vectors at given positions of each sequence.

  Args:
    sequence: [batch_size, seq_length, width].
    positions: int [batch_size, num_positions].
  Returns:
    [batch_size, num_positions, width].
  """
  return tf.gather(sequence, positions, batch_dims=1)


class MaskedLMHead(keras.layers.Layer):
  """Predicts the original token at each masked position.

  A dense + activation + LayerNorm transform, then logits against the word embedding table (tied
  weights, owned by the encoder) plus a per-token output bias. Only the `masked_lm_positions` are
  computed, never the whole sequence.

  Args:
    hidden_size: encoder width.
    vocab_size: number of output classes (rows of the word table).
    activation: transform activation name (the config's `hidden_act`).
    initializer_range: stddev of the truncated-normal initialiser.
    layer_norm_eps: epsilon of the transform's LayerNorm.
  """

  def __init__(self, hidden_size, vocab_size, activation="gelu", initializer_range=0.02,
               layer_norm_eps=1e-12, **kwargs):
    super().__init__(**kwargs)
    self.hidden_size = hidden_size
    self.vocab_size = vocab_size
    self.activation = activation
    self.initializer_range = initializer_range
    self.layer_norm_eps = layer_norm_eps
    self.transform = Dense(hidden_size, activation=activation,
                           initializer_range=initializer_range, name="transform")
    self.layer_norm = LayerNorm(epsilon=layer_norm_eps, name="transform_LayerNorm")

  def build(self, input_shape=None):
    self.transform.build((None, self.hidden_size))
    self.layer_norm.build((None, self.hidden_size))
    self.output_bias = self.add_weight(name="output_bias", shape=(self.vocab_size,),
                                       initializer="zeros", autocast=False)

  def call(self, masked_output, word_embeddings):
    """Args:
      masked_output: the encoder output at the masked positions [batch_size, num_predictions,
        hidden_size] (see `gather_positions` and `BertEncoder(output_positions=...)`).
      word_embeddings: the tied table (a variable) [vocab_size, hidden_size].
    Returns:
      float32 logits [batch_size, num_predictions, vocab_size].
    """
    batch_size, num_predictions = tf.shape(masked_output)[0], tf.shape(masked_output)[1]
    x = tf.reshape(masked_output, [-1, self.hidden_size])              # [B*P, H]
    x = self.layer_norm(self.transform(x))                            # [B*P, H]
    table = tf.cast(word_embeddings, self.compute_dtype)               # [V, H]
    logits = tf.matmul(x, table, transpose_b=True)                     # [B*P, V]
    logits = tf.nn.bias_add(tf.cast(logits, tf.float32), tf.convert_to_tensor(self.output_bias))
    return tf.reshape(logits, [batch_size, num_predictions, self.vocab_size])

  def get_config(self):
    config = super().get_config()
    config.update(hidden_size=self.hidden_size, vocab_size=self.vocab_size,
                  activation=self.activation, initializer_range=self.initializer_range,
                  layer_norm_eps=self.layer_norm_eps)
    return config


class NextSentenceHead(keras.layers.Layer):
  """Binary "is B the real next sentence" classifier on the pooled [CLS] output.

  The weight keeps the original's `[2, hidden_size]` layout (`output_weights`).

  Args:
    hidden_size: encoder width.
    initializer_range: stddev of the truncated-normal initialiser.
  """

  def __init__(self, hidden_size, initializer_range=0.02, **kwargs):
    super().__init__(**kwargs)
    self.hidden_size = hidden_size
    self.initializer_range = initializer_range

  def build(self, input_shape=None):
    self.output_weights = self.add_weight(name="output_weights", shape=(2, self.hidden_size),
                                          initializer=truncated_normal(self.initializer_range))
    self.output_bias = self.add_weight(name="output_bias", shape=(2,), initializer="zeros")

  def call(self, pooled_output):
    """Args: pooled_output [batch_size, hidden_size]. Returns float32 logits [batch_size, 2]."""
    weights = tf.cast(self.output_weights, self.compute_dtype)
    logits = tf.nn.bias_add(tf.matmul(pooled_output, weights, transpose_b=True),
                            tf.cast(self.output_bias, self.compute_dtype))
    return tf.cast(logits, tf.float32)

  def get_config(self):
    config = super().get_config()
    config.update(hidden_size=self.hidden_size, initializer_range=self.initializer_range)
    return config
