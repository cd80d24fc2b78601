"""Small helpers shared by the layers."""
import tensorflow as tf


def static_training(training):
  """Resolves Keras' `training` argument to a Python bool.

  The layers with state updates (spectral norm, batch norm, online bases) build
  different graphs for training and inference, so the flag must be known when
  tracing: None means inference, and a tensor must have a static value.
  """
  if training is None:
    return False
  if isinstance(training, bool):
    return training
  value = tf.get_static_value(training)
  if value is None:
    raise ValueError(f"training={training!r} is a symbolic tensor without a static value; "
                     "pass a Python bool (trace the train and inference steps separately).")
  return bool(value)
