"""The pieces of the pretraining loop: strategy, precision policy, train/eval steps, checkpoints.

Readable top to bottom:
  1. `create_strategy` / `set_precision_policy`: the runtime flags turned into TensorFlow objects.
  2. `PretrainingTask`: one optimizer step = k micro-batches (gradient accumulation), the global
     objective, cross-replica reduction, clipping, dynamic loss scaling for float16, NaN guard.
  3. `CheckpointKeeper`: CheckpointManager in the output dir, chief-only writes for multi-worker.
  4. `run_pretraining`: the outer loop (steps_per_loop, logging, checkpoints, evaluation).
"""

import dataclasses
import json
import os
import time

import numpy as np
import tensorflow as tf
from absl import logging

from bert_tf.errors import StoppedBySignal, UsageError
from bert_tf.checkpoints.resume import restore_newest
from bert_tf.utils import run_lock, stop_signals
from bert_tf.utils.io_utils import atomic_write_text, write_eval_results


# ----------------------------------------------------------------------------------------------
# 1. Strategy and precision
# ----------------------------------------------------------------------------------------------

def create_strategy(distribution_strategy="auto", tpu=None, devices=None):
  """Builds the `tf.distribute.Strategy` named by --distribution_strategy.

  Args:
    distribution_strategy: auto | one_device | mirrored | multi_worker_mirrored | tpu. "auto" picks
      tpu when `tpu` is given, mirrored when more than one GPU is visible, otherwise one_device.
    tpu: TPU name / grpc address for the tpu strategy ("local" on a TPU VM).
    devices: optional explicit device list for mirrored (tests use two logical CPUs).

  Returns:
    A `tf.distribute.Strategy`.
  """
  name = distribution_strategy
  # Physical, not logical: listing logical devices initialises the runtime, after which
  # MultiWorkerMirroredStrategy can no longer configure its collective ops.
  gpus = tf.config.list_physical_devices("GPU")
  if name == "auto":
    if tpu:
      name = "tpu"
    elif len(gpus) > 1:
      name = "mirrored"
    else:
      name = "one_device"
  if name == "one_device":
    return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
  if name == "mirrored":
    return tf.distribute.MirroredStrategy(devices=devices)
  if name == "multi_worker_mirrored":
    # Reads the cluster from TF_CONFIG; without it this is a single-worker strategy.
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.AUTO)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
  if name == "tpu":
    if not tpu:
      raise UsageError("--distribution_strategy=tpu needs --tpu")
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu="" if tpu == "local" else tpu)
    if tpu != "local":
      tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  raise UsageError(f"--distribution_strategy: unknown value {distribution_strategy!r}")


def strategy_from_flags(flag_values):
  """`create_strategy` from the flags of `bert_tf.cli.common.define_runtime_flags`."""
  return create_strategy(flag_values.distribution_strategy, flag_values.tpu)


_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def set_precision_policy(mixed_precision="float32"):
  """Sets the global keras dtype policy for --mixed_precision and returns the policy name.

  float32 variables always; bfloat16/float16 compute. float16 also needs loss scaling, which the
  training step applies (see `PretrainingTask`).
  """
  import keras
  if mixed_precision not in _POLICIES:
    raise UsageError(f"--mixed_precision must be one of {', '.join(_POLICIES)}, got {mixed_precision!r}")
  keras.mixed_precision.set_global_policy(_POLICIES[mixed_precision])
  return _POLICIES[mixed_precision]


def precision_policy_from_flags(flag_values):
  return set_precision_policy(flag_values.mixed_precision)


def padding_can_be_skipped(skip_padding, jit_compile, strategy):
  """Whether the encoder runs on real tokens only: as asked (None = yes), but never under XLA or
  on TPUs, where every shape must be known when the step is compiled."""
  tpu = isinstance(strategy, (tf.distribute.TPUStrategy, tf.distribute.experimental.TPUStrategy))
  return (skip_padding is None or bool(skip_padding)) and not jit_compile and not tpu


