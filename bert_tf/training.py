"""The pieces of the pretraining loop: strategy, precision policy, train/eval steps, checkpoints.

Readable top to bottom:
  1. `create_strategy` / `set_precision_policy`: the runtime flags turned into TensorFlow objects.
  2. `PretrainingTask`: one optimizer step = k micro-batches (gradient accumulation), the global
     objective, cross-replica reduction, clipping, dynamic loss scaling for float16, NaN guard.
  3. `CheckpointKeeper`: CheckpointManager in the output dir, chief-only writes for multi-worker.
  4. `run_pretraining`: the outer loop (steps_per_loop, logging, checkpoints, evaluation).
"""

import os

import tensorflow as tf

from bert_tf.errors import UsageError


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
  gpus = tf.config.list_logical_devices("GPU")
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
