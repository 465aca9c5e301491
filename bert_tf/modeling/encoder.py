"""`BertEncoder`: embeddings, a stack of transformer blocks and the [CLS] pooler."""

import keras
import tensorflow as tf

from bert_tf.configs import BertConfig
from bert_tf.modeling.embeddings import BertEmbeddings
from bert_tf.modeling.layers import Dense
from bert_tf.modeling.transformer import TokenLayout, TransformerBlock


def config_from_any(config):
  """Accepts a `BertConfig` or its dict form (as stored by `get_config`)."""
  return config if isinstance(config, BertConfig) else BertConfig.from_dict(dict(config))


def attention_adder_from_mask(input_mask):
  """The original's additive attention mask.

  Args:
    input_mask: int [batch_size, seq_length], 1 for real tokens and 0 for padding.
  Returns:
    float32 [batch_size, 1, 1, seq_length]: 0 for real tokens, -10000 for padding.
  """
  mask = tf.cast(input_mask, tf.float32)
  return (1.0 - mask)[:, tf.newaxis, tf.newaxis, :] * -10000.0


class BertEncoder(keras.Model):
  """The BERT encoder of google-research/bert's `BertModel`, as a Keras 3 model.

  Args:
    config: a `BertConfig` (or its dict).
    output_all_layers: also return `encoder_outputs`, the output of every transformer block.
    skip_padding: run the transformer blocks on the real tokens only (`TokenLayout`): dense
      layers, LayerNorms, dropouts and the feed-forward network do no work for padding, and only
      attention sees the padded sequences. The outputs at real tokens are those of the padded
      computation (up to float rounding); at padding, `sequence_output` and `encoder_outputs` are
      zeros instead of values nothing should read. Needs shapes that vary with the input, so not
      under XLA (`jit_compile`) or on TPUs. Also settable later as the attribute `skip_padding`.

  Called on a dict with `input_ids` (int [batch_size, seq_length]) and optionally `input_mask`
  (1 = real token, default all ones) and `segment_ids` (default all zeros); returns a dict with
  `sequence_output` [batch_size, seq_length, hidden_size] and `pooled_output` [batch_size, hidden_size]
  (dense + tanh on the first token), plus `encoder_outputs` (a list) when `output_all_layers`.

  Example:
    >>> cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
    ...                  num_attention_heads=2, intermediate_size=64)
    >>> out = BertEncoder(cfg)({"input_ids": tf.ones([2, 8], tf.int32)})
    >>> out["sequence_output"].shape, out["pooled_output"].shape
    (TensorShape([2, 8, 32]), TensorShape([2, 32]))
  """

  def __init__(self, config, output_all_layers=False, skip_padding=False, **kwargs):
    kwargs.setdefault("name", "bert_encoder")
    super().__init__(**kwargs)
    config = config_from_any(config)
    self.bert_config = config  # a BertConfig
    self.output_all_layers = output_all_layers
    self.skip_padding = skip_padding
    self.embeddings = BertEmbeddings(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size,
        type_vocab_size=config.type_vocab_size,
        max_position_embeddings=config.max_position_embeddings,
        dropout_rate=config.hidden_dropout_prob, initializer_range=config.initializer_range,
        layer_norm_eps=config.layer_norm_eps, name="embeddings")
    # One attribute per block (layer_0, layer_1, ...): Keras lists are not tracked by
    # tf.train.Checkpoint, attributes are, and the names mirror the original's.
    for i in range(config.num_hidden_layers):
      setattr(self, f"layer_{i}", TransformerBlock(
          hidden_size=config.hidden_size, num_heads=config.num_attention_heads,
          intermediate_size=config.intermediate_size, activation=config.hidden_act,
          hidden_dropout_rate=config.hidden_dropout_prob,
          attention_dropout_rate=config.attention_probs_dropout_prob,
          initializer_range=config.initializer_range, layer_norm_eps=config.layer_norm_eps,
          name=f"layer_{i}"))
    self.pooler = Dense(config.hidden_size, activation="tanh",
                        initializer_range=config.initializer_range, name="pooler")
    self.build()

  @property
  def blocks(self):
    """The transformer blocks, first to last."""
    return [getattr(self, f"layer_{i}") for i in range(self.bert_config.num_hidden_layers)]

  def build(self, input_shape=None):
    hidden = self.bert_config.hidden_size
    self.embeddings.build((None, None))
    for block in self.blocks:
      block.build((None, None, hidden))
    self.pooler.build((None, hidden))
    self.built = True

  @property
  def word_embeddings(self):
    """The word embedding table [vocab_size, hidden_size], shared with the masked-LM head."""
    return self.embeddings.word_embeddings

  def call(self, inputs, training=None, output_positions=None):
    """Encodes a batch.

    Args:
      inputs: dict with `input_ids` and optionally `input_mask`, `segment_ids`
        (int [batch_size, seq_length]).
      training: whether dropout is active.
      output_positions: optional int [batch_size, num_positions]. If given, the last block is also
        run only at [CLS] and these positions, giving `gathered_output` [batch_size, num_positions,
        hidden_size] and a `pooled_output` computed from that cheaper path; `sequence_output` is
        still returned, and a caller that does not use it (a pretraining step inside tf.function)
        never pays for the full last block.
    Returns:
      dict of `sequence_output`, `pooled_output`, (`gathered_output`), (`encoder_outputs`).
    """
    input_ids = inputs["input_ids"]                                   # [B, S]
    input_mask = inputs.get("input_mask")
    segment_ids = inputs.get("segment_ids")
    if input_mask is None:
      input_mask = tf.ones_like(input_ids)
    if segment_ids is None:
      segment_ids = tf.zeros_like(input_ids)

    x = self.embeddings(input_ids, segment_ids, training=training)   # [B, S, H]
    adder = attention_adder_from_mask(input_mask)                     # [B, 1, 1, S]
    layout = None
    if self.skip_padding:
      layout = TokenLayout.from_mask(input_mask)
      x = layout.remove_padding(x)                                   # [tokens, H]
    padded = layout.restore_padding if layout is not None else (lambda y: y)
    blocks = self.blocks
    all_layers = []
    for block in blocks[:-1]:
      x = block(x, adder, training=training, layout=layout)         # [B, S, H] or [tokens, H]
      all_layers.append(x)
    last_input = x
    x = blocks[-1](last_input, adder, training=training, layout=layout)
    all_layers.append(x)
    x = padded(x)                                                   # [B, S, H]
    outputs = {"sequence_output": x}
    if output_positions is None:
      outputs["pooled_output"] = self.pooler(x[:, 0, :])             # [B, H]
    else:
      cls_position = tf.zeros_like(output_positions[:, :1])
      positions = tf.concat([cls_position, output_positions], axis=1)  # [B, 1 + P]
      gathered = blocks[-1](last_input, adder, training=training,
                            query_positions=positions, layout=layout)  # [B, 1 + P, H]
      outputs["pooled_output"] = self.pooler(gathered[:, 0, :])      # [B, H]
      outputs["gathered_output"] = gathered[:, 1:, :]                # [B, P, H]
    if self.output_all_layers:
      outputs["encoder_outputs"] = [padded(y) for y in all_layers]
    return outputs

  def get_config(self):
    config = super().get_config()
    config.update(config=self.bert_config.to_dict(), output_all_layers=self.output_all_layers,
                  skip_padding=self.skip_padding)
    return config

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    return cls(config.pop("config"), output_all_layers=config.pop("output_all_layers", False),
               skip_padding=config.pop("skip_padding", False), name=config.get("name"))