def is_chief(strategy):
  """True on the worker that writes checkpoints and summaries (always true off multi-worker)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  if task_type is None:
    return True
  return task_type == "chief" or (task_type == "worker" and task_id == 0 and
                                  "chief" not in resolver.cluster_spec().as_dict())


def is_multi_worker(strategy):
  """True under MultiWorkerMirroredStrategy with more than one worker in TF_CONFIG."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return False
  return sum(len(tasks) for tasks in resolver.cluster_spec().as_dict().values()) > 1


# ----------------------------------------------------------------------------------------------
# 2. The train and eval steps
# ----------------------------------------------------------------------------------------------

# The original's guard in the masked-LM denominator: sum(weights * ce) / (sum(weights) + 1e-5).
MLM_DENOMINATOR_EPSILON = 1e-5

# Order of the per-step statistics the train step returns (summed over replicas).
TRAIN_STATS = ("loss", "masked_lm_loss", "next_sentence_loss", "masked_lm_correct", "masked_lm_weight",
               "grad_norm")
# Order of the per-batch sums the eval step returns (summed over replicas).
EVAL_STATS = ("masked_lm_loss_sum", "masked_lm_weight", "masked_lm_correct", "next_sentence_loss_sum",
              "next_sentence_correct", "examples")


class TrainingDivergedError(UsageError):
  """The loss became NaN or infinite; raised with a message naming the step."""


