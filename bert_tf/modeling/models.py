"""The models users build: `BertPretrainer` (encoder + MLM + NSP heads) and `BertClassifier`."""

import keras
import tensorflow as tf

from bert_tf.modeling.encoder import BertEncoder, config_from_any
from bert_tf.modeling.heads import MaskedLMHead, NextSentenceHead
from bert_tf.modeling.layers import Dense


class BertPretrainer(keras.Model):
  """BERT with its two pretraining heads, as google-research/bert's `run_pretraining.py` builds it.

  Args:
    config: a `BertConfig` (or its dict).

  Called on a feature dict with `input_ids`, `input_mask`, `segment_ids` (int [batch_size, seq_length])
  and `masked_lm_positions` (int [batch_size, num_predictions]); other keys (labels, weights) are
  ignored. Returns a dict with `sequence_output` [B, S, H], `pooled_output` [B, H], `mlm_logits`
  float32 [B, P, vocab_size] (only at the masked positions, tied to the word embeddings) and
  `nsp_logits` float32 [B, 2]. The encoder is the attribute `encoder` (also its checkpoint name).
  """

  def __init__(self, config, **kwargs):
    kwargs.setdefault("name", "bert_pretrainer")
    super().__init__(**kwargs)
    config = config_from_any(config)
    self.bert_config = config  # a BertConfig
    self.encoder = BertEncoder(config, name="encoder")
    self.masked_lm = MaskedLMHead(config.hidden_size, config.vocab_size,
                                  activation=config.hidden_act,
                                  initializer_range=config.initializer_range,
                                  layer_norm_eps=config.layer_norm_eps, name="masked_lm")
    self.next_sentence = NextSentenceHead(config.hidden_size,
                                          initializer_range=config.initializer_range,
                                          name="next_sentence")
    self.build()

  def build(self, input_shape=None):
    self.masked_lm.build()
    self.next_sentence.build()
    self.built = True

  def call(self, features, training=None):
    # Only [CLS] and the masked positions go through the heads, so the last transformer block is
    # evaluated only there for them (`gathered_output`); `sequence_output` stays available.
    encoded = self.encoder(
        {k: features[k] for k in ("input_ids", "input_mask", "segment_ids") if k in features},
        training=training, output_positions=features["masked_lm_positions"])
    mlm_logits = self.masked_lm(encoded.pop("gathered_output"),
                                self.encoder.word_embeddings)                    # [B, P, V]
    nsp_logits = self.next_sentence(encoded["pooled_output"])                     # [B, 2]
    outputs = dict(encoded)
    outputs.update(mlm_logits=mlm_logits, nsp_logits=nsp_logits)
    return outputs

  def get_config(self):
    config = super().get_config()
    config.update(config=self.bert_config.to_dict())
    return config

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    return cls(config.pop("config"), name=config.get("name"))


class BertClassifier(keras.Model):
  """A sequence (pair) classifier: dropout and a dense layer on the pooled [CLS] output.

  Args:
    config: a `BertConfig` (or its dict).
    num_classes: number of labels (1 for regression).
    dropout_rate: dropout before the output layer; defaults to the config's `hidden_dropout_prob`.

  Called on a dict with `input_ids`, `input_mask`, `segment_ids` (int [batch_size, seq_length]);
  returns float32 logits [batch_size, num_classes]. The encoder is the attribute `encoder`.
  """

  def __init__(self, config, num_classes, dropout_rate=None, **kwargs):
    kwargs.setdefault("name", "bert_classifier")
    super().__init__(**kwargs)
    config = config_from_any(config)
    self.bert_config = config  # a BertConfig
    self.num_classes = num_classes
    self.dropout_rate = config.hidden_dropout_prob if dropout_rate is None else dropout_rate
    self.encoder = BertEncoder(config, name="encoder")
    self.dropout = keras.layers.Dropout(self.dropout_rate, name="dropout")
    self.classifier = Dense(num_classes, initializer_range=config.initializer_range,
                            name="classifier")
    self.build()

  def build(self, input_shape=None):
    self.classifier.build((None, self.bert_config.hidden_size))
    self.built = True

  def call(self, features, training=None):
    encoded = self.encoder(
        {k: features[k] for k in ("input_ids", "input_mask", "segment_ids") if k in features},
        training=training)
    pooled = self.dropout(encoded["pooled_output"], training=training)   # [B, H]
    return tf.cast(self.classifier(pooled), tf.float32)                # [B, num_classes]

  def get_config(self):
    config = super().get_config()
    config.update(config=self.bert_config.to_dict(), num_classes=self.num_classes,
                  dropout_rate=self.dropout_rate)
    return config

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    return cls(config.pop("config"), config.pop("num_classes"),
               dropout_rate=config.pop("dropout_rate", None), name=config.get("name"))

def model_parts(model):
  """(encoder, pretrainer or None, classifier or None) of a supported model."""
  if isinstance(model, BertPretrainer):
    return model.encoder, model, None
  if isinstance(model, BertClassifier):
    return model.encoder, None, model
  if isinstance(model, BertEncoder):
    return model, None, None
  raise TypeError(f"expected a BertPretrainer, BertClassifier or "
                  f"BertEncoder, got {type(model).__name__}")
