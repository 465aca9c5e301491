"""Does a Hugging Face BERT directory imported into bert_tf compute what the checkpoint computes?

Loads the directory with `bert_tf.checkpoints.load_hf_model` and compares the encoder's hidden
states (every layer's output at the real tokens, and the pooled output) on a few sentences of
`data/sentiment/dev.tsv` with two independent forward passes of the same weights:
  - `numpy_bert`, below: a plain float64 numpy BERT written from the architecture, reading the
    safetensors tensors by their Hugging Face names;
  - keras-hub's own Hugging Face converter (`keras_hub.models.BertBackbone.from_preset(DIR)`),
    when keras-hub is installed. Its BERT always uses the tanh-approximated GELU, so it is compared
    with a copy of the imported encoder switched to that GELU (this checks the weights' mapping).
It also exports the imported model back (`save_hf_directory`) and checks that every tensor of the
original file comes back bit for bit. Prints the max abs differences; exits 1 above --tolerance.

Usage (the real MiniLM of issue 15; see docs/checkpoints.md for getting it):
  python benchmarks/check_hf_parity.py --hf_dir=/tmp/minilm
"""

import math
import os
import sys
import tempfile

from absl import app, flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

import numpy as np  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
  # Not at import time: tests import numpy_bert from here next to modules with the same flags.
  flags.DEFINE_string("hf_dir", None, "The Hugging Face BERT directory to check.")
  flags.DEFINE_integer("num_sentences", 16, "Sentences of data/sentiment/dev.tsv to encode.")
  flags.DEFINE_integer("max_seq_length", 64, "Tokens per sentence (padded batch).")
  flags.DEFINE_float("tolerance", 1e-5, "Largest acceptable max abs difference.")

_ERF = np.vectorize(math.erf, otypes=[np.float64])
_ACTIVATIONS = {
    "gelu": lambda x: 0.5 * x * (1.0 + _ERF(x / math.sqrt(2.0))),
    "gelu_new": lambda x: 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3))),
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
}
_ACTIVATIONS["gelu_pytorch_tanh"] = _ACTIVATIONS["gelu_fast"] = _ACTIVATIONS["gelu_new"]


