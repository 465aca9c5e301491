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
"""

import time

import numpy as np
import tensorflow as tf
from absl import logging

from bert_tf.io_utils import atomic_output

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

  Args:
    tokenizer: callable mapping tf.string [batch] to a RaggedTensor of ids [batch, (tokens)]
      (`bert_tf.tokenization.BertTokenizerLayer`).
    max_seq_length: length of every packed row.
    cls_id, sep_id: ids of [CLS] and [SEP] in the tokenizer's vocabulary.
  """

  def __init__(self, tokenizer, max_seq_length, cls_id, sep_id):
    self.tokenizer = tokenizer
    self.max_seq_length = int(max_seq_length)
    self.cls_id = int(cls_id)
    self.sep_id = int(sep_id)

  def _ids(self, texts):
    ids = self.tokenizer(texts)
    if ids.ragged_rank > 1:  # [batch, (words), (pieces)] -> [batch, (tokens)]
      ids = ids.merge_dims(1, -1)
    return ids

  def __call__(self, text_a, text_b=None):
    """text_a, text_b: tf.string [batch]. Returns the dict of `pack_inputs`."""
    ids_b = None if text_b is None else self._ids(text_b)
    return pack_inputs(self._ids(text_a), ids_b, self.max_seq_length, self.cls_id, self.sep_id)


def load_text_encoder(vocab_file, do_lower_case, max_seq_length):
  """A `TextEncoder` with the in-graph WordPiece tokenizer of `vocab_file`."""
  from bert_tf.tokenization import BertTokenizerLayer, FullTokenizer
  python_tokenizer = FullTokenizer(vocab_file, do_lower_case=do_lower_case)
  layer = BertTokenizerLayer(vocab_file, do_lower_case=do_lower_case)
  return TextEncoder(layer, max_seq_length, python_tokenizer.cls_id, python_tokenizer.sep_id)


# ----------------------------------------------------------------------------------------------
# 2. Datasets
# ----------------------------------------------------------------------------------------------

_ENCODE_BATCH = 256  # strings tokenized per tf.data map call