class PretrainingTask:
  """One optimizer step of BERT pretraining, and the evaluation step, under a `tf.distribute` strategy.

  The objective of a step is the loss of the whole global batch (all replicas, all accumulated
  micro-batches) as if it were one batch: masked-LM loss `sum(w * ce) / (sum(w) + 1e-5)` over every
  prediction of the step, plus the next-sentence mean over every example. Each replica therefore
  rescales the per-micro-batch losses of `pretraining_losses` by its share of the global weight sum
  and example count. This makes one device, N replicas and k accumulated micro-batches compute the
  same update for the same examples (up to float summation order).

  One step: gradients of each micro-batch (XLA-compiled when `jit_compile`) summed over the
  micro-batches, summed over replicas, unscaled (float16), clipped to the optimizer's global norm,
  then applied by the optimizer (wrapped in a dynamic `LossScaleOptimizer` for float16, which skips
  steps whose gradients overflow).

  Args:
    model: a `BertPretrainer` built under `strategy.scope()`.
    optimizer: from `bert_tf.pretraining.optimization.create_optimizer`. Its `global_clipnorm` is taken over
      by the step (clipping after the cross-replica sum, not per replica).
    strategy: the `tf.distribute.Strategy`.
    accumulation_steps: micro-batches per optimizer step; each replica's input batch holds them stacked.
    jit_compile: compile the forward/backward pass with XLA.
    mixed_precision: "float32", "bfloat16" or "float16" (float16 adds dynamic loss scaling).
    skip_padding: run the encoder on the real tokens only (`BertEncoder(skip_padding=...)`);
      default (None) and True mean on, except under XLA and on TPUs, which need static shapes.
      Sets the attribute of `model.encoder`.
  """

  def __init__(self, model, optimizer, strategy, accumulation_steps=1, jit_compile=False,
               mixed_precision="float32", skip_padding=None):
    import keras
    model.encoder.skip_padding = padding_can_be_skipped(skip_padding, jit_compile, strategy)
    self.model = model
    self.strategy = strategy
    self.accumulation_steps = int(accumulation_steps)
    if self.accumulation_steps < 1:
      raise UsageError(f"--gradient_accumulation_steps must be >= 1, got {accumulation_steps}")
    self.loss_scaling = mixed_precision == "float16"
    self.clip_norm = optimizer.global_clipnorm
    optimizer.global_clipnorm = None  # clipped here, after the cross-replica sum
    self.inner_optimizer = optimizer
    with strategy.scope():
      self.optimizer = (keras.optimizers.LossScaleOptimizer(optimizer) if self.loss_scaling
                        else optimizer)
      self.optimizer.build(model.trainable_variables)
      self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                                     aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    # No Python control flow depends on tensors here: autograph (slow to convert) is off.
    self._gradients = tf.function(self._micro_batch_gradients, jit_compile=jit_compile, autograph=False)
    self._forward_eval = tf.function(self._eval_sums, jit_compile=jit_compile, autograph=False)
    self.train_loop = tf.function(self._train_loop, autograph=False)
    self.eval_batch = tf.function(self._eval_batch, autograph=False)

  @property
  def learning_rate(self):
    """The learning rate the next step will use (a float)."""
    return float(self.inner_optimizer.learning_rate)

  # -- training -------------------------------------------------------------------------------

  def _one_micro_batch(self, features, mlm_denominator, num_examples, loss_scale):
    """Gradients of this micro-batch's share of the global objective, and its statistics."""
    from bert_tf.modeling import pretraining_losses
    variables = self.model.trainable_variables
    weights = tf.cast(features["masked_lm_weights"], tf.float32)                # [b, P]
    batch = tf.cast(tf.shape(features["input_ids"])[0], tf.float32)
    with tf.GradientTape() as tape:
      outputs = self.model(features, training=True)
      losses = pretraining_losses(features, outputs)
      # Undo the per-batch normalisation and normalise by the whole step's weight sum and size.
      mlm_share = losses["masked_lm_loss"] * (tf.reduce_sum(weights) + MLM_DENOMINATOR_EPSILON) / mlm_denominator
      nsp_share = losses["next_sentence_loss"] * batch / num_examples
      objective = mlm_share + nsp_share
      scaled = objective * loss_scale
    grads = tape.gradient(scaled, variables)
    grads = [tf.convert_to_tensor(g) if g is not None else tf.zeros_like(v)
             for g, v in zip(grads, variables)]
    predictions = tf.argmax(outputs["mlm_logits"], axis=-1, output_type=tf.int32)  # [b, P]
    correct = tf.cast(tf.equal(predictions, tf.cast(features["masked_lm_ids"], tf.int32)), tf.float32)
    stats = tf.stack([objective, mlm_share, nsp_share, tf.reduce_sum(correct * weights),
                      tf.reduce_sum(weights)])
    return grads, stats

  def _micro_batch_gradients(self, features, mlm_denominator, num_examples, loss_scale):
    """Sums gradients and statistics over the k micro-batches stacked in `features` ([k*b, ...])."""
    k = self.accumulation_steps
    if k == 1:
      return self._one_micro_batch(features, mlm_denominator, num_examples, loss_scale)
    micro = {name: tf.reshape(t, tf.concat([[k, -1], tf.shape(t)[1:]], axis=0))   # [k, b, ...]
             for name, t in features.items()}
    variables = self.model.trainable_variables

    def body(i, grads, stats):
      g, s = self._one_micro_batch({name: t[i] for name, t in micro.items()},
                                   mlm_denominator, num_examples, loss_scale)
      return i + 1, [a + b for a, b in zip(grads, g)], stats + s

    _, grads, stats = tf.while_loop(
        lambda i, *_: i < k, body,
        (tf.constant(0), [tf.zeros_like(v) for v in variables], tf.zeros([5])))
    return grads, stats

  def _replica_step(self, features):
    ctx = tf.distribute.get_replica_context()
    weights = tf.reduce_sum(tf.cast(features["masked_lm_weights"], tf.float32))
    batch = tf.cast(tf.shape(features["input_ids"])[0], tf.float32)
    total_weight, total_examples = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [weights, batch])
    loss_scale = (tf.identity(self.optimizer.dynamic_scale) if self.loss_scaling
                  else tf.constant(1.0))
    grads, stats = self._gradients(features, total_weight + MLM_DENOMINATOR_EPSILON,
                                   total_examples, loss_scale)
    grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)     # the step's full gradient
    if self.loss_scaling:
      grads = [g / loss_scale for g in grads]
    if self.clip_norm:
      grads, grad_norm = tf.clip_by_global_norm(grads, self.clip_norm)
    else:
      grad_norm = tf.linalg.global_norm(grads)
    # keras sums the gradients it is handed over the replicas once more: give it each replica's
    # share (and re-scale for the LossScaleOptimizer, which unscales itself). Skipped when it is 1:
    # each pass over the gradients reads and writes every parameter.
    if self.loss_scaling or ctx.num_replicas_in_sync > 1:
      share = loss_scale / ctx.num_replicas_in_sync
      grads = [g * share for g in grads]
    self.optimizer.apply(grads, self.model.trainable_variables)
    # grad_norm is identical on every replica; divide so that the SUM reduction returns it once.
    return tf.concat([stats, [grad_norm / ctx.num_replicas_in_sync]], axis=0)

  def _train_loop(self, iterator, num_steps):
    """Runs up to `num_steps` optimizer steps; stops early after a step whose loss is not finite.

    Returns:
      (sums of TRAIN_STATS over the steps run [6], number of steps run, last step's loss).
    """
    def keep_going(steps, totals, last_loss):
      return tf.logical_and(steps < num_steps, tf.math.is_finite(last_loss))

    def one_step(steps, totals, last_loss):
      per_replica = self.strategy.run(self._replica_step, args=(next(iterator),))
      stats = self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
      with tf.control_dependencies([stats]):
        increment = self.global_step.assign_add(1)
      with tf.control_dependencies([increment]):
        return steps + 1, totals + stats, stats[0]

    steps, totals, last_loss = tf.while_loop(
        keep_going, one_step, (tf.constant(0), tf.zeros([len(TRAIN_STATS)]), tf.constant(0.0)))
    return totals, steps, last_loss

  # -- evaluation -----------------------------------------------------------------------------

  def _eval_sums(self, features):
    outputs = self.model(features, training=False)
    ids = tf.cast(features["masked_lm_ids"], tf.int32)                          # [B, P]
    weights = tf.cast(features["masked_lm_weights"], tf.float32)                # [B, P]
    mlm_logits = tf.cast(outputs["mlm_logits"], tf.float32)                     # [B, P, V]
    mlm_ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=ids, logits=mlm_logits)
    mlm_correct = tf.cast(tf.equal(tf.argmax(mlm_logits, -1, output_type=tf.int32), ids), tf.float32)
    labels = tf.reshape(tf.cast(features["next_sentence_labels"], tf.int32), [-1])  # [B]
    nsp_logits = tf.cast(outputs["nsp_logits"], tf.float32)                    # [B, 2]
    nsp_ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=nsp_logits)
    nsp_correct = tf.cast(tf.equal(tf.argmax(nsp_logits, -1, output_type=tf.int32), labels), tf.float32)
    return tf.stack([tf.reduce_sum(weights * mlm_ce), tf.reduce_sum(weights),
                     tf.reduce_sum(weights * mlm_correct), tf.reduce_sum(nsp_ce),
                     tf.reduce_sum(nsp_correct), tf.cast(tf.size(labels), tf.float32)])

  def _eval_batch(self, features):
    per_replica = self.strategy.run(self._forward_eval, args=(features,))
    return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

  def evaluate(self, dataset, max_steps=None):
    """Evaluates on a distributed dataset (one pass, or `max_steps` batches).

    Returns:
      dict with masked_lm_accuracy, masked_lm_loss, next_sentence_accuracy, next_sentence_loss,
      loss (their sum of losses) and global_step, as Python numbers.
    """
    totals = tf.zeros([len(EVAL_STATS)])
    for i, features in enumerate(dataset):
      if max_steps is not None and i >= max_steps:
        break
      totals += self.eval_batch(features)
    return eval_metrics(totals.numpy(), int(self.global_step.numpy()))


