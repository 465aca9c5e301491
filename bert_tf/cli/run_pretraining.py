"""run_pretraining.py: pretrain BERT (masked LM + next sentence) on TFRecords, resuming from checkpoints.

The original's flags keep their names and defaults; the new ones are additions. Example:

  python run_pretraining.py --bert_config_file=bert_config.json --input_file='data/*.tfrecord' \
      --output_dir=/tmp/pretraining --do_train --do_eval --train_batch_size=32 \
      --num_train_steps=10000 --num_warmup_steps=1000 --learning_rate=1e-4 \
      --mixed_precision=bfloat16 --jit_compile
"""

from absl import flags, logging

from bert_tf import errors
from bert_tf.cli import common

FLAGS = flags.FLAGS


def define_flags():
  """The original run_pretraining.py flags (same defaults) plus this project's additions."""
  if "bert_config_file" in FLAGS:
    return
  flags.DEFINE_string("bert_config_file", None, "bert_config.json of the model to train (default "
                      "for a Hugging Face --init_checkpoint: its config.json).")
  flags.DEFINE_string("input_file", None, "TFRecord files (comma list and/or globs; .gz or manifest "
                      "'compression' for GZIP files).")
  flags.DEFINE_string("output_dir", None, "Checkpoints, bert_config.json, eval_results.txt, "
                      "train_log.jsonl and TensorBoard summaries go here.")
  flags.DEFINE_string("init_checkpoint", None, "Initial weights: an original TF1 BERT checkpoint, "
                      "one of ours, or a Hugging Face BERT directory (ignored when output_dir "
                      "already holds a checkpoint to resume).")
  flags.DEFINE_integer("max_seq_length", 128, "Sequence length of the TFRecords.")
  flags.DEFINE_integer("max_predictions_per_seq", 20, "Masked positions per sequence in the TFRecords.")
  flags.DEFINE_bool("do_train", False, "Train.")
  flags.DEFINE_bool("do_eval", False, "Evaluate (on --eval_input_file, else on --input_file).")
  flags.DEFINE_integer("train_batch_size", 32, "Global batch (all replicas) of one forward pass; "
                       "an optimizer step uses --gradient_accumulation_steps of them.")
  flags.DEFINE_integer("eval_batch_size", 8, "Global evaluation batch.")
  flags.DEFINE_float("learning_rate", 5e-5, "Peak learning rate.")
  flags.DEFINE_integer("num_train_steps", 100000, "Optimizer steps of the whole run.")
  flags.DEFINE_integer("num_warmup_steps", 10000, "Linear warmup steps.")
  flags.DEFINE_integer("save_checkpoints_steps", 1000, "Checkpoint every N steps.")
  flags.DEFINE_integer("max_eval_steps", 100, "Evaluate on at most N batches.")
  common.define_legacy_tpu_flags()
  # New.
  flags.DEFINE_string("eval_input_file", None, "Held-out TFRecords for --do_eval.")
  flags.DEFINE_enum("optimizer", "adamw", ["adamw", "lamb"], "adamw as the original, lamb for large batches.")
  flags.DEFINE_float("weight_decay_rate", 0.01, "Decoupled weight decay (not on LayerNorm and biases).")
  flags.DEFINE_integer("gradient_accumulation_steps", 1, "Micro-batches of --train_batch_size per "
                       "optimizer step (effective batch = train_batch_size * this).")
  flags.DEFINE_integer("random_seed", 12345, "Seed of the data order (files and shuffle buffer).")
  flags.DEFINE_integer("shuffle_buffer_size", 10000, "Examples in the tf.data shuffle buffer.")
  common.define_runtime_flags()
  common.define_checkpoint_flags()


