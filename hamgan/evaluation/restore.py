"""The generator being evaluated: rebuilt, restored, its BN standing statistics set.

Rebuilt from the config that trained a checkpoint (hamgan.run_dir: the launch that
trained the step), its weights restored from the checkpoint. Reading them needs no
TF-GAN, so hamgan-sample uses this module (and `features`) alone.

Standing statistics: the EMA generator's weights are an average, but its batch-norm
moving mean and variance are copied from the raw G during training, so they describe
another network. BigGAN's remedy: run the generator over fresh z and labels with every
batch-norm layer normalising by the statistics of its current batch, and set each
layer's moving mean and variance to the mean and variance of all the inputs it saw
(`recompute`). Only the batch-norm layers run in training mode there; every other
layer stays in inference mode (spectral norm does no power-iteration step). The moving
statistics are changed in memory only; the checkpoint on disk is never written.
"""
import contextlib
import re

import numpy as np
import tensorflow as tf

from hamgan import run_dir
from hamgan.evaluation import features as features_lib
from hamgan.layers.normalization import ConditionalBatchNorm

GENERATOR_KEYS = ("ema_generator", "generator")
_HINT = "config of the launch that wrote this checkpoint (operative_config-<start step>.gin)."


def build_generator_from_config(config_path, strategy=None):
  """Rebuilds the Generator from a run's saved gin config (weights unset).

  Raises:
    ValueError: the config is missing or unreadable (names the file).
  """
  from hamgan import models  # pylint: disable=g-import-not-at-top
  run_dir.load_config(config_path)
  with (strategy or tf.distribute.get_strategy()).scope():
    generator = models.Generator()
    build_generator(generator)
  return generator


def build_generator(generator):
  """Creates G's weights with one tiny call (the variables must exist to restore)."""
  z = tf.zeros((1, generator.z_dim))
  y = tf.zeros((1,), tf.int32)
  generator((z, y), training=False)


def describe_generator(generator):
  """'Generator(image_size=32, ch=8, ...) -> (B, 32, 32, 3)' for error messages."""
  fields = ("image_size", "num_classes", "ch", "z_dim", "context")
  args = ", ".join(f"{f}={getattr(generator, f)!r}" for f in fields if hasattr(generator, f))
  size = getattr(generator, "image_size", "S")
  return f"{type(generator).__name__}({args}) -> images (B, {size}, {size}, 3)"


def restore_generator(generator, checkpoint_path, use_ema=None):
  """Loads G's weights from the checkpoint; returns the key used.

  Args:
    generator: a built generator.
    checkpoint_path: e.g. model_dir/checkpoints/ckpt-3.
    use_ema: True for 'ema_generator', False for 'generator', None for the EMA one
      when the checkpoint has it.

  Raises:
    ValueError: the checkpoint lacks the generator, or holds one of another shape
      (the message names the checkpoint's and the model's shapes).
  """
  shapes = dict(tf.train.list_variables(checkpoint_path))
  present = {k for k in GENERATOR_KEYS if any(n.startswith(k + "/") for n in shapes)}
  if use_ema is None:
    key = "ema_generator" if "ema_generator" in present else "generator"
  else:
    key = "ema_generator" if use_ema else "generator"
  if key not in present:
    has = sorted(present) or "no generator"
    raise ValueError(
        f"checkpoint {checkpoint_path} has no {key!r} (it has {has}); pass "
        "--use_ema=false/true to pick one it has, or the checkpoint of a hamgan-train run.")
  # A model that is a subset of the checkpoint (e.g. no context module where the run had
  # one) would restore "fine" and evaluate the wrong network: count the variables too.
  stored = [n for n in shapes if n.startswith(key + "/") and ".OPTIMIZER_SLOT" not in n
            and n.endswith("/.ATTRIBUTES/VARIABLE_VALUE")]
  if len(stored) != len(generator.variables):
    raise ValueError(
        f"checkpoint {checkpoint_path} holds a {key!r} with {len(stored)} variables but "
        f"the model built from the run's config ({describe_generator(generator)}) has "
        f"{len(generator.variables)}: another architecture. Evaluate with the "
        f"{_HINT}")
  try:
    # G is built, so restore assigns at once and a shape mismatch raises right here.
    # read(), not restore(): a milestone (Checkpoint.write) has no save_counter, which
    # restore() would create and then report as unmatched.
    status = tf.train.Checkpoint(**{key: generator}).read(checkpoint_path)
    status.expect_partial()  # optimizers, D etc. are deliberately not restored
    status.assert_existing_objects_matched()
  except ValueError as e:
    raise _shape_error(checkpoint_path, key, generator, str(e)) from e
  except AssertionError as e:
    raise ValueError(
        f"checkpoint {checkpoint_path} holds a {key!r} of another architecture than "
        f"{describe_generator(generator)} built from the run's config: {str(e)[:300]}. "
        f"Evaluate with the {_HINT}") from e
  return key


def _shape_error(checkpoint_path, key, generator, message):
  match = re.search(r"shape (\([^)]*\)) when attempting to restore variable with shape "
                    r"(\([^)]*\)) and name (\S+?)\.?$", message)
  if match:
    ckpt_shape, model_shape, name = match.groups()
    detail = (f"variable {name} has shape {ckpt_shape} in the checkpoint but "
              f"{model_shape} in the model")
  else:
    detail = message
  return ValueError(
      f"checkpoint {checkpoint_path} holds a {key!r} of another shape than the model "
      f"built from the run's config ({describe_generator(generator)}): {detail}. "
      f"Evaluate with the {_HINT}")


# ------------------------------------------------------------ standing statistics

DEFAULT_BATCHES = 16  # standing-statistics batches (BigGAN: a few of fresh z and labels)


def batches_for(generator_key, asked=None):
  """The batch count to use: `asked`, else 0 (the stored statistics) for the EMA G and
  DEFAULT_BATCHES for the raw G: the defaults that scored best over the 25 runs of
  docs/evaluation.md, 'Which batch-norm statistics'."""
  if asked is None:
    return 0 if generator_key == "ema_generator" else DEFAULT_BATCHES
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