def eval_metrics(sums, global_step):
  """Turns summed EVAL_STATS into the original's eval_results keys."""
  s = dict(zip(EVAL_STATS, [float(x) for x in sums]))
  weight, examples = max(s["masked_lm_weight"], 1e-12), max(s["examples"], 1e-12)
  mlm_loss = s["masked_lm_loss_sum"] / weight
  nsp_loss = s["next_sentence_loss_sum"] / examples
  return {
      "global_step": global_step,
      "loss": mlm_loss + nsp_loss,
      "masked_lm_accuracy": s["masked_lm_correct"] / weight,
      "masked_lm_loss": mlm_loss,
      "next_sentence_accuracy": s["next_sentence_correct"] / examples,
      "next_sentence_loss": nsp_loss,
  }


# ----------------------------------------------------------------------------------------------
# 3. Checkpoints
# ----------------------------------------------------------------------------------------------

class CheckpointKeeper:
  """`tf.train.CheckpointManager` (prefix `ckpt`) in the output dir, written by the chief only.

  Under multi-worker training every worker must take part in saving, but only the chief's files
  are kept: the other workers save into a private temporary folder that is deleted right after.
  Every worker restores from the chief's folder (a file system they all share).

  Args:
    checkpoint: the `tf.train.Checkpoint(model=..., optimizer=..., global_step=...)`.
    output_dir: where the chief writes.
    strategy: to tell the chief from the other workers.
    max_to_keep: --keep_checkpoint_max.
  """

  def __init__(self, checkpoint, output_dir, strategy, max_to_keep=5):
    self.checkpoint = checkpoint
    self.output_dir = output_dir
    self.chief = is_chief(strategy)
    if self.chief:
      self.write_dir = output_dir
    else:
      task_id = strategy.cluster_resolver.task_id
      self.write_dir = os.path.join(output_dir, f".worker_{task_id}_tmp")
    self.manager = tf.train.CheckpointManager(checkpoint, self.write_dir, max_to_keep=max_to_keep,
                                              checkpoint_name="ckpt")

  def latest(self):
    return tf.train.latest_checkpoint(self.output_dir)

  def restore_latest(self):
    """Restores the newest checkpoint of the output dir that can be read; returns its path or None.

    A checkpoint that cannot be read (truncated or corrupt files, what a preempted writer leaves)
    is skipped with a warning naming it, for the one before it (`checkpoints.resume`). Raises
    `UsageError` when there are checkpoints but none can be read, or when one does not match the
    model.
    """
    return restore_newest(
        self.checkpoint, self.output_dir,
        lambda path, why: (f"{path}: does not match the model of the bert config ({why}); use the "
                           "config it was trained with or another --output_dir"))

  def save(self, step):
    path = self.manager.save(checkpoint_number=step)
    if not self.chief:
      tf.io.gfile.rmtree(self.write_dir)
      return None
    return path


