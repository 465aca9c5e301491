"""One BERT transformer block: multi-head self-attention and a feed-forward layer, each followed by
dropout, a residual connection and LayerNorm (post-LN, as in the original)."""

import math

import keras
import tensorflow as tf

from bert_tf.modeling.layers import Dense, LayerNorm


class SelfAttention(keras.layers.Layer):
  """Multi-head scaled dot-product self-attention: `softmax(Q Kᵀ / √d + mask) V`, then a projection.

  The query, key and value projections keep the original's separate `[hidden, hidden]` kernels (so a
  TF1 checkpoint maps one to one), but are applied as one fused matrix multiplication; all heads
  are computed together by batched matmuls. Scores and softmax are computed in float32.

  Args:
    hidden_size: model width.
    num_heads: attention heads; `hidden_size // num_heads` is the head size d.
    dropout_rate: dropout on the attention probabilities.
    initializer_range: stddev of the truncated-normal initialiser.
  """

  def __init__(self, hidden_size, num_heads, dropout_rate=0.1, initializer_range=0.02, **kwargs):
    super().__init__(**kwargs)
    self.hidden_size = hidden_size
    self.num_heads = num_heads
    self.head_size = hidden_size // num_heads
    self.dropout_rate = dropout_rate
    self.initializer_range = initializer_range
    self.query = Dense(hidden_size, initializer_range=initializer_range, name="query")
    self.key = Dense(hidden_size, initializer_range=initializer_range, name="key")
    self.value = Dense(hidden_size, initializer_range=initializer_range, name="value")
    self.output_dense = Dense(hidden_size, initializer_range=initializer_range, name="output_dense")
    self.dropout = keras.layers.Dropout(dropout_rate, name="dropout")

  def build(self, input_shape):
    for layer in (self.query, self.key, self.value, self.output_dense):
      layer.build((None, self.hidden_size))

  def _fused_qkv_weights(self):
    """Returns the kernel [H, 3H] and bias [3H] of Q|K|V, with 1/√d folded into the query part."""
    scale = 1.0 / math.sqrt(self.head_size)
    kernel = tf.concat([self.query.kernel * scale, self.key.kernel, self.value.kernel], axis=1)
    bias = tf.concat([self.query.bias * scale, self.key.bias, self.value.bias], axis=0)
    return tf.cast(kernel, self.compute_dtype), tf.cast(bias, self.compute_dtype)

  def call(self, x, attention_adder, training=None):
    """Attends every position to every unmasked position.

    Args:
      x: [batch_size, seq_length, hidden_size].
      attention_adder: float32 [batch_size, 1, 1, seq_length]: 0 where attending is allowed and
        -10000 at padding (the original's additive mask).
      training: whether dropout is active.
    Returns:
      [batch_size, seq_length, hidden_size].
    """
    batch_size, seq_length = tf.shape(x)[0], tf.shape(x)[1]
    kernel, bias = self._fused_qkv_weights()
    qkv = tf.nn.bias_add(tf.matmul(tf.reshape(x, [-1, self.hidden_size]), kernel), bias)  # [B*S, 3H]
    qkv = tf.reshape(qkv, [batch_size, seq_length, 3, self.num_heads, self.head_size])   # [B, S, 3, N, d]
    qkv = tf.transpose(qkv, [2, 0, 3, 1, 4])                                              # [3, B, N, S, d]
    query, key, value = qkv[0], qkv[1], qkv[2]                                            # [B, N, S, d]

    scores = tf.matmul(query, key, transpose_b=True)                                      # [B, N, S, S]
    # (Keras casts float call arguments to the compute dtype; the mask is added in float32.)
    scores = tf.cast(scores, tf.float32) + tf.cast(attention_adder, tf.float32)
    probs = tf.cast(tf.nn.softmax(scores, axis=-1), self.compute_dtype)                   # [B, N, S, S]
    probs = self.dropout(probs, training=training)

    context = tf.matmul(probs, value)                                                     # [B, N, S, d]
    context = tf.transpose(context, [0, 2, 1, 3])                                         # [B, S, N, d]
    context = tf.reshape(context, [batch_size, seq_length, self.hidden_size])            # [B, S, H]
    return self.output_dense(context)

  def get_config(self):
    config = super().get_config()
    config.update(hidden_size=self.hidden_size, num_heads=self.num_heads,
                  dropout_rate=self.dropout_rate, initializer_range=self.initializer_range)
    return config


class TransformerBlock(keras.layers.Layer):
  """Self-attention and feed-forward sub-layers, each with dropout, residual and LayerNorm.

  Args:
    hidden_size: model width.
    num_heads: attention heads.
    intermediate_size: feed-forward width.
    activation: feed-forward activation name ("gelu" = tanh approximation).
    hidden_dropout_rate: dropout on each sub-layer's output.
    attention_dropout_rate: dropout on attention probabilities.
    initializer_range: stddev of the truncated-normal initialiser.
  """

  def __init__(self, hidden_size, num_heads, intermediate_size, activation="gelu",
               hidden_dropout_rate=0.1, attention_dropout_rate=0.1, initializer_range=0.02,
               **kwargs):
    super().__init__(**kwargs)
    self.hidden_size = hidden_size
    self.num_heads = num_heads
    self.intermediate_size = intermediate_size
    self.activation = activation
    self.hidden_dropout_rate = hidden_dropout_rate
    self.attention_dropout_rate = attention_dropout_rate
    self.initializer_range = initializer_range
    self.attention = SelfAttention(hidden_size, num_heads, attention_dropout_rate,
                                   initializer_range, name="attention")
    self.attention_dropout = keras.layers.Dropout(hidden_dropout_rate, name="attention_dropout")
    self.attention_layer_norm = LayerNorm(name="attention_LayerNorm")
    self.intermediate = Dense(intermediate_size, activation=activation,
                              initializer_range=initializer_range, name="intermediate")
    self.output_dense = Dense(hidden_size, initializer_range=initializer_range, name="output_dense")
    self.output_dropout = keras.layers.Dropout(hidden_dropout_rate, name="output_dropout")
    self.output_layer_norm = LayerNorm(name="output_LayerNorm")

  def build(self, input_shape):
    self.attention.build((None, None, self.hidden_size))
    self.attention_layer_norm.build((None, None, self.hidden_size))
    self.intermediate.build((None, self.hidden_size))
    self.output_dense.build((None, self.intermediate_size))
    self.output_layer_norm.build((None, None, self.hidden_size))

  def call(self, x, attention_adder, training=None):
    """Args: x [batch_size, seq_length, hidden_size]; attention_adder [batch_size, 1, 1, seq_length].
    Returns [batch_size, seq_length, hidden_size]."""
    attended = self.attention(x, attention_adder, training=training)
    attended = self.attention_dropout(attended, training=training)
    x = self.attention_layer_norm(attended + x)                     # [B, S, H]
    hidden = self.intermediate(x)                                   # [B, S, I]
    hidden = self.output_dropout(self.output_dense(hidden), training=training)
    return self.output_layer_norm(hidden + x)                       # [B, S, H]

  def get_config(self):
    config = super().get_config()
    config.update(hidden_size=self.hidden_size, num_heads=self.num_heads,
                  intermediate_size=self.intermediate_size, activation=self.activation,
                  hidden_dropout_rate=self.hidden_dropout_rate,
                  attention_dropout_rate=self.attention_dropout_rate,
                  initializer_range=self.initializer_range)
    return config
