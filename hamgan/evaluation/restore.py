"""A run's generator rebuilt from the config that trained a checkpoint, and its weights.

The config comes from hamgan.run_dir (the launch that trained the step); reading it
needs no TF-GAN, so hamgan-sample uses this module alone.
"""
import re

import tensorflow as tf

from hamgan import run_dir

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
