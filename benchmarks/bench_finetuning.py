"""Fine-tuning throughput: run_classifier's training step with and without --skip_padding.

Sentence-classification sets are mostly padding at the usual --max_seq_length (the bundled
sentiment sentences average about 27 tokens of 128). With --skip_padding (the default) the
encoder's dense layers, LayerNorms, dropouts and feed-forward networks run on the real tokens only.
This times `classification.FineTuner`'s step (classifier, AdamW, clipping) on batches whose lengths
are those of the tokenized training sentences, both ways in the same run, alternating repeats,
warm-up excluded, and prints the ratio.

  python benchmarks/bench_finetuning.py                      # BERT-small, seq 128, batch 32, CPU
  python benchmarks/bench_finetuning.py --preset=base --seq_length=128 --batch=64
"""

import argparse
import os
import sys
import time

import report  # benchmarks/report.py

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench_pretraining import PRESETS, alternating_medians  # noqa: E402


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--preset", choices=sorted(PRESETS), default="small")
  p.add_argument("--seq_length", type=int, default=128)
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--data", default=os.path.join(REPO, "data/sentiment/train.tsv"),
                 help="TSV with a header and the sentence in the first column")
  p.add_argument("--vocab_file", default=os.path.join(REPO, "data/vocab/bert-base-uncased-vocab.txt"))
  p.add_argument("--steps", type=int, default=5, help="steps per timed repeat")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--warmup", type=int, default=2)
  return p.parse_args(argv)


def sentence_lengths(args, limit=5000):
  """Token counts ([CLS] text [SEP], capped at --seq_length) of the data's first sentences."""
  from bert_tf.text import word_cache_tokenizer
  tokenizer = word_cache_tokenizer.CachedFullTokenizer(args.vocab_file, do_lower_case=True)
  with open(args.data, encoding="utf-8") as f:
    rows = [line.rstrip("\n").split("\t")[0] for line in f][1:limit + 1]
  return np.array([min(args.seq_length, len(tokenizer.tokenize(text)) + 2) for text in rows])


def batches(args, lengths, count=8, seed=0):
  rng = np.random.RandomState(seed)
  out = []
  for _ in range(count):
    n = rng.choice(lengths, args.batch)
    mask = (np.arange(args.seq_length)[None, :] < n[:, None]).astype("int32")
    features = {"input_ids": rng.randint(1000, 30000, mask.shape).astype("int32") * mask,
                "input_mask": mask, "segment_ids": np.zeros_like(mask)}
    out.append((features, rng.randint(0, 2, args.batch).astype("int32")))
  return out


class Runner:
  def __init__(self, args, data, skip_padding):
    from bert_tf.finetuning import classification
    from bert_tf.pretraining import training
    from bert_tf.configs import BertConfig
    from bert_tf.modeling import BertClassifier
    from bert_tf.pretraining.optimization import create_optimizer
    layers, hidden, heads, intermediate = PRESETS[args.preset]
    config = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=intermediate)
    strategy = training.create_strategy("one_device")
    with strategy.scope():
      model = BertClassifier(config, 2)
      model.encoder.skip_padding = skip_padding
      optimizer = create_optimizer(2e-5, 100000, 100)
    tuner = classification.FineTuner(model, optimizer, strategy, is_regression=False,
                                     global_batch_size=args.batch)
    dataset = tf.data.Dataset.from_generator(
        lambda: iter(data),
        output_signature=({k: tf.TensorSpec([args.batch, args.seq_length], tf.int32)
                           for k in ("input_ids", "input_mask", "segment_ids")},
                          tf.TensorSpec([args.batch], tf.int32))).cache().repeat()
    self.iterator = iter(strategy.experimental_distribute_dataset(dataset))
    self.train_steps = tuner.make_train_function()
    self.steps = tf.constant(args.steps)
    self.name = "skip_padding" if skip_padding else "padded"

  def run(self):
    float(self.train_steps(self.iterator, self.steps))


def main(argv=None):
  args = parse_args(argv)
  lengths = sentence_lengths(args)
  fill = float(np.minimum(lengths, args.seq_length).mean() / args.seq_length)
  data = batches(args, lengths)
  runners = [Runner(args, data, False), Runner(args, data, True)]

  def examples_per_second(runner):
    start = time.perf_counter()
    runner.run()
    return args.steps * args.batch / (time.perf_counter() - start)

  medians = alternating_medians(runners, args.warmup, args.repeats, examples_per_second)
  ratio = medians["skip_padding"] / medians["padded"]
  print(f"{args.preset} seq={args.seq_length} batch={args.batch}, real tokens {fill:.0%} "
        f"({os.path.basename(args.data)}): padded {medians['padded']:.1f} examples/s, "
        f"skip_padding {medians['skip_padding']:.1f} examples/s, ratio {ratio:.2f}x", flush=True)
  report.emit({"preset": args.preset, "seq_length": args.seq_length, "batch": args.batch,
               "real_token_fraction": fill, "examples_per_sec": medians, "ratio": ratio})


if __name__ == "__main__":
  main()