# ----------------------------------------------------------------------------------------------
# 4. The outer loop
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class PretrainingParams:
  """Everything `run_pretraining` needs (the flags of run_pretraining.py, same names)."""
  bert_config: object          # a BertConfig
  output_dir: str
  input_file: str = None
  eval_input_file: str = None  # defaults to input_file, as the original
  init_checkpoint: str = None
  max_seq_length: int = 128
  max_predictions_per_seq: int = 20
  do_train: bool = False
  do_eval: bool = False
  train_batch_size: int = 32
  eval_batch_size: int = 8
  learning_rate: float = 5e-5
  num_train_steps: int = 100000
  num_warmup_steps: int = 10000
  save_checkpoints_steps: int = 1000
  max_eval_steps: int = 100
  optimizer: str = "adamw"
  weight_decay_rate: float = 0.01
  gradient_accumulation_steps: int = 1
  mixed_precision: str = "float32"
  jit_compile: bool = False
  skip_padding: bool = True
  steps_per_loop: int = 1
  log_steps: int = 100
  keep_checkpoint_max: int = 5
  seed: int = 12345
  shuffle_buffer_size: int = 10000
  strict_checkpoint: bool = False  # missing parts of init_checkpoint are an error, not fresh


class TrainLog:
  """Console + TensorBoard + `train_log.jsonl` (one JSON object per logged step), chief only."""

  def __init__(self, output_dir, chief, resume_step):
    self.chief = chief
    self.path = os.path.join(output_dir, "train_log.jsonl")
    if chief:
      self.writer = tf.summary.create_file_writer(os.path.join(output_dir, "train"))
      _drop_log_lines_after(self.path, resume_step)
    else:
      self.writer = tf.summary.create_noop_writer()

  def write(self, record):
    logging.info("step %d: loss=%.4f masked_lm_accuracy=%.4f lr=%.3g %.1f sequences/s",
                 record["step"], record["loss"], record["masked_lm_accuracy"],
                 record["learning_rate"], record["sequences_per_sec"])
    if not self.chief:
      return
    with self.writer.as_default(step=record["step"]):
      for key, value in record.items():
        if key != "step":
          write_scalar_summary(key, value)
    self.writer.flush()
    with tf.io.gfile.GFile(self.path, "a") as f:  # gfile: output_dir may be gs:// (TPU)
      f.write(json.dumps(record, sort_keys=True) + "\n")


