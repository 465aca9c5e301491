"""Shared test set-up: quiet TensorFlow, two logical CPU devices, paths to the bundled data."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIR = os.path.join(REPO_ROOT, "data")
if REPO_ROOT not in sys.path:
  sys.path.insert(0, REPO_ROOT)

import pytest  # noqa: E402


def _split_cpu():
  """Two logical CPU devices, so mirrored-strategy tests can run with 2 replicas on one CPU."""
  import tensorflow as tf
  cpus = tf.config.list_physical_devices("CPU")
  try:
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
  except RuntimeError:
    pass  # already initialised by an earlier import; tests that need 2 devices check for them


def _deterministic():
  """Deterministic kernels for the whole session (the resume and equivalence tests compare runs
  bit for bit), with a global seed so that unseeded random ops stay legal under determinism.
  Set here, not in one test module, so a test behaves the same alone and in the full suite."""
  import tensorflow as tf
  tf.config.experimental.enable_op_determinism()
  tf.random.set_seed(20261129)


_split_cpu()
_deterministic()


@pytest.fixture(scope="session")
def two_cpu_mirrored():
  """One MirroredStrategy over the two logical CPUs, shared by every test that needs one.

  Collective ops cache their parameters by instance key, and each new strategy object starts its
  keys from the same value, so a second MirroredStrategy in the same process would collide with
  the first one's cached shapes. A real run has one strategy per process; the tests share one.
  """
  import tensorflow as tf
  if len(tf.config.list_logical_devices("CPU")) < 2:
    pytest.fail("conftest should provide two logical CPU devices")
  return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture
def data_dir():
  return DATA_DIR


@pytest.fixture
def repo_root():
  return REPO_ROOT
