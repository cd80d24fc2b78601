"""Loads the feature classifier (Inception by default) once per process.

The classifier maps images to `{"logits", "pool_3"}`: logits for the Inception Score,
pool_3 features for FID. By default it is TF-GAN's Inception module from TF-Hub
(`tfgan.eval.INCEPTION_TFHUB`); a local directory works too (an extracted TF-Hub
module, or any TF2 SavedModel that is callable, or has a serving signature, returning
those two outputs). TF-GAN's `classifier_fn_from_tfhub` reloads the module on every
call, so we load it once here and call the loaded object per batch.

Machines without internet get a clear error before any sample is generated: the
TF-Hub cache is checked first and the host is probed with a short socket timeout
(bounded in a thread, so a hanging DNS lookup cannot stall us).

Preprocessing (docs/design.md, 'Evaluation protocol'): generated and real images both
enter the classifier as float32 in [-1, 1], resized bilinearly by us to its input size
(299x299 for Inception). Doing the same resize on both sides is what makes the real and
generated features comparable.
"""
import hashlib
import os
import socket
import threading
import urllib.parse

from absl import logging
import numpy as np
import tensorflow as tf

# The handle TF-GAN names (tfgan.eval.INCEPTION_TFHUB); kept as a literal so that loading
# a local classifier does not need TF-GAN. tests/test_evaluation.py checks they agree.
INCEPTION_TFHUB = "https://tfhub.dev/tensorflow/tfgan/eval/inception/1"
INCEPTION_IMAGE_SIZE = 299
OUTPUT_KEYS = ("logits", "pool_3")
_PROBE_TIMEOUT_S = 2.5

_LOADED = {}  # (source, fingerprint) -> Classifier: loaded once per process.


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


class ClassifierUnavailableError(ValueError):
  """The classifier cannot be loaded here (offline, or a bad local path)."""


class Classifier:
  """Callable images in [-1, 1] (B, H, W, 3) -> {"logits": (B, C), "pool_3": (B, D)}.

  Resizes to `image_size` itself, so callers pass images at their own resolution.

  Attributes:
    image_size: the square input size of the wrapped network.
    identity: the handle or absolute path plus a content fingerprint; it is part of
      every real-statistics cache key and every result row.
    source: the handle or path as given.
  """

  def __init__(self, fn, image_size, identity, source):
    self._fn = fn
    self.image_size = int(image_size)
    self.identity = identity
    self.source = source

  def __call__(self, images):
    x = to_classifier_input(images, self.image_size)
    out = self._fn(x)
    if not isinstance(out, dict) or any(k not in out for k in OUTPUT_KEYS):
      got = sorted(out) if isinstance(out, dict) else type(out).__name__
      raise ValueError(
          f"classifier {self.source!r} returned {got}; expected a dict with "
          f"{list(OUTPUT_KEYS)}. Export a SavedModel whose call returns both.")
    batch = tf.shape(x)[0]
    # Flatten (B, 1, 1, D) pool outputs to (B, D), as TF-GAN does.
    return {k: tf.reshape(tf.cast(out[k], tf.float32), (batch, -1)) for k in OUTPUT_KEYS}

  def classify(self, images):
    """Returns the argmax class per image as an int32 NumPy array."""
    return np.argmax(self(images)["logits"].numpy(), axis=-1).astype(np.int32)


def hub_cache_dir():
  """Where tensorflow_hub looks for extracted modules (TFHUB_CACHE_DIR or temp)."""
  from tensorflow_hub import resolver  # pylint: disable=g-import-not-at-top
  return resolver.tfhub_cache_dir(use_temp=True)


def hub_cache_path(handle):
  """The directory tensorflow_hub uses for `handle`: <cache>/<sha1(handle)>."""
  return os.path.join(hub_cache_dir(), hashlib.sha1(handle.encode("utf8")).hexdigest())


def host_reachable(url, timeout=_PROBE_TIMEOUT_S):
  """True if a TCP connection to the URL's host succeeds within about `timeout` s."""
  parsed = urllib.parse.urlparse(url)
  host = parsed.hostname
  port = parsed.port or (443 if parsed.scheme == "https" else 80)
  result = []

  def probe():
    try:
      with socket.create_connection((host, port), timeout=timeout):
        result.append(True)
    except OSError:
      result.append(False)

  # getaddrinfo ignores socket timeouts; a daemon thread bounds the whole probe.
  thread = threading.Thread(target=probe, daemon=True)
  thread.start()
  thread.join(timeout + 0.5)
  return bool(result and result[0])


