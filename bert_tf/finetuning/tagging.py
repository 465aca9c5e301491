"""Token classification (named-entity recognition): the model, its loss and what `run_ner` does.

Readable top to bottom:
  1. `BertTokenClassifier`: the encoder, dropout and one dense layer applied to every token of
     `sequence_output`.
  2. The loss: cross-entropy averaged over the labelled positions (each word's first sub-token);
     `TokenFineTuner` is `classification.FineTuner` with that loss, so the training loop,
     strategy, mixed precision, clipping, checkpoints and resume are the classifier's.
  3. Datasets of the windows built by `ner_data.build_features`.
  4. Prediction: window logits (`classification.Predictor`) -> one tag per word -> scores.
  5. `test_predictions.txt`.
  6. `run_ner(NerOptions)`: what the command does, in order.
"""

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from bert_tf.errors import UsageError
from bert_tf.finetuning import classification, ner_data, ner_metrics, ner_options
from bert_tf.finetuning.ner_options import NerOptions  # noqa: F401 (its home before)
from bert_tf.modeling.encoder import BertEncoder, config_from_any
from bert_tf.modeling.layers import Dense
from bert_tf.utils import run_lock
from bert_tf.utils.io_utils import atomic_output, write_eval_results

MODEL_INPUTS = ("input_ids", "input_mask", "segment_ids")

# ----------------------------------------------------------------------------------------------
# 1. The model
# ----------------------------------------------------------------------------------------------


class BertTokenClassifier(keras.Model):
  """A tagger: dropout and a dense layer on every token's encoder output.

  Args:
    config: a `BertConfig` (or its dict).
    num_labels: number of tags.
    dropout_rate: dropout before the output layer; defaults to the config's `hidden_dropout_prob`.

  Called on a dict with `input_ids`, `input_mask`, `segment_ids` (int [batch, seq_length]);
  returns float32 logits [batch, seq_length, num_labels]. The encoder is the attribute `encoder`
  (what `bert_tf.checkpoints.init_from_checkpoint` loads pretrained weights into).

  Example:
    >>> model = BertTokenClassifier(BertConfig(vocab_size=100, hidden_size=32,
    ...     num_hidden_layers=1, num_attention_heads=2, intermediate_size=64), num_labels=5)
    >>> ids = tf.ones([2, 8], tf.int32)
    >>> model({"input_ids": ids, "input_mask": ids, "segment_ids": 0 * ids}).shape
    TensorShape([2, 8, 5])
  """

  def __init__(self, config, num_labels, dropout_rate=None, **kwargs):
    kwargs.setdefault("name", "bert_token_classifier")
    super().__init__(**kwargs)
    config = config_from_any(config)
    self.bert_config = config
    self.num_labels = int(num_labels)
    self.dropout_rate = config.hidden_dropout_prob if dropout_rate is None else dropout_rate
    self.encoder = BertEncoder(config, name="encoder")
    self.dropout = keras.layers.Dropout(self.dropout_rate, name="dropout")
    self.classifier = Dense(self.num_labels, initializer_range=config.initializer_range,
                            name="classifier")
    self.build()

  def build(self, input_shape=None):
    self.classifier.build((None, None, self.bert_config.hidden_size))
    self.built = True

  def call(self, features, training=None):
    encoded = self.encoder({k: features[k] for k in MODEL_INPUTS if k in features},
                           training=training)
    x = self.dropout(encoded["sequence_output"], training=training)  # [B, S, H]
    return tf.cast(self.classifier(x), tf.float32)                   # [B, S, num_labels]

  def get_config(self):
    config = super().get_config()
    config.update(config=self.bert_config.to_dict(), num_labels=self.num_labels,
                  dropout_rate=self.dropout_rate)
    return config

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    return cls(config.pop("config"), config.pop("num_labels"),
               dropout_rate=config.pop("dropout_rate", None), name=config.get("name"))


# ----------------------------------------------------------------------------------------------
# 2. The loss
# ----------------------------------------------------------------------------------------------


def masked_token_loss(logits, label_ids):
  """Mean cross-entropy over the positions whose label id is >= 0 (0 when there is none).

  Args:
    logits: float [batch, seq_length, num_labels].
    label_ids: int [batch, seq_length], -1 where the loss ignores the position.
  """
  label_ids = tf.cast(label_ids, tf.int32)
  weights = tf.cast(label_ids >= 0, tf.float32)                            # [B, S]
  xent = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.maximum(label_ids, 0), logits=tf.cast(logits, tf.float32))  # [B, S]
  return tf.reduce_sum(xent * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)


