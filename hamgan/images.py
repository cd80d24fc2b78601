"""Images as files: [-1, 1] floats to uint8, a row-major grid of tiles, PNG writing,
and a generator's sample grid (one row per class).

The one place both training (sample grids in summaries) and evaluation (eval grids,
hamgan-sample, the demo) turn images into PNG files; it imports neither of them.
"""
import os

import numpy as np
import tensorflow as tf


def to_uint8(images):
  """float images in [-1, 1] (..., 3) -> uint8 0..255 (values outside are clipped)."""
  images = np.asarray(images, np.float32)
  return np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def grid(images, rows):
  """(rows * cols, H, W, C) -> one (rows * H, cols * W, C) image, row-major."""
  images = np.asarray(images)
  n, h, w, c = images.shape
  if rows <= 0 or n % rows:
    raise ValueError(
        f"{n} images do not fill {rows} rows; pass a multiple of rows images.")
  cols = n // rows
  # (rows*cols, H, W, C) -> (rows, cols, H, W, C) -> (rows, H, cols, W, C)
  tiled = images.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4)
  return tiled.reshape(rows * h, cols * w, c)


def write_png(path, image_uint8):
  """Writes one (H, W, 3) uint8 image as PNG (local or gs://), creating the directory."""
  if os.path.dirname(path):
    tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.gfile.GFile(path, "wb") as f:
    f.write(tf.io.encode_png(tf.convert_to_tensor(image_uint8, tf.uint8)).numpy())


def class_grid_inputs(num_classes, z_dim, per_class=8, max_classes=10, seed=0):
  """(z, y, rows) for a grid with one row per class (at most `max_classes` rows, spread).

  The same z is used in every row, so a row differs from another only by its label.
  """
  rows = min(num_classes, max_classes)
  classes = np.linspace(0, num_classes - 1, rows).round().astype(np.int32)
  z_row = np.random.default_rng(seed).standard_normal((per_class, z_dim)).astype(np.float32)
  z = np.tile(z_row, (rows, 1))
  y = np.repeat(classes, per_class).astype(np.int32)
  return z, y, rows


def sample_grid(generator, num_classes, z_dim, per_class=8, seed=0):
  """A uint8 grid image of G's samples (inference mode), one row per class."""
  z, y, rows = class_grid_inputs(num_classes, z_dim, per_class, seed=seed)
  images = generator((tf.constant(z), tf.constant(y)), training=False)
  return grid(to_uint8(images), rows)
