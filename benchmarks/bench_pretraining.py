"""Pretraining throughput: bert_tf's training step against keras-hub's BertMaskedLM, same run.

Both models get the same config, global batch, sequence length, number of masked positions,
precision policy and XLA setting, the same in-memory synthetic batches (so the input pipeline is not
measured; see bench_input_pipeline.py), an AdamW optimizer with global-norm clipping, and the same
number of steps per host call. Our step also trains the next-sentence head (keras-hub's BertMaskedLM
has none). Without XLA our encoder skips the padding tokens (`--skip_padding`, on by default), so the
ratio grows with the batches' padding: --lengths picks it (the line printed says how many of the
tokens are real); 'austen' uses the lengths create_pretraining_data.py gives the bundled novel.
Warm-up calls (tracing, XLA compilation) are excluded; each repeat times `--steps` steps; the two
models are timed alternately and the median of the repeats is reported.

On a GPU it also prints model FLOPs utilisation:
  FLOPs per sequence = 6 * (dense parameters) * seq_len            (matmuls, forward + backward)
                     + 12 * layers * hidden * seq_len^2            (attention scores and context)
                     + 6 * hidden * vocab * predictions            (MLM output layer, masked positions only)

Examples:
  python benchmarks/bench_pretraining.py                       # BERT-small, float32 and bfloat16, CPU
  python benchmarks/bench_pretraining.py --preset=base --batch=256 --precisions=bfloat16 --jit_compile
"""

import argparse
import functools
import os
import statistics
import sys
import time
import warnings

import report  # benchmarks/report.py

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

PRESETS = {  # layers, hidden, heads, intermediate
    "tiny": (2, 128, 2, 512),
    "small": (4, 512, 8, 2048),
    "base": (12, 768, 12, 3072),
}
PEAK_TFLOPS = {"H100": {"bfloat16": 989.0, "float16": 989.0, "float32": 67.0},
               "H200": {"bfloat16": 989.0, "float16": 989.0, "float32": 67.0},
               "A100": {"bfloat16": 312.0, "float16": 312.0, "float32": 19.5}}


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--preset", choices=sorted(PRESETS), default="small")
  p.add_argument("--vocab_size", type=int, default=30522)
  p.add_argument("--seq_length", type=int, default=128)
  p.add_argument("--predictions", type=int, default=20)
  p.add_argument("--batch", type=int, default=32, help="global batch per step")
  p.add_argument("--lengths", default="uniform",
                 help="real (unpadded) lengths of the synthetic sequences: 'uniform' (between half "
                 "and all of --seq_length, 75%% real tokens), 'full' (no padding), 'austen' (those "
                 "of create_pretraining_data.py's records of data/corpus/austen.txt), or the path "
                 "of a pretraining TFRecord file to draw them from")
  p.add_argument("--distinct_batches", type=int, default=16,
                 help="different in-memory batches, cycled (the same for both models): enough "
                 "sequences for their padding to be that of --lengths, not of one lucky batch")
  p.add_argument("--precisions", default="float32,bfloat16")
  p.add_argument("--jit_compile", action="store_true", help="XLA for both models")
  p.add_argument("--steps", type=int, default=5, help="steps per timed repeat (= steps per host call)")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--warmup", type=int, default=2, help="untimed calls before timing")
  p.add_argument("--peak_tflops", type=float, default=None, help="device peak for MFU (GPU)")
  p.add_argument("--skip_keras_hub", action="store_true")
  return p.parse_args(argv)


def bert_config(args):
  from bert_tf.configs import BertConfig
  layers, hidden, heads, intermediate = PRESETS[args.preset]
  return BertConfig(vocab_size=args.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                    num_attention_heads=heads, intermediate_size=intermediate,
                    max_position_embeddings=max(512, args.seq_length))


