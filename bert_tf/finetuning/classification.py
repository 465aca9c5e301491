"""Fine-tuning a sentence (pair) classifier: tokenization in tf.data, training, evaluation, prediction.

Readable top to bottom:
  1. Packing: raw token ids of one or two texts -> `[CLS] a [SEP] b [SEP]` with the original's
     longest-first truncation, padded to `max_seq_length`. Pure TensorFlow, so the same function runs
     in `tf.data` and inside the exported SavedModel.
  2. Datasets: examples -> strings -> (in-graph tokenizer) -> packed features, cached once encoded.
  3. The fine-tuning step (loss, cross-replica gradient sum, global-norm clipping, float16 loss
     scaling) and the loop with checkpoints and TensorBoard summaries.
  4. Prediction over a dataset (padded to whole batches, so XLA / TPU see static shapes).
  5. Result files: `eval_results.txt` and `test_results.tsv`, written atomically as the original.
  6. `run_classifier(RunOptions)`: what the command does, in order.
"""

import dataclasses
import os
import time

import numpy as np
import tensorflow as tf
from absl import logging

from bert_tf.configs import BertConfig
from bert_tf.errors import StoppedBySignal, UsageError
from bert_tf.finetuning import run_options
from bert_tf.finetuning.run_options import RunOptions  # noqa: F401 (re-exported)
from bert_tf.utils.io_utils import atomic_output, is_remote, read_eval_results, write_eval_results  # noqa: F401 (re-exported)
from bert_tf.pretraining.training import is_chief, is_multi_worker, write_scalar_summary
from bert_tf.utils import run_lock, stop_signals

# ----------------------------------------------------------------------------------------------
# 1. Packing token ids into model inputs
# ----------------------------------------------------------------------------------------------


