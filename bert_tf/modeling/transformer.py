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

  def _project(self, x, dense_layers, scale=None):
    """Applies several of the Q/K/V projections as one matrix multiplication, split by head.

    Args:
      x: [batch_size, length, hidden_size].
      dense_layers: which of `self.query`, `self.key`, `self.value` to apply (k of them).
      scale: multiplies the first projection (1/√d folded into the query weights: cheaper than
        scaling the [B, N, S, S] scores).
    Returns:
      [k, batch_size, num_heads, length, head_size].
    """
    kernels = [layer.kernel for layer in dense_layers]
    biases = [layer.bias for layer in dense_layers]
    if scale is not None:
      kernels[0], biases[0] = kernels[0] * scale, biases[0] * scale
    kernel = tf.cast(tf.concat(kernels, axis=1), self.compute_dtype)         # [H, k*H]
    bias = tf.cast(tf.concat(biases, axis=0), self.compute_dtype)            # [k*H]
    k = len(dense_layers)
    batch_size, length = tf.shape(x)[0], tf.shape(x)[1]
    y = tf.nn.bias_add(tf.matmul(tf.reshape(x, [-1, self.hidden_size]), kernel), bias)  # [B*L, k*H]
    y = tf.reshape(y, [batch_size, length, k, self.num_heads, self.head_size])  # [B, L, k, N, d]
    return tf.transpose(y, [2, 0, 3, 1, 4])                                     # [k, B, N, L, d]

  def call(self, x, attention_adder, training=None, queries=None):
    """Attends from each query position to every unmasked position of `x`.

    Args:
      x: [batch_size, seq_length, hidden_size], the sequence attended to.
      attention_adder: float32 [batch_size, 1, 1, seq_length]: 0 where attending is allowed and
        -10000 at padding (the original's additive mask).
      training: whether dropout is active.
      queries: optional [batch_size, num_queries, hidden_size]: attend from these vectors only
        (rows of `x` gathered by the caller) instead of from every position of `x`.
    Returns:
      [batch_size, seq_length or num_queries, hidden_size].
    """
    scale = 1.0 / math.sqrt(self.head_size)
    # tf.unstack rather than y[i]: the gradient of strided slices writes full-size zero tensors.
    if queries is None:
      query, key, value = tf.unstack(
          self._project(x, [self.query, self.key, self.value], scale), num=3)  # 3 x [B, N, S, d]
      queries = x
    else:
      query = self._project(queries, [self.query], scale)[0]                  # [B, N, Q, d]
      key, value = tf.unstack(self._project(x, [self.key, self.value]), num=2)  # 2 x [B, N, S, d]

    scores = tf.matmul(query, key, transpose_b=True)                          # [B, N, Q, S]
    # (Keras casts float call arguments to the compute dtype; the mask is added in float32.)
    scores = tf.cast(scores, tf.float32) + tf.cast(attention_adder, tf.float32)
    probs = tf.cast(tf.nn.softmax(scores, axis=-1), self.compute_dtype)       # [B, N, Q, S]
    probs = self.dropout(probs, training=training)

    context = tf.matmul(probs, value)                                         # [B, N, Q, d]
    context = tf.transpose(context, [0, 2, 1, 3])                             # [B, Q, N, d]
    context = tf.reshape(context, tf.shape(queries))                          # [B, Q, H]
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

  def call(self, x, attention_adder, training=None, query_positions=None):
    """Runs the block on a sequence, or only at some of its positions.

    Args:
      x: [batch_size, seq_length, hidden_size].
      attention_adder: float32 [batch_size, 1, 1, seq_length], see `SelfAttention`.
      training: whether dropout is active.
      query_positions: optional int [batch_size, num_queries]: compute the output only at these
        positions (still attending to the whole sequence). Used for the last block when only a
        few positions are needed, e.g. [CLS] and the masked tokens in pretraining.
    Returns:
      [batch_size, seq_length or num_queries, hidden_size].
    """
    queries = None if query_positions is None else tf.gather(x, query_positions, batch_dims=1)
    attended = self.attention(x, attention_adder, training=training, queries=queries)
    attended = self.attention_dropout(attended, training=training)
    residual = x if queries is None else queries
    x = self.attention_layer_norm(attended + residual)             # [B, S or Q, H]
    hidden = self.intermediate(x)                                   # [B, S or Q, I]
    hidden = self.output_dropout(self.output_dense(hidden), training=training)
    return self.output_layer_norm(hidden + x)                       # [B, S or Q, H]

  def get_config(self):
    config = super().get_config()
    config.update(hidden_size=self.hidden_size, num_heads=self.num_heads,
                  intermediate_size=self.intermediate_size, activation=self.activation,
                  hidden_dropout_rate=self.hidden_dropout_rate,
                  attention_dropout_rate=self.attention_dropout_rate,
                  initializer_range=self.initializer_range)
    return config
