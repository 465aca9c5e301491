"""Optimizers for BERT: AdamW or LAMB, linear warmup then linear decay, decoupled weight decay.

The recipe of google-research/bert: the learning rate rises linearly from 0 to `init_lr` over
`num_warmup_steps`, then falls linearly to 0 at `num_train_steps`; weight decay 0.01 applies to every
weight except LayerNorm parameters and biases; gradients are clipped to a global norm of 1.0.

Differences from the original's `AdamWeightDecayOptimizer`, on purpose: Adam's bias correction is on
(as in TF Model Garden and keras), which only changes the first few hundred updates.

Example:
  >>> opt = create_optimizer(1e-4, num_train_steps=1000, num_warmup_steps=100)
  >>> float(opt.learning_rate)  # the schedule at iteration 0
  0.0
"""

import re

import keras
import tensorflow as tf

from bert_tf.errors import UsageError

OPTIMIZER_TYPES = ("adamw", "lamb")
# Variables whose path matches one of these are not decayed (the original's exclusion list).
DEFAULT_EXCLUDE_FROM_WEIGHT_DECAY = ("LayerNorm", "layer_norm", "bias")


@keras.saving.register_keras_serializable(package="bert_tf")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
  """`init_lr * step / num_warmup_steps` during warmup, then `init_lr * (1 - step / num_train_steps)`.

  As the original, the decay is computed from step 0 (not from the end of warmup) and reaches 0 at
  `num_train_steps`; beyond that the rate stays 0.

  Args:
    init_lr: peak learning rate.
    num_train_steps: step at which the rate reaches 0.
    num_warmup_steps: length of the linear warmup (0 disables it).
  """

  def __init__(self, init_lr, num_train_steps, num_warmup_steps):
    super().__init__()
    self.init_lr = float(init_lr)
    self.num_train_steps = int(num_train_steps)
    self.num_warmup_steps = int(num_warmup_steps)

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    decayed = self.init_lr * tf.maximum(0.0, 1.0 - step / float(max(self.num_train_steps, 1)))
    if self.num_warmup_steps <= 0:
      return decayed
    warmup = self.init_lr * step / float(self.num_warmup_steps)
    return tf.where(step < self.num_warmup_steps, warmup, decayed)

  def get_config(self):
    return {"init_lr": self.init_lr, "num_train_steps": self.num_train_steps,
            "num_warmup_steps": self.num_warmup_steps}


class _PathBasedWeightDecay:
  """Mixin: decides weight decay from the variable's full path (keras matches only its short name).

  A variable is not decayed when its path matches one of `exclude_from_weight_decay_patterns`
  (regular expressions) or when it has rank <= 1 (biases, LayerNorm gamma/beta), whatever the
  model's layer names.
  """

  def _init_exclusions(self, patterns):
    self.exclude_from_weight_decay_patterns = tuple(patterns or ())
    self._exclusion_regex = (re.compile("|".join(self.exclude_from_weight_decay_patterns))
                             if self.exclude_from_weight_decay_patterns else None)

  def _use_weight_decay(self, variable):
    if len(variable.shape) <= 1:
      return False
    path = getattr(variable, "path", None) or variable.name
    if self._exclusion_regex is not None and self._exclusion_regex.search(path):
      return False
    return True

  def _exclusion_config(self, config):
    config["exclude_from_weight_decay_patterns"] = list(self.exclude_from_weight_decay_patterns)
    return config


