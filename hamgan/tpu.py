"""Whether a tf.distribute strategy runs on TPUs: the one place hamgan asks."""


def is_tpu_strategy(strategy):
  """True for TPUStrategy (and its experimental variants), by type name: the check needs
  no TPU library, so it works on machines without one."""
  return "TPUStrategy" in type(strategy).__name__
