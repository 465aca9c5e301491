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


_split_cpu()


@pytest.fixture
def data_dir():
  return DATA_DIR


@pytest.fixture
def repo_root():
  return REPO_ROOT