@keras.saving.register_keras_serializable(package="bert_tf")
class BertAdamW(_PathBasedWeightDecay, keras.optimizers.AdamW):
  """keras AdamW with the original's LayerNorm/bias weight-decay exclusions."""

  def __init__(self, exclude_from_weight_decay_patterns=DEFAULT_EXCLUDE_FROM_WEIGHT_DECAY, **kwargs):
    super().__init__(**kwargs)
    self._init_exclusions(exclude_from_weight_decay_patterns)

  def update_step(self, gradient, variable, learning_rate):
    """keras Adam's update, computed by TensorFlow's fused `ResourceApplyAdam` kernel.

    Same formula as `keras.optimizers.Adam.update_step` (m += (g - m)(1 - beta_1),
    v += (g^2 - v)(1 - beta_2), var -= lr sqrt(1 - beta_2^t) / (1 - beta_1^t) m / (sqrt(v) + eps)),
    but one pass over each tensor instead of about a dozen elementwise ops: on a CPU, keras' version
    took ~4% of a BERT-small training step. The moment slots are keras' own, so checkpoints are
    unchanged. Falls back to keras for AMSGrad.
    """
    if self.amsgrad:
      return super().update_step(gradient, variable, learning_rate)
    dtype = variable.dtype
    index = self._get_variable_index(variable)
    local_step = tf.cast(self.iterations + 1, dtype)
    beta_1 = tf.cast(self.beta_1, dtype)
    beta_2 = tf.cast(self.beta_2, dtype)
    gradient = tf.convert_to_tensor(tf.cast(gradient, dtype))  # IndexedSlices -> dense, as keras
    tf.raw_ops.ResourceApplyAdam(
        var=_resource_handle(variable), m=_resource_handle(self._momentums[index]),
        v=_resource_handle(self._velocities[index]), beta1_power=tf.pow(beta_1, local_step),
        beta2_power=tf.pow(beta_2, local_step), lr=tf.cast(learning_rate, dtype), beta1=beta_1,
        beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype), grad=gradient, use_locking=False)

  def get_config(self):
    return self._exclusion_config(super().get_config())


def _resource_handle(variable):
  """The resource handle of a keras or tf variable (the local copy inside a strategy's update)."""
  if isinstance(variable, keras.Variable):
    variable = variable.value
  return variable.handle


@keras.saving.register_keras_serializable(package="bert_tf")
class BertLamb(_PathBasedWeightDecay, keras.optimizers.Lamb):
  """keras LAMB (layer-wise trust ratio) with decoupled weight decay and the same exclusions."""

  def __init__(self, exclude_from_weight_decay_patterns=DEFAULT_EXCLUDE_FROM_WEIGHT_DECAY, **kwargs):
    super().__init__(**kwargs)
    self._init_exclusions(exclude_from_weight_decay_patterns)

  def get_config(self):
    return self._exclusion_config(super().get_config())


def create_optimizer(init_lr, num_train_steps, num_warmup_steps, optimizer_type="adamw",
                     weight_decay_rate=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-6,
                     clip_norm=1.0, exclude_from_weight_decay=DEFAULT_EXCLUDE_FROM_WEIGHT_DECAY):
  """Builds the BERT optimizer with its learning-rate schedule.

  Args:
    init_lr: peak learning rate (`--learning_rate`).
    num_train_steps: optimizer steps of the whole run; the rate reaches 0 there.
    num_warmup_steps: linear warmup steps.
    optimizer_type: "adamw" (the original's choice) or "lamb" (large batches).
    weight_decay_rate: decoupled weight decay (times the current learning rate).
    beta_1, beta_2, epsilon: Adam/LAMB moment parameters (the original's 0.9, 0.999, 1e-6).
    clip_norm: global-norm clipping of all gradients together; None disables it. The custom
      training loop in `bert_tf.pretraining.training` clips after the cross-replica reduction itself, reading
      this value from `optimizer.global_clipnorm`.
    exclude_from_weight_decay: regexes matched against variable paths that are never decayed.

  Returns:
    A keras optimizer whose `learning_rate` follows `WarmupLinearDecay`.
  """
  if optimizer_type not in OPTIMIZER_TYPES:
    raise UsageError(f"--optimizer must be one of {', '.join(OPTIMIZER_TYPES)}, got {optimizer_type!r}")
  if init_lr <= 0:
    raise UsageError(f"--learning_rate must be positive, got {init_lr}")
  if num_train_steps < 1:
    raise UsageError(f"--num_train_steps must be >= 1, got {num_train_steps}")
  if num_warmup_steps < 0:
    raise UsageError(f"--num_warmup_steps must be >= 0, got {num_warmup_steps}")
  schedule = WarmupLinearDecay(init_lr, num_train_steps, num_warmup_steps)
  cls = BertAdamW if optimizer_type == "adamw" else BertLamb
  return cls(learning_rate=schedule, weight_decay=weight_decay_rate, beta_1=beta_1,
             beta_2=beta_2, epsilon=epsilon, global_clipnorm=clip_norm,
             exclude_from_weight_decay_patterns=exclude_from_weight_decay)