def numpy_bert(tensors, config, input_ids, input_mask, segment_ids):
  """A Hugging Face `BertModel` forward pass in float64 numpy (inference: no dropout).

  Args:
    tensors: {name: array} with the HF names, with or without the `bert.` prefix.
    config: the `config.json` dict.
    input_ids, input_mask, segment_ids: int [batch_size, seq_length].
  Returns:
    (list of every layer's output [batch_size, seq_length, hidden] (embeddings excluded),
    pooled output [batch_size, hidden]).
  """
  prefix = "bert." if "bert.embeddings.word_embeddings.weight" in tensors else ""

  def w(name):
    return np.asarray(tensors[prefix + name], np.float64)

  eps = config.get("layer_norm_eps", 1e-12)
  act = _ACTIVATIONS[config.get("hidden_act", "gelu")]
  heads = config["num_attention_heads"]

  def norm(x, name):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w(name + ".weight") + w(name + ".bias")

  def linear(x, name):
    return x @ w(name + ".weight").T + w(name + ".bias")

  batch, length = input_ids.shape
  x = (w("embeddings.word_embeddings.weight")[input_ids]
       + w("embeddings.position_embeddings.weight")[np.arange(length)][None]
       + w("embeddings.token_type_embeddings.weight")[segment_ids])
  x = norm(x, "embeddings.LayerNorm")
  blocked = np.where(input_mask[:, None, None, :] > 0, 0.0, -np.inf)   # [B, 1, 1, S]
  layers = []
  for i in range(config["num_hidden_layers"]):
    p = f"encoder.layer.{i}."

    def split(y):
      return y.reshape(batch, length, heads, -1).transpose(0, 2, 1, 3)   # [B, N, S, d]

    q = split(linear(x, p + "attention.self.query"))
    k = split(linear(x, p + "attention.self.key"))
    v = split(linear(x, p + "attention.self.value"))
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(q.shape[-1]) + blocked
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    probs = scores / scores.sum(-1, keepdims=True)
    context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, -1)
    x = norm(linear(context, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
    hidden = act(linear(x, p + "intermediate.dense"))
    x = norm(linear(hidden, p + "output.dense") + x, p + "output.LayerNorm")
    layers.append(x)
  pooled = np.tanh(linear(x[:, 0], "pooler.dense"))
  return layers, pooled


def bert_tf_hidden_states(encoder, input_ids, input_mask, segment_ids):
  """(every layer's output, pooled output) of a bert_tf `BertEncoder`, as numpy arrays."""
  encoder.output_all_layers = True
  out = encoder({"input_ids": input_ids, "input_mask": input_mask, "segment_ids": segment_ids},
                training=False)
  return [np.asarray(y) for y in out["encoder_outputs"]], np.asarray(out["pooled_output"])


def max_diff(layers_a, pooled_a, layers_b, pooled_b, input_mask):
  """Max abs difference over every layer's output at the real tokens and the pooled output."""
  real = input_mask.astype(bool)
  diffs = [np.max(np.abs(a[real] - b[real])) for a, b in zip(layers_a, layers_b)]
  return float(max(max(diffs), np.max(np.abs(pooled_a - pooled_b))))


def _sentences(n):
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "data", "sentiment", "dev.tsv")
  with open(path, encoding="utf-8") as f:
    rows = [line.rstrip("\n").split("\t")[0] for line in f][1:]
  return rows[:n]


def main(argv):
  del argv
  import json

  from safetensors.numpy import load_file

  from bert_tf.checkpoints import huggingface as hf
  from bert_tf.finetuning.classification import load_text_encoder
  if not FLAGS.hf_dir:
    raise app.UsageError("--hf_dir is required")
  directory = FLAGS.hf_dir
  model, info = hf.load_hf_model(directory)
  encoder = getattr(model, "encoder", model)
  with open(os.path.join(directory, hf.CONFIG_NAME), encoding="utf-8") as f:
    config = json.load(f)
  tensors = load_file(os.path.join(directory, hf.SAFETENSORS_NAME))

  with tempfile.TemporaryDirectory() as scratch:
    vocab_file = hf.hf_vocab_file(directory, scratch)
    do_lower_case, _ = hf.hf_do_lower_case(directory)
    text = load_text_encoder(vocab_file, do_lower_case is not False, FLAGS.max_seq_length)
    import tensorflow as tf
    packed = text(tf.constant(_sentences(FLAGS.num_sentences)))
    ids, mask, segments = (packed[k].numpy() for k in ("input_ids", "input_mask", "segment_ids"))
    print(f"{directory}: {info['checkpoint']}, {len(tensors)} tensors; {len(ids)} sentences, "
          f"{int(mask.sum())} real tokens of {mask.size}")
    ours = bert_tf_hidden_states(encoder, ids, mask, segments)
    reference = numpy_bert(tensors, config, ids, mask, segments)
    worst = max_diff(*ours, *reference, mask)
    print(f"max abs diff bert_tf vs numpy float64 reference (all {len(ours[0])} layers + pooled): "
          f"{worst:.3g}")

    try:
      import keras_hub
    except ImportError:
      print("keras-hub not installed: its converter is not compared")
    else:
      # keras-hub's BertBackbone always uses the tanh-approximated GELU, whatever config.json says;
      # compare it with a copy of our encoder that does the same, so that only the weights' mapping
      # is tested, and report the gap the approximation makes on its own.
      import dataclasses

      from bert_tf.modeling import BertEncoder
      tanh_encoder = BertEncoder(dataclasses.replace(encoder.bert_config, hidden_act="gelu"))
      for source, target in zip(encoder.weights, tanh_encoder.weights):
        target.assign(source)
      tanh_layers, tanh_pooled = bert_tf_hidden_states(tanh_encoder, ids, mask, segments)
      backbone = keras_hub.models.BertBackbone.from_preset(directory)
      kh = backbone({"token_ids": ids, "segment_ids": segments, "padding_mask": mask})
      kh_diff = max_diff([tanh_layers[-1]], tanh_pooled, [np.asarray(kh["sequence_output"])],
                         np.asarray(kh["pooled_output"]), mask)
      print(f"max abs diff keras-hub's HF converter vs bert_tf with its tanh GELU (last layer + "
            f"pooled): {kh_diff:.3g}")
      if encoder.bert_config.hidden_act != "gelu":
        gap = max_diff(ours[0][-1:], ours[1], tanh_layers[-1:], tanh_pooled, mask)
        print(f"  (for scale: tanh GELU instead of config.json's {config.get('hidden_act')!r} "
              f"changes the outputs by {gap:.3g})")
      worst = max(worst, kh_diff)

    exported = os.path.join(scratch, "exported")
    hf.save_hf_directory(model, exported, vocab_file, do_lower_case is not False)
    again = load_file(os.path.join(exported, hf.SAFETENSORS_NAME))
    prefix = "bert." if any(n.startswith("bert.") for n in again) and not any(
        n.startswith("bert.") for n in tensors) else ""
    differ = [n for n, t in tensors.items()
              if (prefix + n) not in again or again[prefix + n].dtype != t.dtype
              or again[prefix + n].tobytes() != t.tobytes()]
    print(f"export: {len(tensors) - len(differ)} of {len(tensors)} tensors bit-exact"
          f"{'; differ: ' + ', '.join(differ[:5]) if differ else ''}")
  if worst > FLAGS.tolerance or differ:
    print(f"FAIL (tolerance {FLAGS.tolerance})")
    sys.exit(1)
  print(f"OK (tolerance {FLAGS.tolerance})")


if __name__ == "__main__":
  define_flags()
  app.run(main)