def write_scalar_summary(name, value):
  """A TensorBoard scalar through the default summary writer, without importing tensorboard.

  `tf.summary.scalar` needs the tensorboard package; the scalar plugin only needs this metadata.
  """
  from tensorflow.core.framework import summary_pb2
  metadata = summary_pb2.SummaryMetadata(
      plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
      data_class=summary_pb2.DATA_CLASS_SCALAR)
  tf.summary.write(name, tf.constant(float(value), tf.float32), metadata=metadata)


def _drop_log_lines_after(path, step):
  """On resume, forget log lines of steps the killed run did after its last checkpoint."""
  if not tf.io.gfile.exists(path):
    return
  with tf.io.gfile.GFile(path, "r") as f:
    lines = [line for line in f.read().splitlines(keepends=True) if line.strip()]
  kept = [line for line in lines if json.loads(line).get("step", 0) <= step]
  if len(kept) != len(lines):
    atomic_write_text(path, "".join(kept))


def _check_params(p):
  from bert_tf.pretraining.run_checks import check_flag_values
  check_flag_values(p)
  if p.max_seq_length > p.bert_config.max_position_embeddings:
    raise UsageError(f"--max_seq_length ({p.max_seq_length}) is longer than max_position_embeddings "
                     f"({p.bert_config.max_position_embeddings}) of --bert_config_file")


def build_pretraining(params, strategy):
  """Model, optimizer, task and checkpoint for `params`, created under `strategy.scope()`.

  The initial weights are drawn from `params.seed`, so equal params give equal models.
  """
  import keras
  from bert_tf.modeling import BertPretrainer
  keras.utils.set_random_seed(params.seed)
  from bert_tf.pretraining.optimization import create_optimizer
  with strategy.scope():
    model = BertPretrainer(params.bert_config)
    optimizer = create_optimizer(params.learning_rate, params.num_train_steps, params.num_warmup_steps,
                                 optimizer_type=params.optimizer,
                                 weight_decay_rate=params.weight_decay_rate)
  task = PretrainingTask(model, optimizer, strategy, params.gradient_accumulation_steps,
                         params.jit_compile, params.mixed_precision, params.skip_padding)
  # keras does not put the dropout seed generators in object-based checkpoints; saving their state
  # beside the model makes a resumed run draw the same dropout masks as an uninterrupted one.
  dropout_rng = [v.value if hasattr(v, "value") else v for v in model.non_trainable_variables
                 if "seed_generator" in v.path]
  checkpoint = tf.train.Checkpoint(model=model, optimizer=task.optimizer, global_step=task.global_step,
                                   dropout_rng=dropout_rng)
  return task, checkpoint


