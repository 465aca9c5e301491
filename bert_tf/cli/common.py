"""Runtime flags shared by the training commands (run_pretraining, run_classifier).

Only flag definitions live here; the logic that turns them into a `tf.distribute.Strategy` and a
Keras dtype policy is in `bert_tf.pretraining.training` (`strategy_from_flags`, `set_precision_policy`).
"""

from absl import flags

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker_mirrored", "tpu")
PRECISIONS = ("float32", "bfloat16", "float16")


def define_runtime_flags():
  """Defines --distribution_strategy, --tpu, --mixed_precision, --jit_compile, --skip_padding,
  --steps_per_loop, --log_steps and --keep_checkpoint_max (idempotent: a second call is a no-op)."""
  if "distribution_strategy" in flags.FLAGS:
    return
  flags.DEFINE_enum(
      "distribution_strategy", "auto", STRATEGIES,
      "How to spread training over devices. auto: mirrored when more than one GPU is visible, "
      "one_device otherwise (tpu when --tpu is set). multi_worker_mirrored reads TF_CONFIG.")
  flags.DEFINE_string(
      "tpu", None, "TPU name or grpc:// address for --distribution_strategy=tpu "
      "('local' for a TPU VM).")
  flags.DEFINE_enum(
      "mixed_precision", "float32", PRECISIONS,
      "Compute dtype of the model. float16 uses dynamic loss scaling; variables, softmax, "
      "LayerNorm, logits and losses stay float32.")
  flags.DEFINE_bool("jit_compile", False, "Compile the training and evaluation steps with XLA.")
  flags.DEFINE_bool(
      "skip_padding", True,
      "Run the transformer blocks on the real tokens only, not on padding (same results; faster "
      "the more padding the batches hold). Always off with --jit_compile and on TPUs, which need "
      "static shapes.")
  flags.DEFINE_integer(
      "steps_per_loop", 1, "Training steps run inside one tf.function call (fewer host round "
      "trips). Checkpoints still land exactly on multiples of the checkpoint interval; logs are "
      "written at the end of the call that reaches a multiple of --log_steps.")
  flags.DEFINE_integer("log_steps", 100, "Log loss, learning rate and sequences/s every N steps.")
  flags.DEFINE_integer("keep_checkpoint_max", 5, "How many recent checkpoints to keep.")


def define_checkpoint_flags():
  """Defines --strict_checkpoint (idempotent), for the commands that take --init_checkpoint."""
  if "strict_checkpoint" in flags.FLAGS:
    return
  flags.DEFINE_bool(
      "strict_checkpoint", False,
      "Fail when --init_checkpoint lacks part of the model (e.g. the pooler or a pretraining head "
      "of a Hugging Face checkpoint) instead of initialising that part fresh with a warning.")


def define_fine_tuning_schedule_flags():
  """The batch, schedule and checkpoint flags of google-research/bert's run_classifier.py, same
  names and defaults, shared by run_classifier.py and run_ner.py."""
  flags.DEFINE_integer("eval_batch_size", 8, "Evaluation batch size.")
  flags.DEFINE_integer("predict_batch_size", 8, "Prediction batch size.")
  flags.DEFINE_float("learning_rate", 5e-5, "Peak learning rate of AdamW.")
  flags.DEFINE_float("num_train_epochs", 3.0, "Epochs of fine-tuning.")
  flags.DEFINE_float("warmup_proportion", 0.1, "Fraction of the steps with a linear warmup.")
  flags.DEFINE_integer("save_checkpoints_steps", 1000, "Checkpoint every N steps.")


def explicit_bool(name, flag_values=None):
  """The value of a boolean flag if given on the command line, else None (let the checkpoint
  decide, e.g. --do_lower_case from a Hugging Face tokenizer)."""
  fv = flag_values or flags.FLAGS
  return fv[name].value if fv[name].present else None


def refuse_if_output_dir_is_locked(flag_values=None):
  """Raises `UsageError` at once when a live run holds --output_dir's lock (`run_lock`), before
  TensorFlow loads; writes nothing. The lock itself is taken just before the first write. Skipped
  for multi-worker runs: their workers start at different times and only the chief locks."""
  from bert_tf.utils import run_lock
  fv = flag_values or flags.FLAGS
  if fv.distribution_strategy != "multi_worker_mirrored":
    run_lock.check_not_locked(fv.output_dir)