def params_from_flags():
  """`PretrainingParams` from the parsed flags (raises UsageError for bad values)."""
  from bert_tf.pretraining import training
  from bert_tf.configs import BertConfig
  from bert_tf.checkpoints import huggingface
  if FLAGS.bert_config_file:
    config = BertConfig.from_json_file(FLAGS.bert_config_file)
  elif FLAGS.init_checkpoint and huggingface.is_hf_directory(FLAGS.init_checkpoint):
    config = huggingface.read_hf_config(FLAGS.init_checkpoint)
  else:
    raise errors.UsageError("--bert_config_file is required")
  return training.PretrainingParams(
      bert_config=config,
      output_dir=FLAGS.output_dir, input_file=FLAGS.input_file,
      eval_input_file=FLAGS.eval_input_file, init_checkpoint=FLAGS.init_checkpoint,
      max_seq_length=FLAGS.max_seq_length, max_predictions_per_seq=FLAGS.max_predictions_per_seq,
      do_train=FLAGS.do_train, do_eval=FLAGS.do_eval, train_batch_size=FLAGS.train_batch_size,
      eval_batch_size=FLAGS.eval_batch_size, learning_rate=FLAGS.learning_rate,
      num_train_steps=FLAGS.num_train_steps, num_warmup_steps=FLAGS.num_warmup_steps,
      save_checkpoints_steps=FLAGS.save_checkpoints_steps, max_eval_steps=FLAGS.max_eval_steps,
      optimizer=FLAGS.optimizer, weight_decay_rate=FLAGS.weight_decay_rate,
      gradient_accumulation_steps=FLAGS.gradient_accumulation_steps,
      mixed_precision=FLAGS.mixed_precision, jit_compile=FLAGS.jit_compile,
      skip_padding=FLAGS.skip_padding, steps_per_loop=FLAGS.steps_per_loop,
      log_steps=FLAGS.log_steps,
      keep_checkpoint_max=FLAGS.keep_checkpoint_max, seed=FLAGS.random_seed,
      shuffle_buffer_size=FLAGS.shuffle_buffer_size, strict_checkpoint=FLAGS.strict_checkpoint)


def check_remote_eval_checkpoint():
  """--do_eval alone on a remote --output_dir without a checkpoint (local ones are checked by
  `run_checks.check_inputs`, before TensorFlow)."""
  from bert_tf.utils.io_utils import is_remote
  if FLAGS.do_eval and not FLAGS.do_train and not FLAGS.init_checkpoint and \
      is_remote(FLAGS.output_dir):
    import tensorflow as tf
    if not tf.train.latest_checkpoint(FLAGS.output_dir):
      from bert_tf.pretraining.run_checks import no_checkpoint_to_evaluate_message
      raise errors.UsageError(no_checkpoint_to_evaluate_message(FLAGS.output_dir))


def main(argv):
  if len(argv) > 1:
    raise errors.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  common.validate_runtime_flags()
  FLAGS.distribution_strategy, FLAGS.tpu, FLAGS.steps_per_loop = common.resolve_legacy_tpu_flags()
  from bert_tf.pretraining import run_checks
  run_checks.check_inputs(FLAGS)  # flags and local files, before TensorFlow loads
  common.refuse_if_output_dir_is_locked()
  tf = common.import_tensorflow_quietly()
  logging.set_verbosity(logging.INFO)
  from bert_tf.pretraining import training
  check_remote_eval_checkpoint()
  params = params_from_flags()
  training.precision_policy_from_flags(FLAGS)
  strategy = training.strategy_from_flags(FLAGS)
  try:
    training.run_pretraining(params, strategy)
  except tf.errors.DataLossError as e:  # a file the checks could not read through (gzip, remote)
    specs = ([FLAGS.input_file] if FLAGS.do_train else []) + \
        ([FLAGS.eval_input_file or FLAGS.input_file] if FLAGS.do_eval else [])
    raise errors.UsageError(run_checks.data_loss_message(e, specs)) from None
  except tf.errors.InvalidArgumentError as e:
    # An id beyond the embedding table in a record the checks did not see (they read manifests
    # and first records only).
    detail = next((line.strip() for line in (e.message or "").splitlines()
                   if "is not in [0, " in line), None)
    if detail is None:
      raise
    config, vocab_size = FLAGS.bert_config_file or "--bert_config_file", params.bert_config.vocab_size
    if f"[0, {vocab_size})" in detail:
      raise errors.UsageError(
          f"{config}: vocab_size is {vocab_size}, but the input holds larger token ids ({detail}); "
          "use the config of the model the data was made for") from None
    raise errors.UsageError(f"{config}: the input holds an id beyond one of the model's embedding "
                            f"tables ({detail}); use the config of the model the data was made "
                            "for") from None
  except tf.errors.OpError as e:  # a full disk (or quota, size limit, read-only) while writing
    reason = run_checks.write_failure(e)
    if reason is None:
      raise
    latest = tf.train.latest_checkpoint(FLAGS.output_dir)
    run_checks.remove_partial_checkpoints(FLAGS.output_dir)
    raise errors.UsageError(
        f"--output_dir={FLAGS.output_dir}: cannot write ({reason}); free space or choose another "
        "folder; " + (f"the last complete checkpoint is {latest}" if latest else
                      "no checkpoint was written")) from None


def run():
  define_flags()
  errors.run_main(main, stop_on_sigterm=True)


if __name__ == "__main__":
  run()
