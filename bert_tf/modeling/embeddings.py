"""The input embedding of BERT: word + segment + position embeddings, LayerNorm, dropout."""

import keras
import tensorflow as tf

from bert_tf.errors import UsageError
from bert_tf.modeling.layers import LayerNorm, truncated_normal


class BertEmbeddings(keras.layers.Layer):
  """Sums word, segment ("token type") and learned absolute position embeddings.

  The word table is also the output projection of the masked-LM head (tied weights), which reads
  it through `word_embeddings`.

  Args:
    vocab_size: rows of the word table.
    hidden_size: embedding width.
    type_vocab_size: rows of the segment table.
    max_position_embeddings: rows of the position table (longest supported sequence).
    dropout_rate: dropout applied after the LayerNorm.
    initializer_range: stddev of the truncated-normal initialiser.
    layer_norm_eps: epsilon of the LayerNorm.
  """

  def __init__(self, vocab_size, hidden_size, type_vocab_size, max_position_embeddings,
               dropout_rate=0.1, initializer_range=0.02, layer_norm_eps=1e-12, **kwargs):
    super().__init__(**kwargs)
    self.vocab_size = vocab_size
    self.hidden_size = hidden_size
    self.type_vocab_size = type_vocab_size
    self.max_position_embeddings = max_position_embeddings
    self.dropout_rate = dropout_rate
    self.initializer_range = initializer_range
    self.layer_norm_eps = layer_norm_eps
    self.layer_norm = LayerNorm(epsilon=layer_norm_eps, name="LayerNorm")
    self.dropout = keras.layers.Dropout(dropout_rate, name="dropout")

  def build(self, input_shape=None):
    init = truncated_normal(self.initializer_range)
    self.word_embeddings = self.add_weight(
        name="word_embeddings", shape=(self.vocab_size, self.hidden_size), initializer=init,
        autocast=False)
    self.token_type_embeddings = self.add_weight(
        name="token_type_embeddings", shape=(self.type_vocab_size, self.hidden_size),
        initializer=init, autocast=False)
    self.position_embeddings = self.add_weight(
        name="position_embeddings", shape=(self.max_position_embeddings, self.hidden_size),
        initializer=init, autocast=False)
    self.layer_norm.build((None, None, self.hidden_size))

  def call(self, input_ids, segment_ids, training=None):
    """Args: input_ids, segment_ids: int [batch_size, seq_length].
    Returns: [batch_size, seq_length, hidden_size]."""
    static_length = input_ids.shape[1]
    if static_length is not None and static_length > self.max_position_embeddings:
      raise UsageError(
          f"sequence length {static_length} is longer than the model's max_position_embeddings "
          f"({self.max_position_embeddings} in bert_config.json); use a shorter --max_seq_length")
    seq_length = tf.shape(input_ids)[1]
    # The tables are read in float32 (autocast=False): gathering rows and summing them before the
    # LayerNorm costs less than casting whole tables to a low-precision compute dtype.
    words = tf.gather(tf.convert_to_tensor(self.word_embeddings), input_ids)           # [B, S, H]
    segments = tf.gather(tf.convert_to_tensor(self.token_type_embeddings), segment_ids)  # [B, S, H]
    positions = tf.convert_to_tensor(self.position_embeddings)[:seq_length]            # [S, H]
    x = words + segments + positions[tf.newaxis]                                  # [B, S, H]
    x = self.layer_norm(x)
    return self.dropout(x, training=training)

  def get_config(self):
    config = super().get_config()
    config.update(vocab_size=self.vocab_size, hidden_size=self.hidden_size,
                  type_vocab_size=self.type_vocab_size,
                  max_position_embeddings=self.max_position_embeddings,
                  dropout_rate=self.dropout_rate, initializer_range=self.initializer_range,
                  layer_norm_eps=self.layer_norm_eps)
    return config