def validate_runtime_flags(flag_values=None):
  """Raises `UsageError` naming the flag when a runtime flag has a value that cannot work."""
  from bert_tf.errors import UsageError
  fv = flag_values or flags.FLAGS
  for name in ("steps_per_loop", "log_steps", "keep_checkpoint_max"):
    if getattr(fv, name) < 1:
      raise UsageError(f"--{name} must be >= 1, got {getattr(fv, name)}")
  if fv.distribution_strategy == "tpu" and not fv.tpu:
    raise UsageError("--distribution_strategy=tpu needs --tpu (a TPU name, grpc:// address or 'local')")


def define_legacy_tpu_flags():
  """The original scripts' TPU flags, accepted so old command lines run unchanged (idempotent).

  --use_tpu/--tpu_name/--iterations_per_loop map onto --distribution_strategy=tpu/--tpu/
  --steps_per_loop (see `resolve_legacy_tpu_flags`); the others are accepted and unused (the
  TPU name is enough for the cluster resolver, and the strategy finds the cores).
  """
  if "use_tpu" in flags.FLAGS:
    return
  flags.DEFINE_bool("use_tpu", False, "Original's TPU switch: same as --distribution_strategy=tpu.")
  flags.DEFINE_string("tpu_name", None, "Original's name of --tpu.")
  flags.DEFINE_integer("iterations_per_loop", None, "Original's name of --steps_per_loop.")
  flags.DEFINE_string("tpu_zone", None, "Accepted for old command lines (the TPU name suffices).")
  flags.DEFINE_string("gcp_project", None, "Accepted for old command lines (the TPU name suffices).")
  flags.DEFINE_string("master", None, "Accepted for old command lines (unused).")
  flags.DEFINE_integer("num_tpu_cores", 8, "Accepted for old command lines (the strategy finds them).")


def resolve_legacy_tpu_flags(flag_values=None):
  """Returns (distribution_strategy, tpu, steps_per_loop) with the original's TPU flags applied.

  Raises `UsageError` for --use_tpu without a TPU name or a non-positive --iterations_per_loop.
  """
  from bert_tf.errors import UsageError
  fv = flag_values or flags.FLAGS
  strategy, tpu, steps_per_loop = fv.distribution_strategy, fv.tpu or fv.tpu_name, fv.steps_per_loop
  if fv.use_tpu:
    if not tpu:
      raise UsageError("--use_tpu needs --tpu_name (or --tpu)")
    strategy = "tpu"
  if fv.iterations_per_loop is not None:
    if fv.iterations_per_loop < 1:
      raise UsageError(f"--iterations_per_loop must be >= 1, got {fv.iterations_per_loop}")
    steps_per_loop = fv.iterations_per_loop
  return strategy, tpu, steps_per_loop


# The lines TensorFlow's C++ libraries print while they load, before any logging setting applies
# (TF_CPP_MIN_LOG_LEVEL hides the later ones): INFO lines ("I0000 ..."), and absl's notice that
# precedes them.
_START_UP_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called"


def import_tensorflow_quietly(flag_values=None):
  """Imports TensorFlow without its start-up INFO lines (oneDNN, CUDA probing, CPU features) and
  with TF_CPP_MIN_LOG_LEVEL=2 (its C++ INFO and WARNING lines off), unless --verbosity is given
  or TF_CPP_MIN_LOG_LEVEL is set. Lines the libraries print at a higher level are passed on.
  Returns the module."""
  import os
  import sys
  import tempfile
  fv = flag_values or flags.FLAGS
  if "tensorflow" in sys.modules or fv["verbosity"].present or "TF_CPP_MIN_LOG_LEVEL" in os.environ:
    import tensorflow as tf
    return tf
  os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      import tensorflow as tf
    finally:
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      kept = [line for line in captured.read().decode("utf-8", "replace").splitlines(True)
              if not (line.startswith(_START_UP_NOTICE) or line.startswith("I0000 "))]
      sys.stderr.write("".join(kept))
      sys.stderr.flush()
  return tf