def _offline_message(handle, cache_path):
  return (
      f"Cannot load the classifier {handle!r}: it is not in the TF-Hub cache "
      f"({cache_path} is missing or empty) and {urllib.parse.urlparse(handle).hostname} "
      f"is not reachable within {_PROBE_TIMEOUT_S} s. Provide it locally: either pass "
      "--classifier_path=/dir/of/extracted/module (classifier_path= in Python), or "
      "download the module on a machine with internet and extract it into "
      f"$TFHUB_CACHE_DIR/{os.path.basename(cache_path)} "
      f"(the directory is hashlib.sha1({handle!r}).hexdigest()) and set TFHUB_CACHE_DIR.")


def directory_fingerprint(path):
  """sha256 over the relative names and bytes of every file under `path`."""
  digest = hashlib.sha256()
  for root, dirs, files in os.walk(path):
    dirs.sort()
    for name in sorted(files):
      full = os.path.join(root, name)
      digest.update(os.path.relpath(full, path).encode("utf8") + b"\0")
      with open(full, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
          digest.update(block)
  return digest.hexdigest()


def _callable_of(loaded, source):
  """The function to call on a batch: the object's __call__ or its serving signature."""
  if callable(loaded):
    return loaded
  signatures = getattr(loaded, "signatures", {}) or {}
  for name in ("serving_default", "default"):
    if name in signatures:
      fn = signatures[name]
      inputs = fn.structured_input_signature[1]
      if len(inputs) != 1:
        raise ClassifierUnavailableError(
            f"signature {name!r} of {source!r} takes inputs {sorted(inputs)}; expected "
            "exactly one image input. Export a signature with one (B, H, W, 3) input.")
      (key,) = inputs
      return lambda x, fn=fn, key=key: fn(**{key: x})
  raise ClassifierUnavailableError(
      f"{source!r} is neither callable nor has a 'serving_default' signature; export a "
      "SavedModel whose __call__ (or serving signature) maps images to "
      f"{list(OUTPUT_KEYS)}.")


def _input_specs(loaded):
  """TensorSpecs of the image input of the object's __call__ and serving signatures."""
  specs = []
  for fn in getattr(getattr(loaded, "__call__", None), "concrete_functions", None) or []:
    args, kwargs = fn.structured_input_signature
    specs += list(args[:1]) + list(kwargs.values())[:1]
  for fn in (getattr(loaded, "signatures", None) or {}).values():
    specs += list(fn.structured_input_signature[1].values())[:1]
  return [s for s in specs if isinstance(s, tf.TensorSpec)]


def _declared_image_size(loaded, source):
  """The input size: an `image_size` attribute, else a static input shape, else 299."""
  size = getattr(loaded, "image_size", None)
  if size is not None:
    return int(size.numpy() if hasattr(size, "numpy") else size)
  for spec in _input_specs(loaded):
    shape = spec.shape
    if shape.rank == 4 and shape[1] is not None and shape[1] == shape[2]:
      return int(shape[1])
  if source != INCEPTION_TFHUB:
    logging.warning(
        "%s declares no input size (no `image_size` attribute, no static input shape); "
        "using Inception's %d. Give the SavedModel an `image_size` variable if that is "
        "wrong.", source, INCEPTION_IMAGE_SIZE)
  return INCEPTION_IMAGE_SIZE


def load_classifier(path=None, handle=None):
  """Returns a `Classifier`, loading it at most once per process.

  Args:
    path: a local directory (extracted TF-Hub module or SavedModel). None means the
      TF-Hub `handle`, which must then be cached or reachable.
    handle: the TF-Hub handle used when `path` is None (default INCEPTION_TFHUB).

  Raises:
    ClassifierUnavailableError: offline with no cached module (within seconds), or
      a path that does not hold a usable SavedModel.
  """
  if path is not None:
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
      raise ClassifierUnavailableError(
          f"classifier_path={path!r} holds no saved_model.pb; pass the directory of an "
          "extracted TF-Hub module or of a SavedModel (tf.saved_model.save output).")
    key = (path, directory_fingerprint(path))
    source, identity = path, f"{path}#sha256:{key[1][:16]}"
  else:
    handle = handle or INCEPTION_TFHUB
    cache_path = hub_cache_path(handle)
    cached = os.path.isdir(cache_path) and os.listdir(cache_path)
    key = (handle, cache_path)  # a module per cache: TFHUB_CACHE_DIR may change
    if key not in _LOADED and not cached and not host_reachable(handle):
      raise ClassifierUnavailableError(_offline_message(handle, cache_path))
    source, identity = handle, handle
  if key in _LOADED:
    return _LOADED[key]

  import tensorflow_hub as hub  # pylint: disable=g-import-not-at-top
  loaded = hub.load(source)
  fn = _callable_of(loaded, source)
  size = _declared_image_size(loaded, source)
  classifier = Classifier(fn, size, identity, source)
  classifier._loaded = loaded  # pylint: disable=protected-access  # keeps variables alive
  _LOADED[key] = classifier
  return classifier
