"""Where each variable of google-research/bert's TF1 checkpoints lives in the Keras models.

The Keras variables keep the original shapes, so the mapping is a pure renaming: no transposes or
reshapes, and a TF1 -> Keras -> TF1 round trip is bit-exact. (The one exception is an original
`run_classifier.py` output layer, whose `[num_labels, hidden]` weight is transposed into our
`[hidden, num_labels]` classifier kernel.)
"""

import re

_LAYER_RE = re.compile(r"^bert/encoder/layer_(\d+)/")


def encoder_variables(encoder):
  """Maps every TF1 name under `bert/` to the matching variable of a `BertEncoder`.

  Args:
    encoder: a `BertEncoder`.
  Returns:
    dict {tf1_name: variable}, in the original's order.
  """
  e = encoder.embeddings
  names = {
      "bert/embeddings/word_embeddings": e.word_embeddings,
      "bert/embeddings/token_type_embeddings": e.token_type_embeddings,
      "bert/embeddings/position_embeddings": e.position_embeddings,
      "bert/embeddings/LayerNorm/gamma": e.layer_norm.gamma,
      "bert/embeddings/LayerNorm/beta": e.layer_norm.beta,
  }
  for i, block in enumerate(encoder.blocks):
    prefix = f"bert/encoder/layer_{i}/"
    dense_layers = {
        "attention/self/query": block.attention.query,
        "attention/self/key": block.attention.key,
        "attention/self/value": block.attention.value,
        "attention/output/dense": block.attention.output_dense,
        "intermediate/dense": block.intermediate,
        "output/dense": block.output_dense,
    }
    for tf1_scope, dense in dense_layers.items():
      names[prefix + tf1_scope + "/kernel"] = dense.kernel
      names[prefix + tf1_scope + "/bias"] = dense.bias
    for tf1_scope, norm in (("attention/output/LayerNorm", block.attention_layer_norm),
                            ("output/LayerNorm", block.output_layer_norm)):
      names[prefix + tf1_scope + "/gamma"] = norm.gamma
      names[prefix + tf1_scope + "/beta"] = norm.beta
  names["bert/pooler/dense/kernel"] = encoder.pooler.kernel
  names["bert/pooler/dense/bias"] = encoder.pooler.bias
  return names


def pretraining_head_variables(pretrainer):
  """Maps every TF1 name under `cls/` to the matching variable of a `BertPretrainer`'s heads."""
  mlm, nsp = pretrainer.masked_lm, pretrainer.next_sentence
  return {
      "cls/predictions/transform/dense/kernel": mlm.transform.kernel,
      "cls/predictions/transform/dense/bias": mlm.transform.bias,
      "cls/predictions/transform/LayerNorm/gamma": mlm.layer_norm.gamma,
      "cls/predictions/transform/LayerNorm/beta": mlm.layer_norm.beta,
      "cls/predictions/output_bias": mlm.output_bias,
      "cls/seq_relationship/output_weights": nsp.output_weights,
      "cls/seq_relationship/output_bias": nsp.output_bias,
  }


def pretrainer_variables(pretrainer):
  """All TF1 names of a full pretraining checkpoint mapped to a `BertPretrainer`'s variables."""
  names = encoder_variables(pretrainer.encoder)
  names.update(pretraining_head_variables(pretrainer))
  return names


# The output layer of the original run_classifier.py: name -> (our attribute, transposed?).
CLASSIFIER_OUTPUT = {"output_weights": ("kernel", True), "output_bias": ("bias", False)}


def layer_count(names):
  """Number of transformer layers a set of TF1 names describes (highest `layer_N` + 1)."""
  indices = [int(m.group(1)) for m in map(_LAYER_RE.match, names) if m]
  return max(indices) + 1 if indices else 0


# Training state that TF1 checkpoints carry beside the weights: the original's AdamWeightDecay slots,
# LAMB and tf.train.AdamOptimizer slots, Adam's beta powers, the step, and mixed-precision loss
# scaling (NVIDIA's BERT). Never loaded, never reported as unexpected.
_OPTIMIZER_SUFFIXES = ("/adam_m", "/adam_v", "/lamb_m", "/lamb_v", "/Adam", "/Adam_1")
_OPTIMIZER_NAMES = ("global_step", "beta1_power", "beta2_power", "current_loss_scale", "good_steps")


def is_optimizer_state(name):
  """True for variables a TF1 training checkpoint carries besides the weights (slots, step)."""
  return name in _OPTIMIZER_NAMES or name.endswith(_OPTIMIZER_SUFFIXES)