class TokenFineTuner(classification.FineTuner):
  """`classification.FineTuner` with the masked token loss; labels are int [batch, seq_length].

  With several replicas each one averages over its own labelled positions and the replicas'
  means are averaged.
  """

  def __init__(self, model, optimizer, strategy, global_batch_size, jit_compile=False):
    super().__init__(model, optimizer, strategy, is_regression=False,
                     global_batch_size=global_batch_size, jit_compile=jit_compile)

  def batch_loss(self, logits, labels):
    return masked_token_loss(logits, labels) / self.strategy.num_replicas_in_sync


# ----------------------------------------------------------------------------------------------
# 3. Datasets
# ----------------------------------------------------------------------------------------------


def training_dataset(features, batch_size, seed=12345, skip_batches=0):
  """Endless shuffled batches of (model inputs, label_ids) over the windows of `features`."""
  columns = dict(features.model_inputs(), label=features.label_ids)
  ds = tf.data.Dataset.from_tensor_slices(columns).cache()
  return classification.shuffled_batches(ds, features.num_windows, batch_size, seed=seed,
                                         skip_batches=skip_batches)


def inference_dataset(features, batch_size):
  """Every window in order, the last batch padded with copies of window 0 (example_id -1)."""
  n = features.num_windows
  total = -(-n // batch_size) * batch_size
  rows = np.concatenate([np.arange(n), np.zeros(total - n, np.int64)])
  columns = {k: v[rows] for k, v in features.model_inputs().items()}
  columns["example_id"] = np.where(np.arange(total) < n, np.arange(total), -1).astype(np.int32)
  ds = tf.data.Dataset.from_tensor_slices(columns)
  return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


# ----------------------------------------------------------------------------------------------
# 4. Prediction and scores
# ----------------------------------------------------------------------------------------------


def predict_tags(predictor, features, labels, scheme, batch_size):
  """Per-word tags of every sentence (in `scheme`) and the windows' logits.

  Args:
    predictor: a `classification.Predictor` over the tagger.
    features: `ner_data.Features` of the sentences.
    labels: the label strings (BIO) in id order.
    scheme: "bio" or "iob1", the scheme of the output tags.
    batch_size: windows per batch.

  Returns:
    (list of lists of tags, logits float32 [windows, seq_length, num_labels]).
  """
  _, logits = predictor(inference_dataset(features, batch_size))
  ids = ner_data.merge_predictions(features, np.argmax(logits, axis=-1))
  names = np.asarray(labels, dtype=object)
  # An I-X without a preceding X is read as B-X (as conlleval reads it) before the scheme is applied.
  tags = [ner_data.from_bio(ner_data.to_bio(names[row].tolist()), scheme) for row in ids]
  return tags, logits


def evaluate(predictor, features, sentences, labels, scheme, batch_size):
  """conlleval scores of the predictions against the sentences' gold tags, and the loss.

  Returns:
    (scores dict of `ner_metrics.entity_scores` plus "loss", predicted tags).
  """
  tags, logits = predict_tags(predictor, features, labels, scheme, batch_size)
  gold = [s.tags for s in sentences]
  scores = ner_metrics.entity_scores(gold, tags)
  scores["loss"] = float(masked_token_loss(tf.constant(logits), tf.constant(features.label_ids)))
  return scores, tags


def most_frequent_tag_baseline(train_sentences, sentences, scheme):
  """The per-word most-frequent-tag baseline: each word gets the tag it had most often in
  training (lower-cased lookup first, exact spelling preferred), unseen words O; tags in
  `scheme`. Returns the predicted tags."""
  import collections
  exact, lower = collections.defaultdict(collections.Counter), collections.defaultdict(
      collections.Counter)
  for s in train_sentences:
    for w, t in zip(s.words, ner_data.to_bio(s.tags)):
      exact[w][t] += 1
      lower[w.lower()][t] += 1
  out = []
  for s in sentences:
    tags = []
    for w in s.words:
      counts = exact.get(w) or lower.get(w.lower())
      tags.append(counts.most_common(1)[0][0] if counts else ner_metrics.OUTSIDE)
    out.append(ner_data.from_bio(ner_data.to_bio(tags), scheme))
  return out


# ----------------------------------------------------------------------------------------------
# 5. Result files
# ----------------------------------------------------------------------------------------------


def write_predictions(path, sentences, predicted):
  """CoNLL lines `word [gold] predicted`, a blank line after each sentence, sentences in order."""
  with atomic_output(path) as tmp:
    with tf.io.gfile.GFile(tmp, "w") as f:
      for sentence, tags in zip(sentences, predicted):
        gold = sentence.tags or [None] * len(sentence.words)
        for word, g, p in zip(sentence.words, gold, tags):
          f.write(f"{word} {g} {p}\n" if g is not None else f"{word} {p}\n")
        f.write("\n")


# ----------------------------------------------------------------------------------------------
# 6. The whole run
# ----------------------------------------------------------------------------------------------


def _check_options(opts):
  """What `ner_options.preflight` leaves to TensorFlow: a remote --vocab_file."""
  if opts.vocab_file and not tf.io.gfile.exists(opts.vocab_file):
    raise UsageError(f"--vocab_file={opts.vocab_file}: file not found")


def doc_stride(opts):
  """--doc_stride, by default half a window (`max_seq_length - 2` sub-tokens)."""
  return opts.doc_stride or max(1, (opts.max_seq_length - 2) // 2)


def _labels(opts, labels_path, train):
  """(labels, scheme): from the training file when training, else from labels.json."""
  if train is not None:
    scheme = ner_data.detect_scheme(train, opts.tag_scheme)
    return ner_data.labels_from_training(train), scheme
  if not tf.io.gfile.exists(labels_path):
    raise UsageError(f"no {labels_path}: the labels are saved by --do_train into --output_dir")
  labels, scheme = ner_data.load_labels(labels_path)
  if opts.tag_scheme != "auto" and opts.tag_scheme != scheme:
    logging.warning("--tag_scheme=%s, but the model was trained on %s files; writing %s",
                    opts.tag_scheme, scheme, opts.tag_scheme)
    scheme = opts.tag_scheme
  return labels, scheme


def _build(opts, config, num_labels, strategy, num_train_steps):
  """Model, optimizer and checkpoint (`classification.build_for_training`)."""
  def make_model():
    model = BertTokenClassifier(config, num_labels)
    model.encoder.pooler.trainable = False  # a tagger never uses the pooled [CLS] output
    return model
  return classification.build_for_training(opts, make_model, strategy, num_train_steps)


def _features(opts, tokenizer, sentences, label_ids_of, what):
  pieces = ner_data.word_pieces(tokenizer, sentences)
  features = ner_data.build_features(sentences, pieces, label_ids_of, opts.max_seq_length,
                                     doc_stride(opts), tokenizer.cls_id, tokenizer.sep_id)
  logging.info("%s: %d sentences, %d windows (%d sentences longer than %d sub-tokens split with "
               "--doc_stride=%d)", what, len(sentences), features.num_windows, features.num_split,
               opts.max_seq_length - 2, doc_stride(opts))
  return features


@run_lock.released_at_return
def run_ner(opts, inputs=None):
  """Trains, evaluates, predicts and exports as the options say; returns the eval results dict.

  Holds the lock of --output_dir (`bert_tf.utils.run_lock`) from its first file until it returns;
  training stops on SIGTERM/SIGINT with a checkpoint as run_classifier's (`FineTuner.train`).

  Args:
    opts: `NerOptions`.
    inputs: what `ner_options.preflight(opts)` returned (the command line runs it before it
      imports TensorFlow), or None to run it here.
  """
  from bert_tf.pretraining.training import create_strategy, is_chief, set_precision_policy
  from bert_tf.text.tokenization import FullTokenizer, validate_case_matches_checkpoint
  from bert_tf.checkpoints.huggingface import hf_vocab_file, keep_converted_vocab, resolve_do_lower_case
  inputs = inputs or ner_options.preflight(opts)
  _check_options(opts)
  config = classification.bert_config_for(opts)  # also a Hugging Face directory's config.json
  opts = dataclasses.replace(opts, do_lower_case=resolve_do_lower_case(opts.do_lower_case,
                                                                       opts.init_checkpoint))
  if not opts.vocab_file:  # a Hugging Face --init_checkpoint (see _check_options)
    # converted into a temporary folder; copied into --output_dir once every input is checked
    opts = dataclasses.replace(opts, vocab_file=hf_vocab_file(opts.init_checkpoint))
  validate_case_matches_checkpoint(opts.do_lower_case, opts.init_checkpoint)
  labels_path = os.path.join(opts.output_dir, ner_data.LABELS_FILENAME)
  train = inputs.train
  labels, scheme = _labels(opts, labels_path, train)
  label_ids_of = {t: i for i, t in enumerate(labels)}
  if not opts.do_train and not opts.init_checkpoint and not classification.checkpoint_prefix_in(
      opts.output_dir):
    raise UsageError(f"nothing to evaluate, predict or export: --output_dir={opts.output_dir} "
                     "holds no checkpoint and no --init_checkpoint is given (add --do_train?)")
  tokenizer = FullTokenizer(opts.vocab_file, do_lower_case=opts.do_lower_case)
  if tokenizer.vocab_size > config.vocab_size:
    raise UsageError(f"--vocab_file={opts.vocab_file} has {tokenizer.vocab_size} ids but the "
                     f"model's vocab_size is {config.vocab_size}")
  for token in ("[CLS]", "[SEP]", "[UNK]"):
    tokenizer.special_id(token)  # UsageError naming the vocab file when one is missing
  train_features, num_train_steps = None, 0
  if opts.do_train:  # its windows: the last check before the first write
    train_features = _features(opts, tokenizer, train, label_ids_of, "train")
    num_train_steps = int(train_features.num_windows / opts.train_batch_size *
                          opts.num_train_epochs)
    if num_train_steps < 1:
      raise UsageError(f"{train_features.num_windows} training windows make no whole batch of "
                       f"--train_batch_size={opts.train_batch_size}")
  tf.io.gfile.makedirs(opts.output_dir)

  keras.utils.set_random_seed(opts.seed)
  set_precision_policy(opts.mixed_precision)
  strategy = create_strategy(opts.distribution_strategy, opts.tpu)
  if is_chief(strategy):
    run_lock.hold(opts.output_dir)
    opts = dataclasses.replace(opts, vocab_file=keep_converted_vocab(opts.vocab_file,
                                                                     opts.output_dir))
  if opts.do_train:
    ner_data.save_labels(labels_path, labels, scheme, do_lower_case=opts.do_lower_case,
                         max_seq_length=opts.max_seq_length, doc_stride=doc_stride(opts))
  model, optimizer, checkpoint = _build(opts, config, len(labels), strategy, num_train_steps)
  manager = tf.train.CheckpointManager(checkpoint, opts.output_dir,
                                       max_to_keep=opts.keep_checkpoint_max, checkpoint_name="ckpt")
  classification.restore_or_initialize(opts, checkpoint, manager, model.encoder)

  if opts.do_train:
    logging.info("Training: %d windows, batch %d, %d steps (%d warmup), %s tags",
                 train_features.num_windows, opts.train_batch_size, num_train_steps,
                 int(num_train_steps * opts.warmup_proportion), scheme.upper())
    tuner = TokenFineTuner(model, optimizer, strategy, opts.train_batch_size,
                           jit_compile=opts.jit_compile)
    tuner.train(
        lambda skip: training_dataset(train_features, opts.train_batch_size, seed=opts.seed,
                                      skip_batches=skip),
        num_train_steps, manager, opts.save_checkpoints_steps, steps_per_loop=opts.steps_per_loop,
        log_steps=opts.log_steps, summary_dir=os.path.join(opts.output_dir, "train"))
  global_step = int(optimizer.iterations.numpy())
  predictor = classification.Predictor(model, strategy, is_regression=False,
                                       jit_compile=opts.jit_compile)

  results = {}
  if opts.do_eval:
    dev = inputs.dev
    for tag, where in ner_data.unseen_tags(dev, labels).items():
      logging.warning("%s: tag %s is not among the training labels: its entities count as "
                      "missed (never predicted), and the loss skips them", where, tag)
    features = _features(opts, tokenizer, dev, label_ids_of, "dev")
    scores, _ = evaluate(predictor, features, dev, labels, scheme, opts.eval_batch_size)
    results = ner_metrics.eval_results(scores)
    results.update(eval_loss=scores["loss"], loss=scores["loss"], global_step=global_step)
    if train is not None:
      baseline = ner_metrics.entity_scores(
          [s.tags for s in dev], most_frequent_tag_baseline(train, dev, scheme))
      logging.info("most-frequent-tag baseline on dev: entity F1 %.4f", baseline["f1"])
    write_eval_results(os.path.join(opts.output_dir, "eval_results.txt"), results)
    classification.write_summaries(os.path.join(opts.output_dir, "eval"), results, global_step)
    for key in sorted(results):
      logging.info("  %s = %s", key, results[key])

  if opts.do_predict:
    test = inputs.test
    features = _features(opts, tokenizer, test, label_ids_of, "test")
    tags, _ = predict_tags(predictor, features, labels, scheme, opts.predict_batch_size)
    write_predictions(os.path.join(opts.output_dir, "test_predictions.txt"), test, tags)
    logging.info("Wrote the tags of %d sentences to test_predictions.txt", len(test))

  if opts.export_dir:
    from bert_tf.finetuning.ner_export import export_tagger
    export_tagger(opts.export_dir, model, opts.vocab_file, opts.do_lower_case, labels,
                  opts.max_seq_length, metadata={"tag_scheme": scheme, "global_step": global_step})
    logging.info("Exported the SavedModel to %s", opts.export_dir)
  return results
