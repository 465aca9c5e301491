"""Keras 3 BERT (TensorFlow backend): encoder, pretraining heads, classifier and the pretraining loss.

    from bert_tf.modeling import BertEncoder, BertPretrainer, BertClassifier, pretraining_losses
"""

from bert_tf.modeling.encoder import BertEncoder
from bert_tf.modeling.heads import MaskedLMHead, NextSentenceHead
from bert_tf.modeling.losses import masked_lm_loss, next_sentence_loss, pretraining_losses
from bert_tf.modeling.models import BertClassifier, BertPretrainer

__all__ = [
    "BertEncoder", "BertPretrainer", "BertClassifier", "MaskedLMHead", "NextSentenceHead",
    "pretraining_losses", "masked_lm_loss", "next_sentence_loss",
]
