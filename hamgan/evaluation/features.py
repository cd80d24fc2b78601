"""Streams images through the classifier under the active strategy, keeping features.

Generated side: z and labels are drawn on the host from one seeded NumPy generator
(so the same seed gives the same z and labels whatever the batch size or the number
of replicas), batched, distributed, pushed through G in inference mode and the
classifier in one `tf.function` per global batch, and gathered back in order. Only
pool_3 features and logits are kept (float32 arrays preallocated to N rows; 50k x 2048
is 400 MB), never the images. Real side: the same for batches of a dataset.

The next batch is dispatched before the previous one is copied to the host, so the
copy overlaps the device work.
"""
import dataclasses
import time
import weakref

from absl import logging
import numpy as np
import tensorflow as tf

from hamgan.evaluation import latent


@dataclasses.dataclass
class Features:
  """Per-sample classifier outputs, in sample order."""
  pool_3: np.ndarray  # (N, D) float32
  logits: np.ndarray  # (N, C) float32
  labels: np.ndarray = None  # (N,) int32 class labels, when known

  @property
  def count(self):
    return self.pool_3.shape[0]


class Progress:
  """Logs 'what: n/N images, img/s, ETA' at most every `every_s` seconds."""

  def __init__(self, what, total, every_s=10.0, write=None):
    self.what, self.total, self.every_s = what, total, every_s
    self.write = write or logging.info
    self.start = time.perf_counter()
    self._last = self.start
    self.done = 0

  def update(self, n):
    self.done += n
    now = time.perf_counter()
    if now - self._last >= self.every_s or self.done >= self.total:
      self._last = now
      self.write(self.line(now))

  def line(self, now=None):
    elapsed = max((now or time.perf_counter()) - self.start, 1e-9)
    rate = self.done / elapsed
    eta = (self.total - self.done) / rate if rate > 0 else float("inf")
    if np.isfinite(eta):
      minutes, seconds = divmod(int(round(eta)), 60)
      eta_text = f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}"  # hours may pass 24
    else:
      eta_text = "?"
    percent = 100.0 * self.done / self.total
    return (f"{self.what}: {self.done}/{self.total} images ({percent:.1f}%), "
            f"{rate:.1f} img/s, elapsed {elapsed:.1f} s, ETA {eta_text}")


def latent_inputs(num_samples, num_classes, z_dim, seed=0, truncation=None):
  """(z (N, z_dim) float32, y (N,) int32): z ~ N(0, I), labels exactly balanced.

  The labels are 0..num_classes-1 repeated and shuffled, so each class gets N/classes
  samples (within one). With `truncation` t, entries with |z| > t are redrawn (the
  truncation trick; `latent` refuses t below its floor and bounds the redrawing).
  """
  for name, value in (("num_samples", num_samples), ("num_classes", num_classes),
                      ("z_dim", z_dim)):
    if not isinstance(value, (int, np.integer)) or value <= 0:
      raise ValueError(f"{name}={value!r} is not a positive int; pass a count >= 1.")
  latent.check_truncation(truncation)  # refused before any draw: a floor, then a bound
  rng = np.random.default_rng(seed)
  z = rng.standard_normal((num_samples, z_dim)).astype(np.float32)
  if truncation is not None:
    latent.truncate(rng, z, truncation)
  y = rng.permutation(np.arange(num_samples) % num_classes).astype(np.int32)
  return z, y


def _stream(strategy, step, dataset, total, progress):
  """Runs `step` per distributed batch; fills (N, ...) arrays with gathered outputs."""
  dist = strategy.experimental_distribute_dataset(dataset)
  arrays = None
  filled = 0

  def store(outputs):
    nonlocal arrays, filled
    outputs = [o.numpy() for o in outputs]
    n = min(outputs[0].shape[0], total - filled)
    if arrays is None:
      arrays = [np.empty((total,) + o.shape[1:], o.dtype) for o in outputs]
    for array, out in zip(arrays, outputs):
      array[filled:filled + n] = out[:n]
    filled += n
    if progress is not None:
      progress.update(n)

  pending = None
  for batch in dist:
    if filled >= total:
      break
    outputs = step(batch)  # dispatched; copying `pending` below overlaps with it
    if pending is not None:
      store(pending)
    pending = outputs
    if filled >= total:
      break
  if pending is not None and filled < total:
    store(pending)
  if arrays is None:
    raise ValueError("the input produced no batches; pass a non-empty dataset.")
  labels = arrays[3][:filled] if len(arrays) > 3 else None
  feats = Features(arrays[0][:filled], arrays[1][:filled], labels)
  _check_finite(feats, arrays[2][:filled], progress.what if progress is not None else "input")
  return feats


def _finite_rows(images):
  """1.0 per image whose every value is finite, else 0.0 (float: gathers everywhere).

  Checked on the images themselves: a ReLU turns NaN into 0, so NaN pixels can give
  finite, meaningless features.
  """
  flat = tf.reshape(images, [tf.shape(images)[0], -1])
  return tf.cast(tf.reduce_all(tf.math.is_finite(flat), axis=1), tf.float32)


