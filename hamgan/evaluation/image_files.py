"""Images a user already has: a folder of PNG/JPEG files or an .npz, checked before any work.

A folder: every *.png / *.jpg / *.jpeg directly inside it, in name order, decoded to RGB
(grey images get three equal channels, alpha is dropped); all must have one size. An
.npz: an `images` array (N, H, W, 3), uint8 0..255 or float in [-1, 1], and optionally
`labels` (N,) of class ids (used by intra-class FID). Everything is checked when read,
so a bad input fails before a classifier or a feature is touched.
"""
import hashlib
import os

import numpy as np
import tensorflow as tf

from hamgan.evaluation import classifier as classifier_lib

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


class ImageSet:
  """Images (uint8 or float32 in [-1, 1]), optional labels, and where they came from."""

  def __init__(self, images, labels, source, fingerprint):
    self.images, self.labels = images, labels
    self.source, self.fingerprint = source, fingerprint

  @property
  def count(self):
    return int(self.images.shape[0])

  @property
  def resolution(self):
    return int(self.images.shape[1])

  def dataset(self, batch_size):
    """Batches as float32 in [-1, 1] (with labels when there are any), in order."""
    images, labels = self.images, self.labels

    def batches():
      for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        x = (classifier_lib.uint8_to_unit_range(x) if x.dtype == np.uint8
             else tf.constant(x, tf.float32))
        yield (x, labels[start:start + batch_size]) if labels is not None else x

    shape = (None,) + images.shape[1:]
    spec = tf.TensorSpec(shape, tf.float32)
    if labels is not None:
      spec = (spec, tf.TensorSpec((None,), tf.int32))
    return tf.data.Dataset.from_generator(batches, output_signature=spec)


def _folder_files(path):
  names = sorted(n for n in os.listdir(path) if n.lower().endswith(IMAGE_EXTENSIONS))
  if not names:
    raise ValueError(f"folder {path!r} holds no PNG or JPEG files (*.png, *.jpg, *.jpeg "
                     "directly inside it); pass a folder of images or an .npz with an "
                     "`images` array.")
  return [os.path.join(path, n) for n in names]


def _read_folder(path):
  digest = hashlib.sha256()
  images, first = [], None
  for name in _folder_files(path):
    with open(name, "rb") as f:
      data = f.read()
    digest.update(os.path.basename(name).encode("utf8") + b"\0" + data)
    try:
      image = tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
    except tf.errors.InvalidArgumentError as e:
      raise ValueError(f"{name!r} is not a readable PNG/JPEG ({e.message.strip()}); "
                       "remove or re-save it.") from None
    if first is None:
      first = (name, image.shape)
    elif image.shape != first[1]:
      raise ValueError(
          f"images of mixed sizes in {path!r}: {first[0]!r} is {first[1][:2]} but "
          f"{name!r} is {image.shape[:2]}; resize them all to one size first.")
    images.append(image)
  return np.stack(images), None, digest.hexdigest()


def _read_npz(path):
  try:
    with np.load(path, allow_pickle=False) as data:
      if "images" not in data.files:
        raise ValueError(f"{path!r} holds {list(data.files)} but no `images` array; save "
                         "the images as np.savez(path, images=x) (uint8 (N, H, W, 3) "
                         "or float in [-1, 1]), labels optionally as `labels`.")
      images = data["images"]
      labels = data["labels"] if "labels" in data.files else None
  except (OSError, ValueError) as e:
    if "`images`" in str(e):
      raise
    raise ValueError(f"{path!r} is not a readable .npz ({e}); save it with np.savez."
                     ) from None
  if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] != images.shape[2]:
    raise ValueError(f"`images` in {path!r} has shape {images.shape}; expected square "
                     "RGB images (N, H, H, 3).")
  if images.dtype != np.uint8:
    if not np.issubdtype(images.dtype, np.floating):
      raise ValueError(f"`images` in {path!r} is {images.dtype}; expected uint8 0..255 "
                       "or float in [-1, 1].")
    finite = np.isfinite(images)
    if not finite.all():  # NaN compares False with any bound: check it first
      first = tuple(int(i) for i in np.argwhere(~finite)[0])
      raise ValueError(f"float `images` in {path!r} hold {int(images.size - finite.sum())} "
                       f"NaN or infinite values (the first at index {first}); expected "
                       "finite values in [-1, 1]: fix or drop those images.")
    low, high = float(images.min()), float(images.max())
    if low < -1.0 - 1e-6 or high > 1.0 + 1e-6:
      raise ValueError(f"float `images` in {path!r} span [{low:.3g}, {high:.3g}]; expected "
                       "[-1, 1] (map 0..255 with x / 127.5 - 1, or save uint8).")
    images = images.astype(np.float32)
  if labels is not None:
    if labels.shape != (images.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
      raise ValueError(f"`labels` in {path!r} is {labels.dtype} {labels.shape}; expected "
                       f"({images.shape[0]},) integer class ids, or leave it out.")
    labels = labels.astype(np.int32)
  with open(path, "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
  return images, labels, digest


def read(path, what="--images"):
  """An ImageSet from a folder or an .npz; raises ValueError naming the file and the fix."""
  if path is None or not os.path.exists(path):
    raise ValueError(f"{what}={path!r} does not exist; pass a folder of PNG/JPEG files "
                     "or an .npz with an `images` array.")
  if os.path.isdir(path):
    images, labels, digest = _read_folder(path)
  elif path.endswith(".npz"):
    images, labels, digest = _read_npz(path)
  else:
    raise ValueError(f"{what}={path!r} is neither a folder nor an .npz; pass a folder of "
                     "PNG/JPEG files or an .npz with an `images` array.")
  if images.shape[1] != images.shape[2]:
    raise ValueError(f"the images of {path!r} are {images.shape[1]}x{images.shape[2]}; "
                     "expected square images (crop them first).")
  if images.shape[0] < 2:
    raise ValueError(f"{path!r} holds {images.shape[0]} image(s); the metrics need at "
                     "least 2 (in practice thousands).")
  return ImageSet(images, labels, os.path.abspath(path), digest[:16])