def sequence_lengths(args, rng):
  """Real lengths of the batch's sequences (see --lengths)."""
  b, s = args.batch, args.seq_length
  lengths = getattr(args, "lengths", "uniform")
  if lengths == "uniform":
    return rng.randint(s // 2, s + 1, size=b)
  if lengths == "full":
    return np.full(b, s)
  return rng.choice(record_lengths(lengths, s, args.predictions), size=b)


@functools.lru_cache(maxsize=None)
def record_lengths(source, seq_length, predictions):
  """Real lengths of up to 4096 records of a pretraining TFRecord file (`source`), or of
  create_pretraining_data.py's records of the bundled austen.txt for "austen"; read once per run,
  however many batches are drawn from them."""
  from bert_tf import features
  path = austen_records(seq_length, predictions) if source == "austen" else source
  spec = {"input_mask": features.pretraining_feature_spec(seq_length, predictions)["input_mask"]}
  masks = [tf.io.parse_single_example(r, spec)["input_mask"].numpy()
           for r in tf.data.TFRecordDataset(path).take(4096)]
  if not masks:
    raise SystemExit(f"--lengths={source}: no records")
  return np.array([int(m.sum()) for m in masks])


def austen_records(seq_length, predictions):
  """Writes create_pretraining_data.py's records of the bundled austen.txt; returns their path."""
  import subprocess
  import tempfile
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  path = os.path.join(tempfile.mkdtemp(prefix="bench_pretraining_"), "austen.tfrecord")
  data = os.path.join(repo, "data")
  subprocess.run([sys.executable, os.path.join(repo, "create_pretraining_data.py"),
                  f"--input_file={data}/corpus/austen.txt", f"--output_file={path}",
                  f"--vocab_file={data}/vocab/bert-base-uncased-vocab.txt",
                  f"--max_seq_length={seq_length}", f"--max_predictions_per_seq={predictions}",
                  "--dupe_factor=1"], check=True, capture_output=True)
  return path


def synthetic_batches(args):
  """`--distinct_batches` batches stacked: a dataset of them yields one whole batch per element."""
  batches = [synthetic_batch(args, seed=i) for i in range(max(1, getattr(args, "distinct_batches", 16)))]
  return {name: np.stack([b[name] for b in batches]) for name in batches[0]}


def synthetic_batch(args, seed=0):
  """One batch of pretraining features, padded as --lengths says, with ~15% masked positions."""
  rng = np.random.RandomState(seed)
  b, s, p = args.batch, args.seq_length, args.predictions
  lengths = sequence_lengths(args, rng)
  mask = (np.arange(s)[None, :] < lengths[:, None]).astype("int32")          # [B, S]
  ids = rng.randint(1000, args.vocab_size, size=(b, s)).astype("int32") * mask
  segments = (np.arange(s)[None, :] >= (lengths // 2)[:, None]).astype("int32") * mask
  # Masked positions among the real tokens (after [CLS]).
  positions = np.sort(rng.randint(1, np.maximum(2, lengths)[:, None], size=(b, p)), axis=1)
  positions = positions.astype("int32")
  weights = np.ones((b, p), "float32")
  return {
      "input_ids": ids, "input_mask": mask, "segment_ids": segments,
      "masked_lm_positions": positions,
      "masked_lm_ids": rng.randint(1000, args.vocab_size, size=(b, p)).astype("int32"),
      "masked_lm_weights": weights,
      "next_sentence_labels": rng.randint(0, 2, size=(b, 1)).astype("int32"),
  }


class OursRunner:
  """bert_tf: BertPretrainer + create_optimizer + PretrainingTask on one device."""

  name = "bert_tf"

  def __init__(self, args, precision):
    from bert_tf.pretraining import training
    from bert_tf.modeling import BertPretrainer
    from bert_tf.pretraining.optimization import create_optimizer
    self.args = args
    strategy = training.create_strategy("one_device")
    with strategy.scope():
      self.model = BertPretrainer(bert_config(args))
      optimizer = create_optimizer(1e-4, 100000, 1000)
    self.task = training.PretrainingTask(self.model, optimizer, strategy, jit_compile=args.jit_compile,
                                         mixed_precision=precision)
    data = tf.data.Dataset.from_tensor_slices(synthetic_batches(args)).repeat()
    self.iterator = iter(strategy.experimental_distribute_dataset(data))
    self.num_steps = tf.constant(args.steps)

  def run(self):
    totals, steps, loss = self.task.train_loop(self.iterator, self.num_steps)
    float(loss)  # wait for the device
    return int(steps)

  @property
  def num_parameters(self):
    return sum(int(np.prod(v.shape)) for v in self.model.trainable_variables)


class KerasHubRunner:
  """keras-hub BertBackbone + BertMaskedLM (no preprocessor), compiled and trained with fit()."""

  name = "keras-hub"

  def __init__(self, args, precision):
    import keras
    import keras_hub
    layers, hidden, heads, intermediate = PRESETS[args.preset]
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=args.vocab_size, num_layers=layers, num_heads=heads, hidden_dim=hidden,
        intermediate_dim=intermediate, dropout=0.1, max_sequence_length=max(512, args.seq_length))
    self.model = keras_hub.models.BertMaskedLM(backbone, preprocessor=None)
    optimizer = keras.optimizers.AdamW(learning_rate=1e-4, weight_decay=0.01, epsilon=1e-6,
                                       global_clipnorm=1.0)
    if precision == "float16":
      optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    self.model.compile(optimizer=optimizer,
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       weighted_metrics=[], jit_compile=args.jit_compile, steps_per_execution=args.steps)
    f = synthetic_batches(args)
    x = {"token_ids": f["input_ids"], "segment_ids": f["segment_ids"],
         "padding_mask": f["input_mask"].astype(bool), "mask_positions": f["masked_lm_positions"]}
    self.data = tf.data.Dataset.from_tensor_slices(
        (x, f["masked_lm_ids"], f["masked_lm_weights"])).repeat()
    self.steps = args.steps
    self.timer = epoch_timer()

  def run(self):
    self.model.fit(self.data, epochs=1, steps_per_epoch=self.steps, verbose=0, shuffle=False,
                   callbacks=[self.timer])
    return self.steps


def epoch_timer():
  """A keras callback that times the epoch itself (not fit()'s set-up)."""
  import keras

  class EpochTimer(keras.callbacks.Callback):
    seconds = None

    def on_epoch_begin(self, epoch, logs=None):
      self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
      self.seconds = time.perf_counter() - self._start

  return EpochTimer()


def time_call(runner):
  start = time.perf_counter()
  steps = runner.run()
  elapsed = time.perf_counter() - start
  if isinstance(runner, KerasHubRunner) and runner.timer.seconds:
    elapsed = runner.timer.seconds
  return steps, elapsed


def flops_per_sequence(args):
  """Training FLOPs of one sequence (see the module docstring)."""
  layers, hidden, _, intermediate = PRESETS[args.preset]
  per_layer = 4 * hidden * hidden + 2 * hidden * intermediate                 # QKV+output, FFN
  dense = layers * per_layer + hidden * hidden * 2                            # + pooler, MLM transform
  return (6 * dense * args.seq_length + 12 * layers * hidden * args.seq_length ** 2
          + 6 * hidden * args.vocab_size * args.predictions)


def peak_tflops(args, precision):
  if args.peak_tflops:
    return args.peak_tflops
  gpus = tf.config.list_physical_devices("GPU")
  if not gpus:
    return None
  name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "")
  for key, table in PEAK_TFLOPS.items():
    if key in name:
      return table[precision]
  return None


def alternating_medians(runners, warmup, repeats, rate_of):
  """`warmup` untimed calls of each runner's `run()`, then `repeats` rounds measuring each runner in
  turn (so background load hits them alike); the median of `rate_of(runner)` per `runner.name`."""
  for runner in runners:
    for _ in range(warmup):
      runner.run()
  rates = {r.name: [] for r in runners}
  for _ in range(repeats):
    for runner in runners:
      rates[runner.name].append(rate_of(runner))
  return {name: statistics.median(values) for name, values in rates.items()}


def measure(args, precision):
  import keras
  from bert_tf.pretraining import training
  training.set_precision_policy(precision)
  runners = [OursRunner(args, precision)]
  if not args.skip_keras_hub:
    runners.append(KerasHubRunner(args, precision))

  def sequences_per_second(runner):
    steps, elapsed = time_call(runner)
    return steps * args.batch / elapsed

  medians = alternating_medians(runners, args.warmup, args.repeats, sequences_per_second)
  line = (f"{args.preset} seq={args.seq_length} batch={args.batch} {precision:8s} "
          f"xla={'on' if args.jit_compile else 'off'} real tokens {real_token_fraction(args):.0%}: "
          f"bert_tf {medians['bert_tf']:.1f} seq/s")
  if "keras-hub" in medians:
    line += (f", keras-hub {medians['keras-hub']:.1f} seq/s, "
             f"ratio {medians['bert_tf'] / medians['keras-hub']:.2f}x")
  peak = peak_tflops(args, precision)
  if peak:
    mfu = medians["bert_tf"] * flops_per_sequence(args) / (peak * 1e12)
    line += f", MFU {100 * mfu:.1f}% of {peak:.0f} TFLOP/s"
  print(line, flush=True)
  keras.mixed_precision.set_global_policy("float32")
  return medians


def real_token_fraction(args):
  return float(synthetic_batches(args)["input_mask"].mean())


def main(argv=None):
  args = parse_args(argv)
  # keras-hub's pooler gets no gradient from a masked-LM loss; keras warns about it every call.
  warnings.filterwarnings("ignore", message="Gradients do not exist")
  print(f"devices: {[d.name for d in tf.config.list_logical_devices()]}; "
        f"{os.cpu_count()} CPUs (shared machines make absolute numbers noisy; the ratio is the result)")
  results = {}
  for precision in args.precisions.split(","):
    medians = measure(args, precision.strip())
    if "keras-hub" in medians:
      medians["ratio"] = medians["bert_tf"] / medians["keras-hub"]
    results[precision.strip()] = medians
  report.emit({"preset": args.preset, "seq_length": args.seq_length, "batch": args.batch,
               "jit_compile": args.jit_compile, "lengths": args.lengths,
               "real_token_fraction": real_token_fraction(args), "sequences_per_sec": results})


if __name__ == "__main__":
  main()
