"""Test-session set-up.

The CPU is split into two logical devices before TensorFlow initialises them, so that
multi-replica code can be tested under MirroredStrategy without accelerators. Tests that
do not name a strategy run on the first logical device as usual.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import hamgan  # noqa: E402,F401  (first: it routes tf.keras to tf-keras before TF loads)
import gin
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)


@pytest.fixture(scope="session")
def two_cpu_strategy():
  """MirroredStrategy over the two logical CPU devices, one for the whole session.

  Every MirroredStrategy numbers its collective ops from the same start, and the
  process-wide collective executor caches them by those numbers: a second strategy
  over the same devices reuses an instance key with another op type and aborts
  ("Collective instance 100 expected type 2 ..."). One shared strategy keeps the keys
  unique; models built under it in different tests do not interfere.
  """
  return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture(autouse=True)
def _fresh_keras_state():
  """Each test starts from float32, a clean Keras session, fixed seeds and no gin
  bindings (a CLI test's `train.*` bindings would otherwise reach the next TrainConfig)."""
  gin.clear_config()
  tf.keras.mixed_precision.set_global_policy("float32")
  tf.keras.backend.clear_session()
  tf.keras.utils.set_random_seed(1234)
  np.random.seed(1234)
  yield
  tf.keras.mixed_precision.set_global_policy("float32")
