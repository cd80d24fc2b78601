"""Images as files: [-1, 1] floats to uint8, a row-major grid of tiles, PNG writing.

The one place both training (sample grids in summaries) and evaluation (eval grids,
hamgan-sample) turn images into PNG files; it imports neither of them.
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
