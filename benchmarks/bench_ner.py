"""Token-classification training throughput against run_classifier's step, same model and length.

Times `tagging.TokenFineTuner`'s step (BertTokenClassifier: a dense layer on every token, the
masked-mean loss over first sub-tokens) and `classification.FineTuner`'s step (BertClassifier on
the pooled output) on the same batches: the windows that run_ner builds from the bundled NER
training data (data/ner/train.txt, real lengths and labels), with --skip_padding as both commands
default to. Same encoder config, sequence length, batch, optimizer and strategy; the two runners
alternate repeats, warm-up excluded, and the ratio (tagger / classifier examples per second) is
printed.

  python benchmarks/bench_ner.py                              # BERT-small, seq 128, batch 32, CPU
  python benchmarks/bench_ner.py --preset=tiny --seq_length=64 --batch=32
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
  p.add_argument("--data_dir", default=os.path.join(REPO, "data/ner"))
  p.add_argument("--vocab_file", default=os.path.join(REPO, "data/vocab/bert-base-uncased-vocab.txt"))
  p.add_argument("--steps", type=int, default=5, help="steps per timed repeat")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--distinct_batches", type=int, default=8)
  return p.parse_args(argv)


def ner_batches(args):
  """(features, token labels, sentence labels) batches of run_ner's training windows."""
  from bert_tf.finetuning import ner_data
  from bert_tf.text.tokenization import FullTokenizer
  tokenizer = FullTokenizer(args.vocab_file, do_lower_case=True)
  sentences = ner_data.read_split(args.data_dir, "train")
  labels = {t: i for i, t in enumerate(ner_data.labels_from_training(sentences))}
  features = ner_data.build_features(sentences, ner_data.word_pieces(tokenizer, sentences), labels,
                                     args.seq_length, (args.seq_length - 2) // 2,
                                     tokenizer.cls_id, tokenizer.sep_id)
  rng = np.random.RandomState(0)
  out = []
  for _ in range(args.distinct_batches):
    rows = rng.choice(features.num_windows, args.batch, replace=False)
    inputs = {k: v[rows] for k, v in features.model_inputs().items()}
    out.append((inputs, features.label_ids[rows], rng.randint(0, 2, args.batch).astype("int32")))
  fill = float(features.input_mask.mean())
  return out, len(labels), fill


class Runner:
  def __init__(self, name, args, data, num_labels):
    from bert_tf.configs import BertConfig
    from bert_tf.finetuning import classification, tagging
    from bert_tf.modeling import BertClassifier
    from bert_tf.pretraining import training
    from bert_tf.pretraining.optimization import create_optimizer
    layers, hidden, heads, intermediate = PRESETS[args.preset]
    config = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=intermediate,
                        max_position_embeddings=max(512, args.seq_length))
    strategy = training.create_strategy("one_device")
    with strategy.scope():
      if name == "run_ner":
        model = tagging.BertTokenClassifier(config, num_labels)
        model.encoder.pooler.trainable = False  # as run_ner builds it
      else:
        model = BertClassifier(config, 2)
      model.encoder.skip_padding = True
      optimizer = create_optimizer(2e-5, 100000, 100)
    if name == "run_ner":
      tuner = tagging.TokenFineTuner(model, optimizer, strategy, global_batch_size=args.batch)
      label_spec = tf.TensorSpec([args.batch, args.seq_length], tf.int32)
      pick = lambda batch: (batch[0], batch[1])  # noqa: E731
    else:
      tuner = classification.FineTuner(model, optimizer, strategy, is_regression=False,
                                       global_batch_size=args.batch)
      label_spec = tf.TensorSpec([args.batch], tf.int32)
      pick = lambda batch: (batch[0], batch[2])  # noqa: E731
    dataset = tf.data.Dataset.from_generator(
        lambda: (pick(b) for b in data),
        output_signature=({k: tf.TensorSpec([args.batch, args.seq_length], tf.int32)
                           for k in ("input_ids", "input_mask", "segment_ids")},
                          label_spec)).cache().repeat()
    self.iterator = iter(strategy.experimental_distribute_dataset(dataset))
    self.train_steps = tuner.make_train_function()
    self.steps = tf.constant(args.steps)
    self.name = name

  def run(self):
    float(self.train_steps(self.iterator, self.steps))


def main(argv=None):
  args = parse_args(argv)
  data, num_labels, fill = ner_batches(args)
  runners = [Runner("run_classifier", args, data, num_labels),
             Runner("run_ner", args, data, num_labels)]

  def examples_per_second(runner):
    start = time.perf_counter()
    runner.run()
    return args.steps * args.batch / (time.perf_counter() - start)

  medians = alternating_medians(runners, args.warmup, args.repeats, examples_per_second)
  ratio = medians["run_ner"] / medians["run_classifier"]
  print(f"{args.preset} seq={args.seq_length} batch={args.batch}, {num_labels} tags, real tokens "
        f"{fill:.0%} (run_ner windows of {os.path.basename(args.data_dir)}/train.txt): "
        f"run_classifier step {medians['run_classifier']:.1f} examples/s, run_ner step "
        f"{medians['run_ner']:.1f} examples/s, ratio {ratio:.2f}x", flush=True)
  report.emit({"preset": args.preset, "seq_length": args.seq_length, "batch": args.batch,
               "num_labels": num_labels, "real_token_fraction": fill,
               "examples_per_sec": medians, "ratio": ratio})


if __name__ == "__main__":
  main()