@run_lock.released_at_return
def run_pretraining(params, strategy):
  """Trains and/or evaluates a BertPretrainer as run_pretraining.py does.

  Resumes from the newest checkpoint in `output_dir` when there is one (global step, weights,
  optimizer state, learning-rate position and data position), otherwise starts from
  `init_checkpoint` (weights only) or from scratch; stops at `num_train_steps`.

  Holds the lock of `output_dir` (`bert_tf.utils.run_lock`; the chief only) from its first write
  until it returns. The first SIGTERM/SIGINT during training stops it after the current
  `train_loop` call with a checkpoint at that step (`bert_tf.utils.stop_signals`; not under
  multi-worker training, where signals keep their default effect).

  Args:
    params: `PretrainingParams`.
    strategy: from `create_strategy`; the precision policy must already be set
      (`set_precision_policy(params.mixed_precision)`).

  Returns:
    The eval results dict when `do_eval`, else {"global_step": ..., "loss": last logged loss}.

  Raises:
    UsageError for bad inputs or an output_dir another run holds; TrainingDivergedError when the
    loss becomes NaN/Inf; StoppedBySignal after a SIGTERM/SIGINT (with the step and checkpoint).
  """
  from bert_tf.pretraining import input_pipeline
  _check_params(params)
  seq, preds = params.max_seq_length, params.max_predictions_per_seq
  train_files = eval_files = None
  eval_flag = "--eval_input_file" if params.eval_input_file else "--input_file"
  if params.do_train:
    train_files = input_pipeline.check_pretraining_files(params.input_file, seq, preds)
  if params.do_eval:
    eval_files = input_pipeline.check_pretraining_files(
        params.eval_input_file or params.input_file, seq, preds, flag_name=eval_flag)
  for flag, batch, used in (("--train_batch_size", params.train_batch_size, params.do_train),
                            ("--eval_batch_size", params.eval_batch_size, params.do_eval)):
    if used and batch % strategy.num_replicas_in_sync:
      raise UsageError(f"{flag} ({batch}) must be divisible by the number of replicas "
                       f"({strategy.num_replicas_in_sync})")

  for files, flag, what in ((train_files, "--input_file", "training"),
                            (eval_files, eval_flag, "evaluation")):
    if files is not None:
      input_pipeline.require_records(files, flag, what)
      input_pipeline.check_vocab_size(files, params.bert_config.vocab_size)

  # Nothing is written before every input (the checkpoint to start from included) has been read.
  task, checkpoint = build_pretraining(params, strategy)
  keeper = CheckpointKeeper(checkpoint, params.output_dir, strategy, params.keep_checkpoint_max)
  restored = keeper.restore_latest()
  if restored:
    logging.info("resumed from %s at step %d", restored, int(task.global_step.numpy()))
  elif params.init_checkpoint:
    from bert_tf.checkpoints import init_from_checkpoint
    init_from_checkpoint(task.model, params.init_checkpoint, strict=params.strict_checkpoint)
    logging.info("initialised weights from %s", params.init_checkpoint)
  tf.io.gfile.makedirs(params.output_dir)
  if is_chief(strategy):  # the other workers write only into their own .worker_N_tmp folders
    run_lock.hold(params.output_dir)
  if keeper.chief:
    params.bert_config.to_json_file(os.path.join(params.output_dir, "bert_config.json"))

  result = {"global_step": int(task.global_step.numpy())}
  if params.do_train:
    result.update(_train(task, keeper, params, strategy, train_files))
  if params.do_eval:
    dataset = input_pipeline.distributed_dataset(
        strategy, eval_files, params.eval_batch_size, seq, preds, is_training=False,
        batch_flag="--eval_batch_size")
    result = task.evaluate(dataset, params.max_eval_steps)
    if keeper.chief:
      _write_eval_results(params.output_dir, result)
    for key in sorted(result):
      logging.info("eval %s = %s", key, result[key])
  return result


