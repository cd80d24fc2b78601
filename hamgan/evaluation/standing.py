"""Standing statistics: batch-norm moving statistics recomputed for the weights evaluated.

The EMA generator's weights are an average, but its batch-norm moving mean and variance
are copied from the raw G during training, so they describe another network. BigGAN's
remedy ("standing statistics"): run the generator over fresh z and labels with every
batch-norm layer normalising by the statistics of its current batch, and set each
layer's moving mean and variance to the mean and variance of all the inputs it saw.

Only the batch-norm layers run in training mode here; every other layer stays in
inference mode (spectral norm does no power-iteration step). The moving statistics are
changed in memory only; the checkpoint on disk is never written.
"""
import contextlib

import numpy as np
import tensorflow as tf

from hamgan.evaluation import features as features_lib
from hamgan.layers.normalization import ConditionalBatchNorm


DEFAULT_BATCHES = 16  # BigGAN's practice: a few batches of fresh z and labels


def batches_for(generator_key, asked=None):
  """The batch count to use: `asked`, else DEFAULT_BATCHES for the EMA G and 0 otherwise."""
  if asked is None:
    return DEFAULT_BATCHES if generator_key == "ema_generator" else 0
  if not isinstance(asked, int) or asked < 0:
    raise ValueError(f"standing_batches={asked!r} must be an int >= 0 (0 keeps the stored "
                     "moving statistics).")
  return asked


def batch_norm_layers(model):
  """The ConditionalBatchNorm layers of `model`, in a fixed order."""
  return [m for m in model.submodules if isinstance(m, ConditionalBatchNorm)]


@contextlib.contextmanager
def batch_statistics_mode(layers, record):
  """Within: each layer normalises by its batch's moments and reports its input.

  `record(layer, x)` is called with every input the layer sees. The layers' own
  moving-statistics update runs too; callers overwrite those variables afterwards.
  """
  originals = {}
  for layer in layers:
    originals[layer] = layer.__dict__.get("call")

    def call(x, y=None, training=None, layer=layer):
      del training  # batch statistics whatever the caller asked for
      record(layer, x)
      return type(layer).call(layer, x, y, training=True)

    layer.call = call
  try:
    yield
  finally:
    for layer, original in originals.items():
      if original is None:
        del layer.call
      else:
        layer.call = original


def recompute(generator, num_batches, batch_size, seed=0, truncation=None):
  """Sets every BN layer's moving mean/variance to those of its inputs over fresh batches.

  Args:
    generator: a hamgan Generator (anything with num_classes, z_dim and BN layers).
    num_batches, batch_size: how many batches of fresh z and balanced labels.
    seed: seeds z and labels (a stream of its own, not the evaluation's samples).
    truncation: optional truncation of z, as the evaluation uses.

  Returns:
    The number of batch-norm layers updated (0: nothing to do, nothing called).
  """
  for name, value in (("num_batches", num_batches), ("batch_size", batch_size)):
    if not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"standing statistics: {name}={value!r} must be a positive int; "
                       "pass e.g. --standing_batches=16, or 0 to keep the stored ones.")
  layers = batch_norm_layers(generator)
  if not layers:
    return 0
  sums = {layer: [0.0, 0.0, 0] for layer in layers}  # sum x, sum x^2, count

  def record(layer, x):
    x64 = tf.cast(x, tf.float64)
    acc = sums[layer]
    acc[0] += tf.reduce_sum(x64, axis=[0, 1, 2]).numpy()
    acc[1] += tf.reduce_sum(tf.square(x64), axis=[0, 1, 2]).numpy()
    acc[2] += int(np.prod(x.shape[:3]))

  z, y = features_lib.latent_inputs(num_batches * batch_size, int(generator.num_classes),
                                    int(generator.z_dim), seed=seed, truncation=truncation)
  with batch_statistics_mode(layers, record):
    for start in range(0, len(z), batch_size):
      generator((tf.constant(z[start:start + batch_size]),
                 tf.constant(y[start:start + batch_size])), training=False)
  for layer in layers:
    total, total_sq, count = sums[layer]
    mean = total / count
    variance = np.maximum(total_sq / count - mean ** 2, 0.0)  # biased, as in training
    layer.moving_mean.assign(mean.astype(np.float32))
    layer.moving_variance.assign(variance.astype(np.float32))
  return len(layers)