def truncated_pair_lengths(len_a, len_b, max_tokens):
  """Lengths that the original's `_truncate_seq_pair` keeps, in closed form.

  The original pops one token at a time from the longer text (from `b` on ties) until the pair
  fits. The result: if the pair fits, nothing changes; otherwise the shorter text keeps all its
  tokens when it is at most half the budget, and both are cut to half (`a` gets the odd token).

  Args:
    len_a: int [batch] lengths of the first texts.
    len_b: int [batch] lengths of the second texts.
    max_tokens: the budget for a and b together (max_seq_length - 3).

  Returns:
    (new_len_a, new_len_b), int [batch] each.
  """
  len_a = tf.convert_to_tensor(len_a)
  len_b = tf.cast(len_b, len_a.dtype)
  budget = tf.cast(max_tokens, len_a.dtype)
  fits = len_a + len_b <= budget
  # a no longer than b: a keeps min(len_a, ceil(budget / 2)), b gets the rest.
  a_when_a_shorter = tf.minimum(len_a, (budget + 1) // 2)
  # a longer than b: b keeps min(len_b, floor(budget / 2)), a gets the rest.
  b_when_b_shorter = tf.minimum(len_b, budget // 2)
  new_a = tf.where(len_a <= len_b, a_when_a_shorter, budget - b_when_b_shorter)
  new_b = budget - new_a
  return tf.where(fits, len_a, new_a), tf.where(fits, len_b, new_b)


def _take_prefix(ids, lengths):
  """The first `lengths[i]` ids of each row of a RaggedTensor [batch, (tokens)]."""
  positions = tf.ragged.range(ids.row_lengths())
  return tf.ragged.boolean_mask(ids, positions < tf.cast(lengths, positions.dtype)[:, None])


def pack_inputs(ids_a, ids_b, max_seq_length, cls_id, sep_id):
  """`[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`, truncated and padded as google-research/bert.

  Args:
    ids_a: RaggedTensor int [batch, (tokens)], the first texts' WordPiece ids.
    ids_b: RaggedTensor int [batch, (tokens)] or None for single texts.
    max_seq_length: length of every output row.
    cls_id, sep_id: the ids of [CLS] and [SEP].

  Returns:
    dict of int32 [batch, max_seq_length]: input_ids, input_mask (1 = real token),
    segment_ids (0 for [CLS] a [SEP], 1 for b [SEP]).
  """
  ids_a = tf.cast(ids_a, tf.int32)
  batch = ids_a.nrows()
  cls = tf.RaggedTensor.from_tensor(tf.fill([batch, 1], tf.constant(cls_id, tf.int32)))
  sep = tf.RaggedTensor.from_tensor(tf.fill([batch, 1], tf.constant(sep_id, tf.int32)))
  if ids_b is None:
    ids_a = _take_prefix(ids_a, tf.minimum(ids_a.row_lengths(), max_seq_length - 2))
    pieces, segments = [cls, ids_a, sep], [0, 0, 0]
  else:
    ids_b = tf.cast(ids_b, tf.int32)
    len_a, len_b = truncated_pair_lengths(ids_a.row_lengths(), ids_b.row_lengths(),
                                          max_seq_length - 3)
    ids_a, ids_b = _take_prefix(ids_a, len_a), _take_prefix(ids_b, len_b)
    pieces, segments = [cls, ids_a, sep, ids_b, sep], [0, 0, 0, 1, 1]
  input_ids = tf.concat(pieces, axis=1)  # [batch, (length)]
  segment_ids = tf.concat([tf.ones_like(p) * s for p, s in zip(pieces, segments)], axis=1)
  shape = [None, max_seq_length]
  return {
      "input_ids": input_ids.to_tensor(0, shape=shape),  # [batch, max_seq_length]
      "input_mask": tf.ones_like(input_ids).to_tensor(0, shape=shape),
      "segment_ids": segment_ids.to_tensor(0, shape=shape),
  }


class TextEncoder:
  """Raw strings -> model inputs, entirely in TensorFlow (usable in tf.data and in a SavedModel).

  The encoding is a `tf.function` with a fixed signature, traced once per encoder and reused by
  every dataset and by the export (tracing the tokenizer graph is the slow part).

  Args:
    tokenizer: callable mapping tf.string [batch] to a RaggedTensor of ids [batch, (tokens)]
      (`bert_tf.text.tokenization.BertTokenizerLayer`).
    max_seq_length: length of every packed row.
    cls_id, sep_id: ids of [CLS] and [SEP] in the tokenizer's vocabulary.
  """

  def __init__(self, tokenizer, max_seq_length, cls_id, sep_id):
    self.tokenizer = tokenizer
    self.max_seq_length = int(max_seq_length)
    self.cls_id = int(cls_id)
    self.sep_id = int(sep_id)
    texts = tf.TensorSpec([None], tf.string)
    self._encode_single = tf.function(lambda a: self._pack(a, None), input_signature=[texts])
    self._encode_pair = tf.function(self._pack, input_signature=[texts, texts])

  def _ids(self, texts):
    ids = self.tokenizer(texts)
    if ids.ragged_rank > 1:  # [batch, (words), (pieces)] -> [batch, (tokens)]
      ids = ids.merge_dims(1, -1)
    return ids

  def _pack(self, text_a, text_b):
    if text_b is None:
      ids_a, ids_b = self._ids(text_a), None
    else:
      # One tokenizer call for both texts: half the graph to trace, one op launch per batch.
      ids = self._ids(tf.concat([text_a, text_b], axis=0))  # [2 * batch, (tokens)]
      batch = tf.shape(text_a)[0]
      ids_a, ids_b = ids[:batch], ids[batch:]
    return pack_inputs(ids_a, ids_b, self.max_seq_length, self.cls_id, self.sep_id)

  def __call__(self, text_a, text_b=None):
    """text_a, text_b: tf.string [batch]. Returns the dict of `pack_inputs`."""
    if text_b is None:
      return self._encode_single(text_a)
    return self._encode_pair(text_a, text_b)


def load_text_encoder(vocab_file, do_lower_case, max_seq_length):
  """A `TextEncoder` with the in-graph WordPiece tokenizer of `vocab_file` (+ `.vocab_size`)."""
  from bert_tf.text.tokenization import BertTokenizerLayer, load_vocab
  vocab = load_vocab(vocab_file)
  for token in ("[CLS]", "[SEP]"):
    if token not in vocab:
      raise UsageError(f"vocab file {vocab_file} has no {token} token")
  layer = BertTokenizerLayer(vocab_file, do_lower_case=do_lower_case)
  encoder = TextEncoder(layer, max_seq_length, vocab["[CLS]"], vocab["[SEP]"])
  encoder.vocab_size = layer.vocab_size
  return encoder


# ----------------------------------------------------------------------------------------------
# 2. Datasets
# ----------------------------------------------------------------------------------------------

_ENCODE_BATCH = 1024  # strings tokenized per tf.data map call


def _columns(examples, labels, num_real=None):
  """Examples as column arrays: text_a, text_b ("" when single), label, example_id (its index,
  or -1 from `num_real` on: padding)."""
  ids = np.arange(len(examples), dtype=np.int32)
  if num_real is not None:
    ids[num_real:] = -1
  columns = {
      "text_a": np.array([e.text_a for e in examples], dtype=object),
      "text_b": np.array([e.text_b or "" for e in examples], dtype=object),
      "example_id": ids,
  }
  if labels is not None:
    columns["label"] = np.asarray(labels)
  return columns


def _encode_map(encoder, use_text_b):
  def encode(batch):
    features = encoder(batch["text_a"], batch["text_b"] if use_text_b else None)
    for key in ("example_id", "label"):
      if key in batch:
        features[key] = batch[key]
    return features
  return encode


def encoded_dataset(examples, labels, encoder, use_text_b, num_real=None):
  """Unbatched dataset of packed features (+ example_id, + label when `labels` is given)."""
  ds = tf.data.Dataset.from_tensor_slices(_columns(examples, labels, num_real))
  ds = ds.batch(_ENCODE_BATCH).map(_encode_map(encoder, use_text_b),
                                   num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.unbatch()


def training_dataset(examples, labels, encoder, use_text_b, batch_size, seed=12345,
                     skip_batches=0):
  """Endless shuffled training batches; tokenized once, then cached.

  Args:
    examples, labels: the training examples and their label ids (int) or values (float).
    encoder: a `TextEncoder`.
    use_text_b: pack pairs.
    batch_size: the global batch size (batches are whole: the remainder of an epoch is carried
      into the next one by `repeat` before batching).
    seed: shuffle seed; the same seed gives the same batch sequence.
    skip_batches: batches to skip (resuming at a step continues the same sequence).

  Returns:
    tf.data.Dataset of (features dict, labels).
  """
  ds = encoded_dataset(examples, labels, encoder, use_text_b).cache()
  return shuffled_batches(ds, len(examples), batch_size, seed=seed, skip_batches=skip_batches)


def shuffled_batches(ds, num_examples, batch_size, seed=12345, skip_batches=0):
  """Endless shuffled whole batches of a (cached) dataset of feature dicts with a "label" key,
  split into (features, labels); `skip_batches` continues the same sequence at that batch."""
  ds = ds.shuffle(min(num_examples, 50_000), seed=seed, reshuffle_each_iteration=True)
  ds = ds.repeat().batch(batch_size, drop_remainder=True)
  if skip_batches:
    ds = ds.skip(skip_batches)
  split = lambda f: ({k: v for k, v in f.items() if k != "label"}, f["label"])  # noqa: E731
  return ds.map(split).prefetch(tf.data.AUTOTUNE)


def inference_dataset(examples, encoder, use_text_b, batch_size):
  """Batches of every example in order, the last one padded with copies of example 0 whose
  `example_id` is -1 (dropped after prediction), so every batch has the same static shape."""
  padded = list(examples)
  remainder = len(padded) % batch_size
  if remainder:
    padded += [examples[0]] * (batch_size - remainder)
  ds = encoded_dataset(padded, None, encoder, use_text_b, num_real=len(examples))
  return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


# ----------------------------------------------------------------------------------------------
# 3. Training
# ----------------------------------------------------------------------------------------------


def per_example_loss(logits, labels, is_regression):
  """float32 [batch]: cross-entropy on logits [batch, classes], or squared error on [batch, 1]."""
  logits = tf.cast(logits, tf.float32)
  if is_regression:
    return tf.square(logits[:, 0] - tf.cast(labels, tf.float32))
  return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32),
                                                        logits=logits)


def outputs_from_logits(logits, is_regression):
  """Probabilities [batch, classes] (softmax), or the predicted values [batch, 1] for regression."""
  logits = tf.cast(logits, tf.float32)
  return logits if is_regression else tf.nn.softmax(logits, axis=-1)


def _scale_gradient(grad, factor):
  """grad * factor, for dense gradients and IndexedSlices (embedding lookups) alike."""
  if isinstance(grad, tf.IndexedSlices):
    return tf.IndexedSlices(grad.values * factor, grad.indices, grad.dense_shape)
  return grad * factor


class FineTuner:
  """The classifier's training step and loop under a `tf.distribute` strategy.

  Args:
    model: a `BertClassifier` built in `strategy.scope()`.
    optimizer: from `bert_tf.pretraining.optimization.create_optimizer` (wrapped in a
      `keras.optimizers.LossScaleOptimizer` for float16), built in `strategy.scope()`.
    strategy: the `tf.distribute.Strategy`.
    is_regression: squared-error loss on one output instead of cross-entropy.
    global_batch_size: examples per optimizer step over all replicas.
    jit_compile: compile the forward/backward pass with XLA.
    clip_norm: global-norm clipping after the cross-replica sum (the original's 1.0). Under
      float16 loss scaling the optimizer clips itself (`global_clipnorm`, before the sum when
      there are several replicas).
  """

  def __init__(self, model, optimizer, strategy, is_regression, global_batch_size,
               jit_compile=False, clip_norm=1.0):
    self.model = model
    self.optimizer = optimizer
    self.strategy = strategy
    self.is_regression = is_regression
    self.global_batch_size = global_batch_size
    self.clip_norm = clip_norm
    self.loss_scaling = hasattr(optimizer, "inner_optimizer")
    self._grads = tf.function(self._loss_and_grads, jit_compile=bool(jit_compile))

  def _loss_and_grads(self, features, labels):
    with tf.GradientTape() as tape:
      logits = self.model(features, training=True)  # [batch, num_classes]
      loss = self.batch_loss(logits, labels)
      scaled = self.optimizer.scale_loss(loss) if self.loss_scaling else loss
    grads = tape.gradient(scaled, self.model.trainable_variables)
    return loss, grads

  def batch_loss(self, logits, labels):
    """This replica's share of the global mean loss (subclasses change the loss here)."""
    return tf.reduce_sum(per_example_loss(logits, labels, self.is_regression)) / self.global_batch_size

  def _replica_step(self, features, labels):
    loss, grads = self._grads(features, labels)
    variables = self.model.trainable_variables
    if self.loss_scaling:
      # The loss-scale optimizer unscales, skips non-finite steps and sums over replicas.
      self.optimizer.apply(grads, variables)
    else:
      context = tf.distribute.get_replica_context()
      grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
      if self.clip_norm:
        grads, _ = tf.clip_by_global_norm(grads, self.clip_norm)
      # keras sums the gradients over replicas again inside apply(): hand it each replica's share.
      replicas = self.strategy.num_replicas_in_sync
      if replicas > 1:
        grads = [_scale_gradient(g, 1.0 / replicas) for g in grads]
      self.optimizer.apply(grads, variables)
    return loss

  def make_train_function(self):
    """tf.function(iterator, num_steps) -> mean loss of the last step (over replicas: summed)."""
    @tf.function
    def train_steps(iterator, num_steps):
      loss = tf.constant(0.0)
      for _ in tf.range(num_steps):
        features, labels = next(iterator)
        per_replica = self.strategy.run(self._replica_step, args=(features, labels))
        loss = self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
      return loss
    return train_steps

  def train(self, dataset_fn, num_train_steps, checkpoint_manager, save_checkpoints_steps,
            steps_per_loop=1, log_steps=100, summary_dir=None):
    """Runs optimizer steps until `optimizer.iterations == num_train_steps`.

    Args:
      dataset_fn: callable(skip_batches) -> the training dataset (global batches).
      num_train_steps: the last step.
      checkpoint_manager: `tf.train.CheckpointManager` (None: no checkpoints).
      save_checkpoints_steps: checkpoint every N steps (and at the end).
      steps_per_loop: steps per tf.function call.
      log_steps: log (and write summaries) every N steps.
      summary_dir: TensorBoard folder (None: no summaries).

    Returns:
      the last step's loss (float).

    Raises:
      StoppedBySignal: after the first SIGTERM/SIGINT, at the end of the current call of
        `steps_per_loop` steps, once the checkpoint at that step is written.
    """
    step = int(self.optimizer.iterations.numpy())
    if step >= num_train_steps:
      logging.info("Already trained to step %d of %d", step, num_train_steps)
      return float("nan")
    dataset = self.strategy.experimental_distribute_dataset(dataset_fn(step))
    iterator = iter(dataset)
    train_steps = self.make_train_function()
    writer = tf.summary.create_file_writer(summary_dir) if summary_dir else None
    loss = float("nan")
    last_log, last_time = step, time.time()
    last_save = step
    with stop_signals.StopRequests(enabled=not is_multi_worker(self.strategy)) as stop:
      while step < num_train_steps:
        n = min(steps_per_loop, num_train_steps - step)
        loss = float(train_steps(iterator, tf.constant(n)))
        step = int(self.optimizer.iterations.numpy())
        if not np.isfinite(loss) and not self.loss_scaling:
          raise UsageError(f"training loss is {loss} at step {step}; lower --learning_rate")
        if step - last_log >= log_steps or step >= num_train_steps:
          elapsed = max(time.time() - last_time, 1e-9)
          rate = (step - last_log) * self.global_batch_size / elapsed
          lr = float(self._learning_rate())
          logging.info("step %d/%d  loss %.4f  lr %.3g  %.1f examples/s", step, num_train_steps,
                       loss, lr, rate)
          if writer is not None:
            with writer.as_default(step=step):
              write_scalar_summary("loss", loss)
              write_scalar_summary("learning_rate", lr)
              write_scalar_summary("examples_per_second", rate)
          last_log, last_time = step, time.time()
        if checkpoint_manager is not None and (step - last_save >= save_checkpoints_steps
                                               or step >= num_train_steps):
          checkpoint_manager.save(checkpoint_number=step)
          last_save = step
        if stop.signum is not None:  # SIGTERM/SIGINT: stop at this step, resumable from it
          if checkpoint_manager is not None and last_save != step:
            checkpoint_manager.save(checkpoint_number=step)
          if writer is not None:
            writer.flush()
          raise StoppedBySignal(stop.signum, step, checkpoint_manager and
                                checkpoint_manager.latest_checkpoint)
    if writer is not None:
      writer.flush()
    return loss

  def _learning_rate(self):
    """The schedule's value at the optimizer's current step."""
    optimizer = getattr(self.optimizer, "inner_optimizer", self.optimizer)
    return optimizer.learning_rate


# ----------------------------------------------------------------------------------------------
# 4. Prediction
# ----------------------------------------------------------------------------------------------


class Predictor:
  """Model outputs over an `inference_dataset`, in example order, under a strategy.

  One compiled forward pass per predictor, shared by evaluation and prediction.

  Args:
    model: the classifier.
    strategy: the strategy the model was built under.
    is_regression: return values instead of probabilities.
    jit_compile: compile the forward pass with XLA.
  """

  def __init__(self, model, strategy, is_regression, jit_compile=False):
    self.strategy = strategy
    self.is_regression = is_regression

    def forward(features):
      model_inputs = {k: features[k] for k in ("input_ids", "input_mask", "segment_ids")}
      return tf.cast(model(model_inputs, training=False), tf.float32), features["example_id"]

    forward = tf.function(forward, jit_compile=bool(jit_compile))

    @tf.function
    def step(features):
      logits, ids = strategy.run(forward, args=(features,))
      return strategy.gather(logits, axis=0), strategy.gather(ids, axis=0)

    self._step = step

  def __call__(self, dataset):
    """Returns (outputs float32 [num_examples, num_classes], logits [num_examples, num_classes]);
    rows whose example_id is -1 (batch padding) are dropped."""
    all_logits, all_ids = [], []
    for features in self.strategy.experimental_distribute_dataset(dataset):
      logits, ids = self._step(features)
      all_logits.append(logits.numpy())
      all_ids.append(ids.numpy())
    logits = np.concatenate(all_logits)
    ids = np.concatenate(all_ids)
    keep = ids >= 0
    logits = logits[keep][np.argsort(ids[keep], kind="stable")]
    return outputs_from_logits(logits, self.is_regression).numpy(), logits


def evaluate(predictor, dataset, labels, metric):
  """Loss and the task's metrics over an `inference_dataset` whose examples have `labels`.

  Args:
    predictor: a `Predictor`.
    dataset: from `inference_dataset`.
    labels: class ids (or values for regression) of the dataset's examples, in order.
    metric: the task's metric name (see `classifier_data.compute_metrics`).

  Returns:
    (metrics dict with "loss" and the metric keys, outputs).
  """
  from bert_tf.finetuning.classifier_data import compute_metrics
  outputs, logits = predictor(dataset)
  is_regression = predictor.is_regression
  loss = float(np.mean(per_example_loss(tf.constant(logits), tf.constant(labels),
                                        is_regression).numpy()))
  predictions = outputs[:, 0] if is_regression else np.argmax(outputs, axis=-1)
  results = compute_metrics(metric, predictions, labels)
  results["loss"] = loss
  return results, outputs


# ----------------------------------------------------------------------------------------------
# 5. Result files
# ----------------------------------------------------------------------------------------------


def write_test_results(path, outputs):
  """One line per example: its class probabilities (or its predicted value), tab-separated."""
  with atomic_output(path) as tmp:
    with tf.io.gfile.GFile(tmp, "w") as f:
      for row in np.asarray(outputs):
        f.write("\t".join(str(float(p)) for p in row) + "\n")


def write_summaries(summary_dir, results, step):
  """Writes every numeric result as a TensorBoard scalar at `step`."""
  writer = tf.summary.create_file_writer(summary_dir)
  with writer.as_default(step=step):
    for key, value in results.items():
      if isinstance(value, (int, float, np.floating, np.integer)):
        write_scalar_summary(key, float(value))
  writer.flush()


def checkpoint_prefix_in(directory):
  """The latest checkpoint in `directory`, or None (ignores a missing folder)."""
  if not directory or not tf.io.gfile.exists(directory):
    return None
  return tf.train.latest_checkpoint(directory)



# ----------------------------------------------------------------------------------------------
# 6. The whole run: train, evaluate, predict, export
# ----------------------------------------------------------------------------------------------


def _init_is_hf(opts):
  from bert_tf.checkpoints.huggingface import is_hf_directory
  return bool(opts.init_checkpoint) and is_hf_directory(opts.init_checkpoint)


def _check_options(opts):
  """What `run_options.preflight` leaves to TensorFlow: remote paths, a Hugging Face folder."""
  if not opts.vocab_file and not _init_is_hf(opts):
    raise UsageError("--vocab_file is required")
  if is_remote(opts.data_dir) and not tf.io.gfile.isdir(opts.data_dir):
    raise UsageError(f"--data_dir={opts.data_dir}: not a directory")
  if opts.vocab_file and not tf.io.gfile.exists(opts.vocab_file):
    raise UsageError(f"--vocab_file={opts.vocab_file}: file not found")


def bert_config_for(opts):
  """--bert_config_file, or the bert_config.json that run_pretraining left beside the checkpoint,
  or the config.json of a Hugging Face --init_checkpoint."""
  path = opts.bert_config_file
  if not path and _init_is_hf(opts):
    from bert_tf.checkpoints.huggingface import CONFIG_NAME, read_hf_config
    config = read_hf_config(opts.init_checkpoint)
    path = os.path.join(opts.init_checkpoint, CONFIG_NAME)
    if opts.max_seq_length > config.max_position_embeddings:
      raise UsageError(f"--max_seq_length={opts.max_seq_length} is longer than "
                       f"max_position_embeddings ({config.max_position_embeddings}) of {path}")
    return config
  if not path and opts.init_checkpoint:
    folder = (opts.init_checkpoint if tf.io.gfile.isdir(opts.init_checkpoint)
              else os.path.dirname(opts.init_checkpoint))
    candidate = os.path.join(folder, "bert_config.json")
    if tf.io.gfile.exists(candidate):
      path = candidate
  if not path:
    raise UsageError("--bert_config_file is required (no bert_config.json beside --init_checkpoint)")
  config = BertConfig.from_json_file(path)
  if opts.max_seq_length > config.max_position_embeddings:
    raise UsageError(f"--max_seq_length={opts.max_seq_length} is longer than max_position_embeddings "
                     f"({config.max_position_embeddings}) of {path}")
  return config


def build_for_training(opts, make_model, strategy, num_train_steps):
  """Model, optimizer and checkpoint, created in the strategy's scope.

  `make_model()` returns the fine-tuning model (anything with an `encoder`), called in that scope;
  the encoder's padding skipping, the model's variables and the optimizer's are set up here.
  """
  import keras

  from bert_tf.pretraining.optimization import create_optimizer
  from bert_tf.pretraining.training import padding_can_be_skipped
  with strategy.scope():
    model = make_model()
    # Fine-tuning sets are mostly padding (short sentences in --max_seq_length): the encoder's
    # blocks then run on the real tokens only, where shapes may vary (not under XLA, not on TPUs).
    model.encoder.skip_padding = padding_can_be_skipped(opts.skip_padding, opts.jit_compile,
                                                        strategy)
    dummy = {k: tf.zeros([1, opts.max_seq_length], tf.int32)
             for k in ("input_ids", "input_mask", "segment_ids")}
    model(dummy, training=False)
    optimizer = create_optimizer(opts.learning_rate, max(num_train_steps, 1),
                                 int(num_train_steps * opts.warmup_proportion))
    if opts.mixed_precision == "float16":
      optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
  return model, optimizer, checkpoint


def _build(opts, config, num_labels, strategy, num_train_steps):
  from bert_tf.modeling import BertClassifier
  return build_for_training(opts, lambda: BertClassifier(config, num_labels), strategy,
                            num_train_steps)


def restore_or_initialize(opts, checkpoint, manager, model):
  """Resumes from --output_dir's latest checkpoint, else loads --init_checkpoint into `model`
  (the classifier, or any model part `init_from_checkpoint` takes, such as an encoder).

  A latest checkpoint that cannot be read (cut short by a preempted writer) is skipped, with a
  warning, for the newest one that can (`checkpoints.resume.restore_newest`); one of another
  model or task is an error.

  Returns:
    "resumed", "initialized" or "random".
  """
  from bert_tf.checkpoints.resume import restore_newest
  resumed = restore_newest(
      checkpoint, manager.directory,
      lambda path, why: (f"--output_dir={opts.output_dir}: its checkpoint {path} does not fit "
                         f"this model/task ({why}); use a new --output_dir"))
  if resumed:
    logging.info("Resuming from %s", resumed)
    return "resumed"
  if opts.init_checkpoint:
    from bert_tf.checkpoints import init_from_checkpoint
    logging.info("Initializing the encoder from %s", opts.init_checkpoint)
    init_from_checkpoint(model, opts.init_checkpoint, strict=opts.strict_checkpoint,
                         config_source=opts.bert_config_file or "the bert config")
    return "initialized"
  logging.warning("No --init_checkpoint: the encoder starts from random weights")
  return "random"


def _prefixed(results, suffix):
  """eval_<key> (main dev set) or eval_<suffix>_<key> (extra dev sets such as MNLI mismatched)."""
  head = f"eval_{suffix}_" if suffix else "eval_"
  return {head + key: value for key, value in results.items()}


@run_lock.released_at_return
def run_classifier(opts, inputs=None):
  """Trains, evaluates, predicts and exports as the options say; returns the eval results dict.

  Every input is checked before the first write: flags, files, every row of every split the run
  reads, the config, the vocab and --init_checkpoint (loaded into the model); only then is
  --output_dir created, its lock taken (`bert_tf.utils.run_lock`, held until this returns) and
  labels.json written.

  Args:
    opts: `RunOptions`.
    inputs: what `run_options.preflight(opts)` returned (the command line runs it before it
      imports TensorFlow), or None to run it here.

  Returns:
    dict of what eval_results.txt holds (empty when --do_eval is off).
  """
  import keras

  from bert_tf.finetuning import classifier_data
  from bert_tf.checkpoints.huggingface import (hf_vocab_file, keep_converted_vocab,
                                               resolve_do_lower_case)
  from bert_tf.text.tokenization import validate_case_matches_checkpoint
  from bert_tf.pretraining.training import create_strategy, set_precision_policy
  inputs = inputs or run_options.preflight(opts)
  _check_options(opts)
  config = bert_config_for(opts)
  opts = dataclasses.replace(opts, do_lower_case=resolve_do_lower_case(opts.do_lower_case,
                                                                       opts.init_checkpoint))
  if not opts.vocab_file:  # a Hugging Face --init_checkpoint (see _check_options)
    # Converted into a temporary folder: --output_dir gets a copy at the first write below.
    opts = dataclasses.replace(opts, vocab_file=hf_vocab_file(opts.init_checkpoint))
  processor, train_examples = inputs.processor, inputs.train
  validate_case_matches_checkpoint(opts.do_lower_case, opts.init_checkpoint)
  labels_path = os.path.join(opts.output_dir, classifier_data.LABELS_FILENAME)
  if not opts.do_train and not opts.init_checkpoint and not checkpoint_prefix_in(opts.output_dir):
    raise UsageError(f"nothing to evaluate, predict or export: --output_dir={opts.output_dir} "
                     "holds no checkpoint and no --init_checkpoint is given (add --do_train?)")
  num_labels = 1 if processor.is_regression else len(processor.get_labels())
  num_train_steps = 0
  if opts.do_train:
    num_train_steps = int(len(train_examples) / opts.train_batch_size * opts.num_train_epochs)
    if num_train_steps < 1:
      raise UsageError(f"{len(train_examples)} training examples make no whole batch of "
                       f"--train_batch_size={opts.train_batch_size}")

  keras.utils.set_random_seed(opts.seed)  # the classifier's initial weights and dropout
  set_precision_policy(opts.mixed_precision)
  strategy = create_strategy(opts.distribution_strategy, opts.tpu)
  encoder = load_text_encoder(opts.vocab_file, opts.do_lower_case, opts.max_seq_length)
  if encoder.vocab_size > config.vocab_size:
    raise UsageError(f"--vocab_file={opts.vocab_file} has {encoder.vocab_size} ids but the model's "
                     f"vocab_size is {config.vocab_size}")
  model, optimizer, checkpoint = _build(opts, config, num_labels, strategy, num_train_steps)
  manager = tf.train.CheckpointManager(checkpoint, opts.output_dir,
                                       max_to_keep=opts.keep_checkpoint_max, checkpoint_name="ckpt")
  origin = restore_or_initialize(opts, checkpoint, manager, model)  # a bad checkpoint stops here
  if origin != "resumed" and not opts.do_train:
    logging.warning("No fine-tuned checkpoint in --output_dir=%s: using --init_checkpoint=%s "
                    "as it is", opts.output_dir, opts.init_checkpoint)

  # Every input is valid: the first writes.
  tf.io.gfile.makedirs(opts.output_dir)
  if is_chief(strategy):
    run_lock.hold(opts.output_dir)
    opts = dataclasses.replace(opts, vocab_file=keep_converted_vocab(opts.vocab_file,
                                                                     opts.output_dir))
  if opts.do_train:
    classifier_data.save_labels(labels_path, processor)
    labels = classifier_data.label_ids(processor, train_examples)
    logging.info("Training: %d examples, batch %d, %d steps (%d warmup)", len(train_examples),
                 opts.train_batch_size, num_train_steps,
                 int(num_train_steps * opts.warmup_proportion))
    tuner = FineTuner(model, optimizer, strategy, processor.is_regression, opts.train_batch_size,
                      jit_compile=opts.jit_compile)
    tuner.train(
        lambda skip: training_dataset(train_examples, labels, encoder, processor.has_text_b,
                                      opts.train_batch_size, seed=opts.seed, skip_batches=skip),
        num_train_steps, manager, opts.save_checkpoints_steps, steps_per_loop=opts.steps_per_loop,
        log_steps=opts.log_steps, summary_dir=os.path.join(opts.output_dir, "train"))
  global_step = int(optimizer.iterations.numpy())

  predictor = Predictor(model, strategy, processor.is_regression, opts.jit_compile)
  results = {}
  if opts.do_eval:
    for suffix, examples in inputs.dev.items():
      labels = classifier_data.label_ids(processor, examples)
      dataset = inference_dataset(examples, encoder, processor.has_text_b, opts.eval_batch_size)
      metrics, _ = evaluate(predictor, dataset, labels, processor.metric)
      results.update(_prefixed(metrics, suffix))
      if train_examples is not None and not processor.is_regression:
        logging.info("majority-class accuracy on dev%s: %.4f", suffix and f" {suffix}",
                     classifier_data.majority_baseline(processor, train_examples, examples))
    results["global_step"] = global_step
    results["loss"] = results["eval_loss"]
    write_eval_results(os.path.join(opts.output_dir, "eval_results.txt"), results)
    write_summaries(os.path.join(opts.output_dir, "eval"), results, global_step)
    for key in sorted(results):
      logging.info("  %s = %s", key, results[key])

  if opts.do_predict:
    for suffix, examples in inputs.test.items():
      dataset = inference_dataset(examples, encoder, processor.has_text_b, opts.predict_batch_size)
      outputs, _ = predictor(dataset)
      name = f"test_results_{suffix}.tsv" if suffix else "test_results.tsv"
      write_test_results(os.path.join(opts.output_dir, name), outputs)
      logging.info("Wrote %d predictions to %s", len(outputs), name)

  if opts.export_dir:
    from bert_tf.finetuning.export import export_classifier
    export_classifier(opts.export_dir, model, encoder, processor.get_labels(),
                      processor.is_regression, processor.has_text_b,
                      metadata={"task_name": processor.name, "do_lower_case": opts.do_lower_case,
                                "global_step": global_step})
    logging.info("Exported the SavedModel to %s", opts.export_dir)
  return results