def _columns(examples, labels):
  """Examples as column arrays: text_a, text_b ("" when single), label, example_id."""
  columns = {
      "text_a": np.array([e.text_a for e in examples], dtype=object),
      "text_b": np.array([e.text_b or "" for e in examples], dtype=object),
      "example_id": np.arange(len(examples), dtype=np.int32),
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


def encoded_dataset(examples, labels, encoder, use_text_b):
  """Unbatched dataset of packed features (+ example_id, + label when `labels` is given)."""
  ds = tf.data.Dataset.from_tensor_slices(_columns(examples, labels))
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
  ds = ds.shuffle(min(len(examples), 50_000), seed=seed, reshuffle_each_iteration=True)
  ds = ds.repeat().batch(batch_size, drop_remainder=True)
  if skip_batches:
    ds = ds.skip(skip_batches)
  return ds.map(lambda f: (f, f.pop("label"))).prefetch(tf.data.AUTOTUNE)


def inference_dataset(examples, encoder, use_text_b, batch_size):
  """Batches of every example in order, the last one padded with copies of example 0 whose
  `example_id` is -1 (dropped after prediction), so every batch has the same static shape."""
  padded = list(examples)
  remainder = len(padded) % batch_size
  if remainder:
    padded += [examples[0]] * (batch_size - remainder)
  ds = encoded_dataset(padded, None, encoder, use_text_b)
  num_real = len(examples)
  ds = ds.map(lambda f: dict(f, example_id=tf.where(f["example_id"] < num_real,
                                                    f["example_id"], -1)))
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


class FineTuner:
  """The classifier's training step and loop under a `tf.distribute` strategy.

  Args:
    model: a `BertClassifier` built in `strategy.scope()`.
    optimizer: from `bert_tf.optimization.create_optimizer` (wrapped in a
      `keras.optimizers.LossScaleOptimizer` for float16), built in `strategy.scope()`.
    strategy: the `tf.distribute.Strategy`.
    is_regression: squared-error loss on one output instead of cross-entropy.
    global_batch_size: examples per optimizer step over all replicas.
    jit_compile: compile the forward/backward pass with XLA.
    clip_norm: global-norm clipping after the cross-replica sum (the original's 1.0).
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
      loss = tf.reduce_sum(per_example_loss(logits, labels, self.is_regression))
      loss = loss / self.global_batch_size  # this replica's share of the global mean
      scaled = self.optimizer.scale_loss(loss) if self.loss_scaling else loss
    grads = tape.gradient(scaled, self.model.trainable_variables)
    return loss, grads

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
      self.optimizer.apply([g / replicas for g in grads], variables)
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
    while step < num_train_steps:
      n = min(steps_per_loop, num_train_steps - step)
      loss = float(train_steps(iterator, tf.constant(n)))
      step = int(self.optimizer.iterations.numpy())
      if not np.isfinite(loss) and not self.loss_scaling:
        raise FloatingPointError(f"training loss is {loss} at step {step}; lower --learning_rate")
      if step - last_log >= log_steps or step >= num_train_steps:
        elapsed = max(time.time() - last_time, 1e-9)
        rate = (step - last_log) * self.global_batch_size / elapsed
        lr = float(self._learning_rate(step))
        logging.info("step %d/%d  loss %.4f  lr %.3g  %.1f examples/s", step, num_train_steps,
                     loss, lr, rate)
        if writer is not None:
          with writer.as_default(step=step):
            tf.summary.scalar("loss", loss)
            tf.summary.scalar("learning_rate", lr)
            tf.summary.scalar("examples_per_second", rate)
        last_log, last_time = step, time.time()
      if checkpoint_manager is not None and (step - last_save >= save_checkpoints_steps
                                             or step >= num_train_steps):
        checkpoint_manager.save(checkpoint_number=step)
        last_save = step
    if writer is not None:
      writer.flush()
    return loss

  def _learning_rate(self, step):
    optimizer = getattr(self.optimizer, "inner_optimizer", self.optimizer)
    schedule = optimizer._learning_rate if hasattr(optimizer, "_learning_rate") else None
    if callable(schedule):
      return schedule(step)
    return optimizer.learning_rate


# ----------------------------------------------------------------------------------------------
# 4. Prediction
# ----------------------------------------------------------------------------------------------


def predict_outputs(model, dataset, strategy, is_regression, jit_compile=False):
  """Model outputs for every real example of an `inference_dataset`, in example order.

  Args:
    model: the classifier.
    dataset: from `inference_dataset` (padding rows have example_id -1).
    strategy: the strategy the model was built under.
    is_regression: return values instead of probabilities.
    jit_compile: compile the forward pass with XLA.

  Returns:
    (outputs float32 [num_examples, num_classes], logits float32 [num_examples, num_classes]).
  """
  @tf.function(jit_compile=bool(jit_compile))
  def forward(features):
    model_inputs = {k: features[k] for k in ("input_ids", "input_mask", "segment_ids")}
    return tf.cast(model(model_inputs, training=False), tf.float32)

  @tf.function
  def step(features):
    logits = strategy.run(forward, args=(features,))
    ids = strategy.run(lambda f: f["example_id"], args=(features,))
    return strategy.gather(logits, axis=0), strategy.gather(ids, axis=0)

  all_logits, all_ids = [], []
  for features in strategy.experimental_distribute_dataset(dataset):
    logits, ids = step(features)
    all_logits.append(logits.numpy())
    all_ids.append(ids.numpy())
  logits = np.concatenate(all_logits)
  ids = np.concatenate(all_ids)
  keep = ids >= 0
  order = np.argsort(ids[keep], kind="stable")
  logits = logits[keep][order]
  return outputs_from_logits(logits, is_regression).numpy(), logits


def evaluate(model, dataset, labels, strategy, metric, is_regression, jit_compile=False):
  """Loss and the task's metrics over an `inference_dataset` whose examples have `labels`.

  Returns:
    (metrics dict with "loss" and the metric keys of `classifier_data.compute_metrics`, outputs).
  """
  from bert_tf.classifier_data import compute_metrics
  outputs, logits = predict_outputs(model, dataset, strategy, is_regression, jit_compile)
  loss = float(np.mean(per_example_loss(tf.constant(logits), tf.constant(labels),
                                        is_regression).numpy()))
  predictions = outputs[:, 0] if is_regression else np.argmax(outputs, axis=-1)
  results = compute_metrics(metric, predictions, labels)
  results["loss"] = loss
  return results, outputs


# ----------------------------------------------------------------------------------------------
# 5. Result files
# ----------------------------------------------------------------------------------------------


def write_eval_results(path, results):
  """`key = value` lines in sorted key order, as the original's eval_results.txt."""
  with atomic_output(path) as tmp:
    with tf.io.gfile.GFile(tmp, "w") as f:
      for key in sorted(results):
        f.write(f"{key} = {results[key]}\n")


def read_eval_results(path):
  """The dict of an eval_results.txt (values as float when they parse)."""
  results = {}
  with tf.io.gfile.GFile(path, "r") as f:
    for line in f:
      if " = " in line:
        key, value = line.rstrip("\n").split(" = ", 1)
        try:
          results[key] = float(value)
        except ValueError:
          results[key] = value
  return results


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
        tf.summary.scalar(key, float(value))
  writer.flush()


def checkpoint_prefix_in(directory):
  """The latest checkpoint in `directory`, or None (ignores a missing folder)."""
  if not directory or not tf.io.gfile.exists(directory):
    return None
  return tf.train.latest_checkpoint(directory)

