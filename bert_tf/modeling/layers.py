"""Small building blocks shared by the BERT encoder and its heads: dense, LayerNorm, activations.

All layers use TensorFlow ops directly (the package targets Keras 3 on the TensorFlow backend), keep
their variables in float32 and compute in the layer's compute dtype, except LayerNorm which always
normalises in float32 so that mixed-precision policies stay numerically safe.
"""

import contextlib
import math
import threading

import keras
import tensorflow as tf

_skip = threading.local()


@contextlib.contextmanager
def skip_weight_initialization():
  """Within this block, new BERT layers fill their weights with zeros instead of random draws.

  For models whose every weight is about to be overwritten from a checkpoint: drawing 110M
  truncated-normal numbers for BERT-Base costs seconds and would be thrown away.
  """
  previous = getattr(_skip, "active", False)
  _skip.active = True
  try:
    yield
  finally:
    _skip.active = previous


def truncated_normal(stddev):
  """The original's weight initialiser: a normal truncated at two standard deviations."""
  if getattr(_skip, "active", False):
    return keras.initializers.Zeros()
  return keras.initializers.TruncatedNormal(stddev=stddev)


def _gelu_tanh(x):
  # The tanh approximation that google-research/bert calls "gelu". tf.nn.gelu computes the same
  # formula, in a form that TensorFlow's CPU graph optimiser can fuse into the preceding matmul.
  return tf.nn.gelu(x, approximate=True)


def _gelu_exact(x):
  return tf.nn.gelu(x, approximate=False)


def _linear(x):
  return x


_ACTIVATIONS = {
    "gelu": _gelu_tanh,
    "gelu_exact": _gelu_exact,
    "relu": tf.nn.relu,
    "tanh": tf.tanh,
    "linear": _linear,
}


def get_activation(name):
  """Maps a `BertConfig.hidden_act` name to a function of one tensor.

  Args:
    name: one of "gelu" (tanh approximation, as the original), "gelu_exact", "relu", "tanh",
      "linear".
  """
  try:
    return _ACTIVATIONS[name]
  except KeyError:
    raise ValueError(
        f"unknown activation {name!r}; expected one of {', '.join(_ACTIVATIONS)}") from None


class Dense(keras.layers.Layer):
  """`y = activation(x @ kernel + bias)` over the last axis; the kernel is `[in, out]` as in TF1.

  Leading axes are flattened into one matrix multiplication (faster on CPU than a broadcast batched
  matmul) and restored afterwards.

  Args:
    units: output width.
    activation: name accepted by `get_activation`, or None.
    initializer_range: stddev of the truncated-normal kernel initialiser.
    use_bias: whether to add a bias.
  """

  def __init__(self, units, activation=None, initializer_range=0.02, use_bias=True, **kwargs):
    super().__init__(**kwargs)
    self.units = units
    self.activation = activation
    self.initializer_range = initializer_range
    self.use_bias = use_bias
    self._act = get_activation(activation) if activation else None

  def build(self, input_shape):
    in_dim = input_shape[-1]
    self.kernel = self.add_weight(name="kernel", shape=(in_dim, self.units),
                                  initializer=truncated_normal(self.initializer_range))
    self.bias = (self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
                 if self.use_bias else None)

  def call(self, x):
    kernel = tf.cast(self.kernel, self.compute_dtype)
    if x.shape.rank == 2:
      y = tf.matmul(x, kernel)
    else:
      lead = tf.shape(x)[:-1]
      y = tf.matmul(tf.reshape(x, [-1, x.shape[-1]]), kernel)   # [rows, units]
      y = tf.reshape(y, tf.concat([lead, [self.units]], 0))
    if self.bias is not None:
      y = tf.nn.bias_add(y, tf.cast(self.bias, self.compute_dtype))
    if self._act is not None:
      y = self._act(y)
    return y

  def get_config(self):
    config = super().get_config()
    config.update(units=self.units, activation=self.activation,
                  initializer_range=self.initializer_range, use_bias=self.use_bias)
    return config


class LayerNorm(keras.layers.Layer):
  """Layer normalisation over the last axis, always computed in float32.

  The result is cast back to the layer's compute dtype, so a bfloat16/float16 model keeps its
  activations in low precision while mean and variance are exact enough.

  Args:
    epsilon: added to the variance; 1e-12 as in the original BERT.
  """

  def __init__(self, epsilon=1e-12, **kwargs):
    super().__init__(**kwargs)
    self.epsilon = epsilon
    # Take inputs in whatever dtype they come (e.g. a float32 sum of embeddings) instead of letting
    # Keras round them to the compute dtype first.
    self._convert_input_args = False

  def build(self, input_shape):
    dim = input_shape[-1]
    # autocast=False: gamma/beta are read in float32 even under a mixed-precision policy.
    self.gamma = self.add_weight(name="gamma", shape=(dim,), initializer="ones", autocast=False)
    self.beta = self.add_weight(name="beta", shape=(dim,), initializer="zeros", autocast=False)

  def call(self, x):
    x = tf.cast(x, tf.float32)
    mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
    y = (x - mean) * tf.math.rsqrt(variance + self.epsilon)
    y = y * tf.convert_to_tensor(self.gamma) + tf.convert_to_tensor(self.beta)
    return tf.cast(y, self.compute_dtype)

  def get_config(self):
    config = super().get_config()
    config.update(epsilon=self.epsilon)
    return config
