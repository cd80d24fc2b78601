"""Sample grids of a generator, one row per class (no metrics here, so no TF-GAN import)."""
import numpy as np
import tensorflow as tf

from hamgan import images as image_io


# The conversion, tiling and PNG writing live in hamgan.images (training uses them too).
to_uint8 = image_io.to_uint8
grid = image_io.grid
write_png = image_io.write_png


def class_grid_inputs(num_classes, z_dim, per_class=8, max_classes=10, seed=0):
  """(z, y) for a grid with one row per class (at most `max_classes` rows, spread).

  The same z is used in every row, so a row differs from another only by its label.
  """
  rows = min(num_classes, max_classes)
  classes = np.linspace(0, num_classes - 1, rows).round().astype(np.int32)
  z_row = np.random.default_rng(seed).standard_normal((per_class, z_dim)).astype(np.float32)
  z = np.tile(z_row, (rows, 1))
  y = np.repeat(classes, per_class).astype(np.int32)
  return z, y, rows


def sample_grid(generator, num_classes, z_dim, per_class=8, seed=0):
  """A uint8 grid image of G's samples, one row per class."""
  z, y, rows = class_grid_inputs(num_classes, z_dim, per_class, seed=seed)
  images = generator((tf.constant(z), tf.constant(y)), training=False)
  return grid(to_uint8(images), rows)
