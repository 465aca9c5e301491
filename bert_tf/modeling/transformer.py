"""One BERT transformer block: multi-head self-attention and a feed-forward layer, each followed by
dropout, a residual connection and LayerNorm (post-LN, as in the original)."""

import collections
import math

import keras
import tensorflow as tf

from bert_tf.modeling.layers import Dense, LayerNorm


class TokenLayout(collections.namedtuple(
    "TokenLayout", ["token_rows", "row_to_token", "batch_size", "seq_length"])):
  """Where the real tokens of a padded batch are, for blocks that skip the padding.

  Without padding, the hidden states of a batch are one matrix [num_tokens, hidden_size] of its real
  tokens, sequence after sequence; the dense layers, LayerNorms, dropouts and the feed-forward
  network then do no work for padding. Only attention needs the sequences apart: it scatters its
  keys, values and queries back into [batch_size, seq_length] (zeros at padding, which the additive
  mask excludes anyway) and gathers the result back.

  Fields:
    token_rows: int32 [num_tokens]: row `b * seq_length + s` of each real token (b, s), in order.
    row_to_token: int32 [batch_size * seq_length]: index in `token_rows` of each row's token, or
      num_tokens for a padding row (`gather` reads a zero vector there).
    batch_size, seq_length: int32 scalars.
  """

  @classmethod
  def from_mask(cls, input_mask):
    """The layout of an int/bool [batch_size, seq_length] mask (1 = real token)."""
    batch_size, seq_length = tf.shape(input_mask)[0], tf.shape(input_mask)[1]
    real = tf.reshape(tf.cast(input_mask, tf.int32) > 0, [-1])                # [B*S]
    token_rows = tf.cast(tf.where(real)[:, 0], tf.int32)                      # [N]
    index = tf.cumsum(tf.cast(real, tf.int32)) - 1                            # [B*S]
    row_to_token = tf.where(real, index, tf.size(token_rows))
    return cls(token_rows, row_to_token, batch_size, seq_length)

  def remove_padding(self, x):
    """[batch_size, seq_length, ...] -> [num_tokens, ...]."""
    return tf.gather(tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], 0)), self.token_rows)

  def restore_padding(self, x):
    """[num_tokens, ...] -> [batch_size, seq_length, ...] with zeros at padding."""
    width = tf.shape(x)[1:]
    rows = tf.scatter_nd(self.token_rows[:, tf.newaxis], x,
                         tf.concat([[self.batch_size * self.seq_length], width], 0))
    return tf.reshape(rows, tf.concat([[self.batch_size, self.seq_length], width], 0))

  def gather(self, x, positions):
    """The states at `positions` (int [batch_size, P]) of [num_tokens, ...] states; zeros where a
    position is padding (as for a batch of padding only)."""
    rows = positions + (tf.range(self.batch_size) * self.seq_length)[:, tf.newaxis]  # [B, P]
    x = tf.concat([x, tf.zeros_like(x[:1])], axis=0)                                  # + zero row
    return tf.gather(x, tf.gather(self.row_to_token, rows))                           # [B, P, ...]


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

  def _project(self, x, dense_layers, scale=None, layout=None):
    """Applies several of the Q/K/V projections as one matrix multiplication, split by head.

    Args:
      x: [batch_size, length, hidden_size], or [num_tokens, hidden_size] with `layout`.
      dense_layers: which of `self.query`, `self.key`, `self.value` to apply (k of them).
      scale: multiplies the first projection (1/√d folded into the query weights: cheaper than
        scaling the [B, N, S, S] scores).
      layout: a `TokenLayout` when `x` holds only the real tokens.
    Returns:
      [k, batch_size, num_heads, length, head_size] (zeros at padding with `layout`).
    """
    kernels = [layer.kernel for layer in dense_layers]
    biases = [layer.bias for layer in dense_layers]
    if scale is not None:
      kernels[0], biases[0] = kernels[0] * scale, biases[0] * scale
    kernel = tf.cast(tf.concat(kernels, axis=1), self.compute_dtype)         # [H, k*H]
    bias = tf.cast(tf.concat(biases, axis=0), self.compute_dtype)            # [k*H]
    k = len(dense_layers)
    y = tf.nn.bias_add(tf.matmul(tf.reshape(x, [-1, self.hidden_size]), kernel), bias)  # [B*L, k*H]
    if layout is not None:
      batch_size, length = layout.batch_size, layout.seq_length
      y = layout.restore_padding(y)                                             # [B, S, k*H]
    else:
      batch_size, length = tf.shape(x)[0], tf.shape(x)[1]
    y = tf.reshape(y, [batch_size, length, k, self.num_heads, self.head_size])  # [B, L, k, N, d]
    return tf.transpose(y, [2, 0, 3, 1, 4])                                     # [k, B, N, L, d]

  def call(self, x, attention_adder, training=None, queries=None, layout=None):
    """Attends from each query position to every unmasked position of `x`.

    Args:
      x: [batch_size, seq_length, hidden_size], the sequence attended to; or, with `layout`, its
        real tokens only [num_tokens, hidden_size].
      attention_adder: float32 [batch_size, 1, 1, seq_length]: 0 where attending is allowed and
        -10000 at padding (the original's additive mask).
      training: whether dropout is active.
      queries: optional [batch_size, num_queries, hidden_size]: attend from these vectors only
        (rows of `x` gathered by the caller) instead of from every position of `x`.
      layout: a `TokenLayout` when `x` holds only the real tokens.
    Returns:
      [batch_size, seq_length or num_queries, hidden_size]; [num_tokens, hidden_size] with `layout`
      and no `queries`.
    """
    scale = 1.0 / math.sqrt(self.head_size)
    # tf.unstack rather than y[i]: the gradient of strided slices writes full-size zero tensors.
    if queries is None:
      query, key, value = tf.unstack(self._project(
          x, [self.query, self.key, self.value], scale, layout), num=3)  # 3 x [B, N, S, d]
    else:
      query = self._project(queries, [self.query], scale)[0]                  # [B, N, Q, d]
      key, value = tf.unstack(self._project(x, [self.key, self.value], layout=layout),
                              num=2)                                          # 2 x [B, N, S, d]

    scores = tf.matmul(query, key, transpose_b=True)                          # [B, N, Q, S]
    # (Keras casts float call arguments to the compute dtype; the mask is added in float32.)
    scores = tf.cast(scores, tf.float32) + tf.cast(attention_adder, tf.float32)
    probs = tf.cast(tf.nn.softmax(scores, axis=-1), self.compute_dtype)       # [B, N, Q, S]
    probs = self.dropout(probs, training=training)

    context = tf.matmul(probs, value)                                         # [B, N, Q, d]
    context = tf.transpose(context, [0, 2, 1, 3])                             # [B, Q, N, d]
    if queries is not None:
      context = tf.reshape(context, tf.shape(queries))                        # [B, Q, H]
    elif layout is not None:
      context = layout.remove_padding(tf.reshape(
          context, [layout.batch_size, layout.seq_length, self.hidden_size]))  # [tokens, H]
    else:
      context = tf.reshape(context, tf.shape(x))                              # [B, S, H]
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
    layer_norm_eps: epsilon of both LayerNorms.
  """

  def __init__(self, hidden_size, num_heads, intermediate_size, activation="gelu",
               hidden_dropout_rate=0.1, attention_dropout_rate=0.1, initializer_range=0.02,
               layer_norm_eps=1e-12, **kwargs):
    super().__init__(**kwargs)
    self.hidden_size = hidden_size
    self.num_heads = num_heads
    self.intermediate_size = intermediate_size
    self.activation = activation
    self.hidden_dropout_rate = hidden_dropout_rate
    self.attention_dropout_rate = attention_dropout_rate
    self.initializer_range = initializer_range
    self.layer_norm_eps = layer_norm_eps
    self.attention = SelfAttention(hidden_size, num_heads, attention_dropout_rate,
                                   initializer_range, name="attention")
    self.attention_dropout = keras.layers.Dropout(hidden_dropout_rate, name="attention_dropout")
    self.attention_layer_norm = LayerNorm(epsilon=layer_norm_eps, name="attention_LayerNorm")
    self.intermediate = Dense(intermediate_size, activation=activation,
                              initializer_range=initializer_range, name="intermediate")
    self.output_dense = Dense(hidden_size, initializer_range=initializer_range, name="output_dense")
    self.output_dropout = keras.layers.Dropout(hidden_dropout_rate, name="output_dropout")
    self.output_layer_norm = LayerNorm(epsilon=layer_norm_eps, name="output_LayerNorm")

  def build(self, input_shape):
    self.attention.build((None, None, self.hidden_size))
    self.attention_layer_norm.build((None, None, self.hidden_size))
    self.intermediate.build((None, self.hidden_size))
    self.output_dense.build((None, self.intermediate_size))
    self.output_layer_norm.build((None, None, self.hidden_size))

  def call(self, x, attention_adder, training=None, query_positions=None, layout=None):
    """Runs the block on a sequence, or only at some of its positions.

    Args:
      x: [batch_size, seq_length, hidden_size]; or, with `layout`, the real tokens only
        [num_tokens, hidden_size].
      attention_adder: float32 [batch_size, 1, 1, seq_length], see `SelfAttention`.
      training: whether dropout is active.
      query_positions: optional int [batch_size, num_queries]: compute the output only at these
        positions (still attending to the whole sequence). Used for the last block when only a
        few positions are needed, e.g. [CLS] and the masked tokens in pretraining.
      layout: a `TokenLayout` when `x` holds only the real tokens (see `BertEncoder`).
    Returns:
      [batch_size, seq_length or num_queries, hidden_size], or [num_tokens, hidden_size] with
      `layout` and no `query_positions`.
    """
    if query_positions is None:
      queries = None
    elif layout is not None:
      queries = layout.gather(x, query_positions)
    else:
      queries = tf.gather(x, query_positions, batch_dims=1)
    attended = self.attention(x, attention_adder, training=training, queries=queries, layout=layout)
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
                  initializer_range=self.initializer_range, layer_norm_eps=self.layer_norm_eps)
    return config
