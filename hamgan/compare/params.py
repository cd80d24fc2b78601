"""Trainable parameter counts of G and D, read from a run's latest checkpoint.

A checkpoint does not record which variables are trainable, so the count leaves out
hamgan's state variables by their names (the last part of the checkpoint key):
spectral-norm vectors and norms, batch-norm moving statistics and the Hamburger's
bookkeeping (random-bases seed, last reconstruction error, online bases).
tests/test_compare.py checks the count against `trainable_variables` of the real
models with every context module, so a new state variable shows up there.
"""
import math

# Checkpoint leaf names of non-trainable weights (hamgan.layers).
STATE_LEAVES = frozenset({
    "sn_u", "sn_sigma",                        # spectral_norm: power iteration, last norm
    "moving_mean", "moving_variance",          # normalization: batch-norm statistics
    "bases_seed", "last_relative_error", "bases",   # hamburger: seeds, error, online bases
    "u",                                       # spectral norm's vector in older checkpoints
})
# Keys of the models counted (the EMA generator is a copy of G, not more parameters).
MODEL_KEYS = ("generator", "discriminator")
_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


def count_trainable(variables):
  """{model key: trainable parameter count} from {checkpoint key: shape}."""
  names = {n[:-len(_SUFFIX)] if n.endswith(_SUFFIX) else n: shape
           for n, shape in variables.items() if ".OPTIMIZER_SLOT" not in n}
  counts = dict.fromkeys(MODEL_KEYS, 0)
  for name, shape in names.items():
    top, _, _ = name.partition("/")
    if top not in counts:
      continue
    parent, _, leaf = name.rpartition("/")
    if leaf in STATE_LEAVES:
      continue
    # Older checkpoints named the spectral norm `sigma`, beside its `u`; a `sigma`
    # alone is a context module's (trainable) residual scale.
    if leaf == "sigma" and (parent + "/u" in names or parent + "/sn_u" in names):
      continue
    counts[top] += math.prod(shape) if shape else 1
  return counts


def params_from_checkpoint(checkpoint_dir):
  """(generator, discriminator) trainable parameter counts of the latest checkpoint.

  Returns None if `checkpoint_dir` holds no checkpoint.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  prefix = tf.train.latest_checkpoint(checkpoint_dir)
  if prefix is None:
    return None
  counts = count_trainable(dict(tf.train.list_variables(prefix)))
  return counts["generator"], counts["discriminator"]
