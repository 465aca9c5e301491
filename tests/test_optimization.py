"""The BERT optimizer: warmup + linear decay, decoupled weight decay with the original's exclusions."""

import keras
import numpy as np
import pytest

from bert_tf.pretraining import optimization
from bert_tf.errors import UsageError


def test_schedule_warms_up_then_decays_linearly_to_zero():
  s = optimization.WarmupLinearDecay(1e-3, num_train_steps=100, num_warmup_steps=10)
  values = [float(s(step)) for step in (0, 5, 10, 55, 100, 150)]
  np.testing.assert_allclose(values, [0.0, 5e-4, 9e-4, 4.5e-4, 0.0, 0.0], rtol=1e-6, atol=1e-12)
  no_warmup = optimization.WarmupLinearDecay(2.0, num_train_steps=4, num_warmup_steps=0)
  np.testing.assert_allclose([float(no_warmup(i)) for i in range(5)], [2.0, 1.5, 1.0, 0.5, 0.0])


def _variables():
  kernel = keras.Variable(np.full((2, 2), 2.0, "float32"), name="kernel")
  bias = keras.Variable(np.full((2,), 2.0, "float32"), name="bias")
  gamma = keras.Variable(np.full((2,), 2.0, "float32"), name="gamma")
  return kernel, bias, gamma


def test_weight_decay_skips_biases_and_layer_norm():
  kernel, bias, gamma = _variables()
  opt = optimization.create_optimizer(0.1, num_train_steps=1000, num_warmup_steps=0,
                                      weight_decay_rate=0.5)
  zero = [np.zeros(v.shape, "float32") for v in (kernel, bias, gamma)]
  opt.apply(zero, [kernel, bias, gamma])  # zero gradients: only the decay can move a weight
  np.testing.assert_allclose(kernel.numpy(), 2.0 * (1 - 0.1 * 0.5), rtol=1e-6)
  np.testing.assert_array_equal(bias.numpy(), 2.0)
  np.testing.assert_array_equal(gamma.numpy(), 2.0)
  # A matrix whose path names a LayerNorm is excluded by pattern too.
  assert not opt._use_weight_decay(keras.Variable(np.ones((2, 2), "float32"), name="LayerNorm_w"))


def test_adamw_step_matches_a_numpy_reference():
  kernel = keras.Variable(np.array([[1.0, -2.0], [0.5, 3.0]], "float32"), name="kernel")
  opt = optimization.create_optimizer(0.01, num_train_steps=10, num_warmup_steps=0, weight_decay_rate=0.01)
  w = kernel.numpy().astype(np.float64)
  m = np.zeros_like(w)
  v = np.zeros_like(w)
  grads = [np.array([[0.1, -0.2], [0.3, 0.0]]), np.array([[-0.5, 0.2], [0.1, 0.4]])]
  for t, g in enumerate(grads, start=1):
    lr = 0.01 * (1 - (t - 1) / 10)
    opt.apply([g.astype("float32")], [kernel])
    w = w - lr * 0.01 * w                               # decoupled decay first (keras order)
    m = 0.9 * m + 0.1 * g
    v = 0.999 * v + 0.001 * g * g
    step_lr = lr * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
    w = w - step_lr * m / (np.sqrt(v) + 1e-6)
  np.testing.assert_allclose(kernel.numpy(), w, rtol=1e-5)


def test_defaults_are_the_originals_and_lamb_is_available():
  opt = optimization.create_optimizer(1e-4, 100, 10)
  assert isinstance(opt, keras.optimizers.AdamW)
  assert (opt.beta_1, opt.beta_2, opt.epsilon, opt.weight_decay, opt.global_clipnorm) == (
      0.9, 0.999, 1e-6, 0.01, 1.0)
  lamb = optimization.create_optimizer(1e-3, 100, 0, optimizer_type="lamb")
  kernel, bias, _ = _variables()
  lamb.apply([np.ones((2, 2), "float32"), np.ones((2,), "float32")], [kernel, bias])
  assert isinstance(lamb, keras.optimizers.Lamb) and np.all(kernel.numpy() < 2.0)
  restored = optimization.BertLamb.from_config(lamb.get_config())
  assert restored.exclude_from_weight_decay_patterns == lamb.exclude_from_weight_decay_patterns


@pytest.mark.parametrize("kwargs, flag", [
    ({"optimizer_type": "sgd"}, "--optimizer"),
    ({"init_lr": 0.0}, "--learning_rate"),
    ({"num_train_steps": 0}, "--num_train_steps"),
    ({"num_warmup_steps": -1}, "--num_warmup_steps"),
])
def test_bad_values_name_their_flag(kwargs, flag):
  args = dict(init_lr=1e-4, num_train_steps=10, num_warmup_steps=1)
  args.update(kwargs)
  with pytest.raises(UsageError, match=flag):
    optimization.create_optimizer(**args)


class KerasAdamWReference(optimization.BertAdamW):
  """The same optimizer with keras' own (unfused) Adam update, as the reference."""

  def update_step(self, gradient, variable, learning_rate):
    return keras.optimizers.AdamW.update_step(self, gradient, variable, learning_rate)


def _three_steps(strategy, cls):
  import tensorflow as tf
  rng = np.random.default_rng(0)
  with strategy.scope():
    table = keras.Variable(rng.normal(size=(6, 3)).astype("float32"), name="embeddings")
    kernel = keras.Variable(rng.normal(size=(3, 2)).astype("float32"), name="kernel")
    bias = keras.Variable(rng.normal(size=(2,)).astype("float32"), name="bias")
    # Betas exact in float32: the fused kernel computes 1 - beta in float32, keras in float64 (for
    # beta_2 = 0.999 the two values of 1 - beta_2 differ by 1.3e-5 relative).
    opt = cls(learning_rate=0.05, weight_decay=0.01, beta_1=0.875, beta_2=1 - 2**-10, epsilon=1e-6,
              global_clipnorm=1.0)
    opt.build([table, kernel, bias])

  @tf.function
  def step(i):
    def replica_fn():
      scale = tf.cast(i + 1, tf.float32) * tf.constant([1.0, -0.5, 2.0])
      rows = tf.IndexedSlices(tf.stack([scale, -scale]), tf.constant([1, 4]), tf.constant([6, 3]))
      opt.apply([rows, tf.ones([3, 2]) * scale[:, None], -scale[:2]], [table, kernel, bias])
    strategy.run(replica_fn)

  for i in range(3):
    step(tf.constant(i))
  return [v.numpy() for v in (table, kernel, bias)]


def test_fused_adam_update_equals_keras_adam_on_one_and_two_replicas(two_cpu_mirrored):
  import tensorflow as tf
  for strategy in (tf.distribute.get_strategy(), two_cpu_mirrored):
    fused = _three_steps(strategy, optimization.BertAdamW)
    reference = _three_steps(strategy, KerasAdamWReference)
    for got, want in zip(fused, reference):
      np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert not np.allclose(fused[0][0], reference[0][1])  # rows the sparse gradient missed
    moved = _three_steps(strategy, optimization.BertAdamW)
    np.testing.assert_array_equal(moved[1], fused[1])  # deterministic