def _train(task, keeper, params, strategy, files):
  """The training loop proper: steps_per_loop steps per call, logs, checkpoints, NaN guard."""
  from bert_tf.pretraining import input_pipeline
  step = int(task.global_step.numpy())
  total_steps = params.num_train_steps
  if step >= total_steps:
    logging.info("already at step %d >= --num_train_steps=%d: nothing to train", step, total_steps)
    return {}
  dataset = input_pipeline.distributed_dataset(
      strategy, files, params.train_batch_size, params.max_seq_length, params.max_predictions_per_seq,
      accumulation_steps=params.gradient_accumulation_steps, is_training=True, seed=params.seed,
      start_step=step, shuffle_buffer_size=params.shuffle_buffer_size)
  iterator = iter(dataset)
  log = TrainLog(params.output_dir, keeper.chief, step)
  sequences_per_step = params.train_batch_size * params.gradient_accumulation_steps
  window = np.zeros(len(TRAIN_STATS))
  window_steps, window_start = 0, time.time()
  last = {}
  with stop_signals.StopRequests(enabled=not is_multi_worker(strategy)) as stop:
    while step < total_steps:
      next_save = (step // params.save_checkpoints_steps + 1) * params.save_checkpoints_steps
      num_steps = min(params.steps_per_loop, total_steps - step, next_save - step)
      totals, done, last_loss = task.train_loop(iterator, tf.constant(num_steps))
      done, last_loss = int(done), float(last_loss)
      step += done
      if not np.isfinite(last_loss):
        kept = keeper.latest()
        raise TrainingDivergedError(
            f"training loss became {last_loss} at step {step}; stopped without saving. "
            + (f"The last good checkpoint is {kept}." if kept else "No checkpoint was written yet."))
      window += totals.numpy()
      window_steps += done
      if step % params.log_steps == 0 or step == total_steps or window_steps >= params.log_steps:
        elapsed = max(time.time() - window_start, 1e-9)
        s = dict(zip(TRAIN_STATS, window / window_steps))
        last = {
            "step": step,
            "loss": s["loss"],
            "masked_lm_loss": s["masked_lm_loss"],
            "next_sentence_loss": s["next_sentence_loss"],
            "masked_lm_accuracy": s["masked_lm_correct"] / max(s["masked_lm_weight"], 1e-12),
            "grad_norm": s["grad_norm"],
            "learning_rate": task.learning_rate,
            "sequences_per_sec": window_steps * sequences_per_step / elapsed,
        }
        log.write(last)
        window[:] = 0
        window_steps, window_start = 0, time.time()
      path = None
      if step % params.save_checkpoints_steps == 0 or step == total_steps:
        path = keeper.save(step)
        if path:
          logging.info("saved %s", path)
      if stop.signum is not None:  # SIGTERM/SIGINT: stop at this step, resumable from it
        raise StoppedBySignal(stop.signum, step, path or keeper.save(step))
  return {"loss": last.get("loss")}


def _write_eval_results(output_dir, result):
  """`eval_results.txt` as the original (`key = value`, sorted keys), written atomically, + TensorBoard."""
  write_eval_results(os.path.join(output_dir, "eval_results.txt"), result)
  writer = tf.summary.create_file_writer(os.path.join(output_dir, "eval"))
  with writer.as_default(step=result["global_step"]):
    for key, value in result.items():
      if key != "global_step":
        write_scalar_summary(key, value)
  writer.flush()