def _check_finite(feats, finite_images, what):
  """Nothing non-finite is scored: NaN/inf images (a diverged G) or features fail here."""
  for bad, where in ((finite_images < 1.0, "images are"),
                     (~(np.isfinite(feats.pool_3).all(axis=1)
                        & np.isfinite(feats.logits).all(axis=1)),
                      "images have classifier outputs that are")):
    if bad.any():
      raise ValueError(
          f"{int(bad.sum())} of {feats.count} {what} {where} NaN or infinite (first: "
          f"image {int(np.argmax(bad))}), so no metric is computed from them; check those "
          "images (NaN pixels), the generator's checkpoint (diverged weights) and the "
          "classifier.")


def _check_classifier(classifier):
  if not callable(classifier):
    raise ValueError(
        f"classifier={classifier!r} is not callable; pass the result of "
        "hamgan.evaluation.classifier.load_classifier().")


def generated_features(generator, classifier, num_samples, num_classes, z_dim,
                       batch_size=100, strategy=None, seed=0, truncation=None,
                       progress_every_s=10.0, write=None):
  """Features of `num_samples` images from `generator` with balanced labels.

  Args:
    generator: callable `((z, y), training=False) -> (B, S, S, 3)` in [-1, 1].
    classifier: a `classifier.Classifier` (or any callable with its contract).
    num_samples: how many images to generate and classify.
    num_classes, z_dim: what the generator takes.
    batch_size: the global batch (split across replicas).
    strategy: a tf.distribute.Strategy; None uses the active one.
    seed: seeds z and labels (see `latent_inputs`).
    truncation: optional truncation threshold for z.
    progress_every_s, write: progress logging interval and sink.
  """
  _check_classifier(classifier)
  if not isinstance(batch_size, int) or batch_size <= 0:
    raise ValueError(f"batch_size={batch_size!r} is not a positive int; pass e.g. 100.")
  strategy = strategy or tf.distribute.get_strategy()
  z, y = latent_inputs(num_samples, num_classes, z_dim, seed, truncation)
  # Pad to whole global batches (static shapes for TPUs); the extra outputs are dropped.
  rows = np.arange(num_samples + (-num_samples % batch_size)) % num_samples
  z, y = z[rows], y[rows]
  labels = y[:num_samples]
  dataset = tf.data.Dataset.from_tensor_slices((z, y)).batch(
      batch_size, drop_remainder=True).prefetch(2)  # static batch shape: no dynamic kernels

  step = _generation_step(generator, classifier, strategy)
  progress = Progress("generated", num_samples, progress_every_s, write)
  feats = _stream(strategy, step, dataset, num_samples, progress)
  feats.labels = labels
  return feats


# generator -> {(id(classifier), id(strategy)): (classifier, strategy, step)}: one traced
# step per combination, so evaluating many checkpoints into one G traces G and the
# classifier once (tracing Inception takes seconds).
_STEPS = weakref.WeakKeyDictionary()


def _generation_step(generator, classifier, strategy):
  """The tf.function: a distributed batch of (z, y) -> gathered (pool_3, logits)."""
  try:
    per_generator = _STEPS.setdefault(generator, {})
    # Weakly: a cached step must not keep its own cache key (G) alive.
    call_generator = weakref.ref(generator)
  except TypeError:  # not weak-referenceable: no caching
    per_generator, call_generator = {}, lambda: generator
  key = (id(classifier), id(strategy))
  if key not in per_generator:

    def replica_fn(z, y):
      images = call_generator()((z, y), training=False)
      out = classifier(images)
      return out["pool_3"], out["logits"], _finite_rows(images)

    @tf.function(reduce_retracing=True)
    def step(batch):
      outputs = strategy.run(replica_fn, args=batch)
      return [strategy.gather(o, axis=0) for o in outputs]

    # The entry holds classifier and strategy, so their ids cannot be reused meanwhile.
    per_generator[key] = (classifier, strategy, step)
  return per_generator[key][2]


def dataset_features(dataset, classifier, num_samples, strategy=None,
                     progress_every_s=10.0, write=None):
  """Features of the first `num_samples` images of a batched dataset.

  The dataset yields image batches (B, H, W, 3) in [-1, 1], or (images, labels)
  tuples (the labels then come back in `Features.labels`). Fewer images than
  `num_samples` is allowed: the features are then shorter (the caller records the
  real count).
  """
  _check_classifier(classifier)
  strategy = strategy or tf.distribute.get_strategy()

  def replica_fn(batch):
    labelled = isinstance(batch, (tuple, list))
    images = batch[0] if labelled else batch
    out = classifier(images)
    outputs = (out["pool_3"], out["logits"], _finite_rows(images))
    if labelled:
      return outputs + (tf.cast(tf.reshape(batch[1], [-1]), tf.int32),)
    return outputs

  @tf.function(reduce_retracing=True)
  def step(batch):
    outputs = strategy.run(replica_fn, args=(batch,))
    return [strategy.gather(o, axis=0) for o in outputs]

  progress = Progress("real", num_samples, progress_every_s, write)
  return _stream(strategy, step, dataset, num_samples, progress)

