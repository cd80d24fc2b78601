"""Puts images into the form the classifier was trained on: float32 [-1, 1] at its size.

docs/design.md, section 'Evaluation protocol': generated and real images both enter
the classifier as float32 in [-1, 1], resized bilinearly by us (299x299 for Inception). Doing the same resize on
both sides is what makes the real and generated features comparable.
"""
import tensorflow as tf


def to_classifier_input(images, image_size):
  """Returns `images` (B, H, W, 3) as float32 (B, image_size, image_size, 3).

  Args:
    images: float images in [-1, 1], NHWC with 3 channels.
    image_size: the classifier's square input size (299 for Inception).

  Raises:
    ValueError: when the images are not NHWC RGB or the size is not positive.
  """
  if not isinstance(image_size, int) or image_size <= 0:
    raise ValueError(
        f"image_size={image_size!r} is not a positive int; pass the classifier's "
        "input size, e.g. 299 for Inception.")
  images = tf.convert_to_tensor(images)
  if images.shape.rank != 4 or images.shape[-1] != 3:
    raise ValueError(
        f"images of shape {images.shape} are not (B, H, W, 3); pass NHWC RGB images "
        "in [-1, 1].")
  images = tf.cast(images, tf.float32)
  if images.shape[1] == image_size and images.shape[2] == image_size:
    return images
  # Bilinear keeps [-1, 1] (a convex combination of neighbours): no clipping needed.
  return tf.image.resize(images, (image_size, image_size), method="bilinear")


def uint8_to_unit_range(images):
  """Maps uint8 images 0..255 to float32 in [-1, 1] (x / 127.5 - 1)."""
  return tf.cast(images, tf.float32) / 127.5 - 1.0
