"""Differentiable augmentation of every image D sees (`train.diffaugment`).

DiffAugment (Zhao et al., "Differentiable Augmentation for Data-Efficient GAN
Training", NeurIPS 2020): the same random transformations are applied to the real
and the generated images before D, in D's step and in G's, and G's gradient flows
back through them. Three policies, any subset in any order (applied in that order):

  color        brightness x + (u - 1/2); saturation (x - m_c) 2u + m_c with m_c the
               mean over channels; contrast (x - m) (u + 1/2) + m with m the mean over
               the whole image (three draws u ~ U[0, 1) per image)
  translation  a shift of up to 1/8 of the side (rounded) along each axis, the same
               integer offset for every pixel of an image, zeros where the shift
               uncovers the border
  cutout       a square of half the side (rounded) set to zero, centred at a random
               pixel (clipped at the border)

Randomness is an argument: `draw(seed, rows)` is a stateless uniform (rows, DRAWS)
matrix, one row per image, its columns fixed whatever the policy (0-2 colour, 3-4
translation, 5-6 cutout), so equal seeds give equal augmentations, after a resume or
on another number of replicas (the trainer draws the global batch and slices rows as
it does for z). Every op is gather/elementwise with static shapes: it lowers to XLA.
"""
import tensorflow as tf

POLICIES = ("color", "translation", "cutout")
DRAWS = 7
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def parse_policy(text):
  """The policies named in a comma-separated string, in order; '' is off (an empty tuple)."""
  if not isinstance(text, str):
    raise ValueError(f"train.diffaugment={text!r} is not a string; pass e.g. "
                     "'color,translation,cutout' (any subset), or '' for none.")
  names = tuple(n.strip() for n in text.split(",") if n.strip())
  unknown = [n for n in names if n not in POLICIES]
  if unknown:
    raise ValueError(f"train.diffaugment={text!r} names {unknown}, not a known "
                     f"augmentation; expected a comma-separated subset of {POLICIES} "
                     "(e.g. 'color,translation,cutout'), or '' for none.")
  if len(set(names)) != len(names):
    raise ValueError(f"train.diffaugment={text!r} names an augmentation twice; name "
                     "each at most once.")
  return names


def draw(seed, rows):
  """The per-image uniform draws (rows, DRAWS) in [0, 1) for stateless `seed` (2,)."""
  return tf.random.stateless_uniform([rows, DRAWS], seed=seed, dtype=tf.float32)


def _per_image(u, x):
  return tf.reshape(tf.cast(u, x.dtype), [-1, 1, 1, 1])


def brightness(x, u):
  return x + (_per_image(u, x) - 0.5)


def saturation(x, u):
  mean = tf.reduce_mean(x, axis=3, keepdims=True)
  return (x - mean) * (2.0 * _per_image(u, x)) + mean


def contrast(x, u):
  mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
  return (x - mean) * (_per_image(u, x) + 0.5) + mean


def _integers(u, count):
  """Integers 0..count-1 from uniforms in [0, 1)."""
  return tf.minimum(tf.cast(tf.floor(u * count), tf.int32), count - 1)


def translation_offsets(u, size, ratio=TRANSLATION_RATIO):
  """Per-image shifts in [-s, s], s = int(size * ratio + 1/2), from (rows,) uniforms."""
  shift = int(size * ratio + 0.5)
  return _integers(u, 2 * shift + 1) - shift


def _shift_axis(x, offset, axis):
  """out[i, ..., p, ...] = x[i, ..., p - offset_i, ...] along `axis` (1 or 2), else 0."""
  size = x.shape[axis]
  source = tf.range(size)[None, :] - offset[:, None]  # (B, size)
  inside = tf.logical_and(source >= 0, source < size)
  moved = tf.gather(x, tf.clip_by_value(source, 0, size - 1), axis=axis, batch_dims=1)
  mask = tf.cast(inside, x.dtype)
  mask = mask[:, :, None, None] if axis == 1 else mask[:, None, :, None]
  return moved * mask


def translation(x, u, ratio=TRANSLATION_RATIO):
  """Shifts image i by (translation_offsets(u[i, 0]), translation_offsets(u[i, 1]))."""
  x = _shift_axis(x, translation_offsets(u[:, 0], x.shape[1], ratio), axis=1)
  return _shift_axis(x, translation_offsets(u[:, 1], x.shape[2], ratio), axis=2)


def cutout_window(u, size, ratio=CUTOUT_RATIO):
  """First index and length of the cut rows (or columns): c = int(size * ratio + 1/2),
  centre uniform on 0..size - (c mod 2), first index centre - c // 2 (may be < 0)."""
  length = int(size * ratio + 0.5)
  centre = _integers(u, size + 1 - length % 2)
  return centre - length // 2, length


def cutout(x, u, ratio=CUTOUT_RATIO):
  """Zeroes the square cutout_window(u[i, 0]) x cutout_window(u[i, 1]) of image i."""
  def inside(first_u, size):
    first, length = cutout_window(first_u, size, ratio)
    index = tf.range(size)[None, :] - first[:, None]
    return tf.logical_and(index >= 0, index < length)  # (B, size)
  rows, cols = inside(u[:, 0], x.shape[1]), inside(u[:, 1], x.shape[2])
  cut = tf.logical_and(rows[:, :, None], cols[:, None, :])
  return x * tf.cast(tf.logical_not(cut), x.dtype)[:, :, :, None]


def augment(x, u, policies):
  """`x` (B, H, W, C) under `policies` (from parse_policy) with draws `u` (B, DRAWS)."""
  for name in policies:
    if name == "color":
      x = contrast(saturation(brightness(x, u[:, 0]), u[:, 1]), u[:, 2])
    elif name == "translation":
      x = translation(x, u[:, 3:5])
    elif name == "cutout":
      x = cutout(x, u[:, 5:7])
    else:
      raise ValueError(f"unknown augmentation {name!r}; expected one of {POLICIES}.")
  return x
