"""How long `load_google_checkpoint` takes on a BERT-Base-sized original checkpoint (110M parameters).

Writes a random checkpoint with the original's variable names and shapes (optionally with Adam
slots, like an unstripped pretraining checkpoint) into a temporary directory, then measures, in the
same run:
  - reference: reading every weight tensor with `tf.train.load_checkpoint` (the I/O floor);
  - `load_google_checkpoint`: building the Keras pretrainer + checking + assigning every variable.

Usage:
  python benchmarks/bench_checkpoint_load.py [--with_adam_slots] [--repeats=3]
"""

import json
import os
import shutil
import sys
import tempfile
import time

from absl import app, flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bert_tf import checkpoints  # noqa: E402

flags.DEFINE_bool("with_adam_slots", False, "Also store adam_m/adam_v for every weight.")
flags.DEFINE_integer("repeats", 3, "Timed repetitions (the best is reported).")
FLAGS = flags.FLAGS

BERT_BASE = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, hidden_act="gelu", hidden_dropout_prob=0.1,
                 attention_probs_dropout_prob=0.1, max_position_embeddings=512, type_vocab_size=2,
                 initializer_range=0.02)


def tf1_shapes(c):
  """The variable names and shapes of an original BERT pretraining checkpoint for config `c`."""
  h, i, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
  shapes = {"bert/embeddings/word_embeddings": [v, h],
            "bert/embeddings/token_type_embeddings": [c["type_vocab_size"], h],
            "bert/embeddings/position_embeddings": [c["max_position_embeddings"], h],
            "bert/embeddings/LayerNorm/gamma": [h], "bert/embeddings/LayerNorm/beta": [h]}
  for n in range(c["num_hidden_layers"]):
    p = f"bert/encoder/layer_{n}/"
    for scope, (rows, cols) in {"attention/self/query": (h, h), "attention/self/key": (h, h),
                                "attention/self/value": (h, h), "attention/output/dense": (h, h),
                                "intermediate/dense": (h, i), "output/dense": (i, h)}.items():
      shapes[p + scope + "/kernel"], shapes[p + scope + "/bias"] = [rows, cols], [cols]
    for scope in ("attention/output/LayerNorm", "output/LayerNorm"):
      shapes[p + scope + "/gamma"], shapes[p + scope + "/beta"] = [h], [h]
  shapes.update({"bert/pooler/dense/kernel": [h, h], "bert/pooler/dense/bias": [h],
                 "cls/predictions/transform/dense/kernel": [h, h],
                 "cls/predictions/transform/dense/bias": [h],
                 "cls/predictions/transform/LayerNorm/gamma": [h],
                 "cls/predictions/transform/LayerNorm/beta": [h],
                 "cls/predictions/output_bias": [v],
                 "cls/seq_relationship/output_weights": [2, h],
                 "cls/seq_relationship/output_bias": [2]})
  return shapes


def write_random_checkpoint(directory, with_adam_slots):
  rng = np.random.default_rng(0)
  tensors = {name: rng.standard_normal(shape, dtype=np.float32) * 0.02
             for name, shape in tf1_shapes(BERT_BASE).items()}
  num_params = sum(t.size for t in tensors.values())
  if with_adam_slots:
    for name in list(tensors):
      tensors[name + "/adam_m"] = tensors[name] * 0.1
      tensors[name + "/adam_v"] = tensors[name] ** 2
  tensors["global_step"] = np.int64(1000)
  prefix = os.path.join(directory, "bert_model.ckpt")
  names = sorted(tensors)
  tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                    tensors=[tf.constant(tensors[n]) for n in names])
  with open(os.path.join(directory, "bert_config.json"), "w") as f:
    json.dump(BERT_BASE, f)
  return prefix, num_params


def read_every_weight(prefix):
  reader = tf.train.load_checkpoint(prefix)
  return sum(reader.get_tensor(n).size for n in reader.get_variable_to_shape_map()
             if not (n.endswith("/adam_m") or n.endswith("/adam_v")))


def best_of(fn, repeats):
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)


def main(argv):
  del argv
  directory = tempfile.mkdtemp(prefix="bench_ckpt_")
  try:
    prefix, num_params = write_random_checkpoint(directory, FLAGS.with_adam_slots)
    size = sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory))
    print(f"checkpoint: {num_params / 1e6:.1f}M parameters, {size / 2**20:.0f} MiB on disk"
          f"{' (with Adam slots)' if FLAGS.with_adam_slots else ''}")
    config_file = os.path.join(directory, "bert_config.json")
    checkpoints.load_google_checkpoint(prefix, config_file)  # warm-up: imports, page cache
    reference = best_of(lambda: read_every_weight(prefix), FLAGS.repeats)
    ours = best_of(lambda: checkpoints.load_google_checkpoint(prefix, config_file), FLAGS.repeats)
    print(f"reference  read every weight tensor: {reference:6.2f} s")
    print(f"load_google_checkpoint (build+load):  {ours:6.2f} s  "
          f"({ours / reference:.1f}x the bare read; target < 10 s)")
  finally:
    shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
