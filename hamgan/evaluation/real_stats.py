"""Real-data features, computed once and cached on disk under a full key.

A cache file holds the pool_3 activations of the real images (float32, N x D), their
mean and unbiased covariance (float64), the count, the real images' own Inception
Score, the class labels when the data set has them (for intra-class FID), and the key
it was made for, as JSON inside the file. The key is everything that changes the
features: data set, split, data_dir, the data set's version, resolution (the size the
real images are read at, which is G's output size), the preprocessing, requested sample
count and classifier identity (handle, or path plus a content fingerprint). The file
name carries a hash of the key; on load the stored key, the shapes and the mean are
checked again, so a renamed, stale or damaged file is recomputed rather than trusted.

We keep the activations themselves (not only mean and covariance) so that FID comes
straight from TF-GAN's `frechet_classifier_distance_from_activations` and KID, which
needs samples, stays possible. For Inception at 50k that is a 400 MB file per key.
"""
import dataclasses
import hashlib
import json
import os
import tempfile

from absl import logging
import numpy as np

from hamgan.evaluation import features as features_lib
from hamgan.evaluation import metrics

FORMAT_VERSION = 2
# How real images reach the classifier; a change here must invalidate every cache.
PREPROCESSING = ("hamgan.data.to_model_range (antialiased bilinear to the resolution, "
                 "[-1, 1]); classifier: bilinear resize, float32")


def cache_root():
  """hamgan's cache: $HAMGAN_CACHE, else ~/.cache/hamgan ($HAMGAN_CACHE_DIR, its old name,
  is still read)."""
  return (os.environ.get("HAMGAN_CACHE") or os.environ.get("HAMGAN_CACHE_DIR")
          or os.path.join(os.path.expanduser("~"), ".cache", "hamgan"))


def default_cache_dir():
  """<cache_root()>/real_stats."""
  return os.path.join(cache_root(), "real_stats")


@dataclasses.dataclass(frozen=True)
class RealStatsKey:
  """Everything the real statistics depend on."""
  dataset: str
  split: str
  resolution: int
  num_samples: int
  classifier: str
  data_dir: str = None
  source_version: str = None  # the tfds version, or a fingerprint of the files
  preprocessing: str = PREPROCESSING
  version: int = FORMAT_VERSION

  def to_json(self):
    return json.dumps(dataclasses.asdict(self), sort_keys=True)

  def filename(self):
    digest = hashlib.sha1(self.to_json().encode("utf8")).hexdigest()[:16]
    name = self.dataset.replace("/", "_")
    return (f"real_{name}_{self.split}_{self.resolution}px_"
            f"{metrics.count_label(self.num_samples)}_{digest}.npz")


@dataclasses.dataclass
class RealStats:
  """Cached real statistics; `count` may be below the key's num_samples for small splits."""
  key: RealStatsKey
  activations: np.ndarray  # (count, D) float32; None for imported statistics
  mean: np.ndarray  # (D,) float64
  cov: np.ndarray  # (D, D) float64, unbiased
  count: int
  inception_score: float  # of the real images themselves, a sanity reference
  labels: np.ndarray = None  # (count,) int32 class labels, when the data has them


def source_version(dataset, data_dir=None):
  """What identifies the data's content: the tfds version, or a folder's file listing.

  tfds: 'tfds:<name>:<version>' of the builder in data_dir (None: tfds's default).
  A folder data set ('folder:/path'): sha256 of every file's relative path, size and
  modification time. 'unknown' when neither can be read (then data_dir still counts).
  """
  from hamgan.data import folder as folder_lib  # pylint: disable=g-import-not-at-top
  root = folder_lib.parse_name(dataset)
  if root is not None:
    digest = hashlib.sha256()
    for base, dirs, files in os.walk(root):
      dirs.sort()
      for name in sorted(files):
        full = os.path.join(base, name)
        st = os.stat(full)
        digest.update(f"{os.path.relpath(full, root)}\0{st.st_size}\0{st.st_mtime_ns}\n"
                      .encode("utf8"))
    return f"files:{digest.hexdigest()[:16]}"
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    from hamgan.data import registry  # pylint: disable=g-import-not-at-top
    tfds_name = registry.dataset_spec(dataset).tfds_name
    return f"tfds:{tfds_name}:{tfds.builder(tfds_name, data_dir=data_dir).version}"
  except Exception:  # pylint: disable=broad-except  # unknown name, no tfds: still keyed
    return "unknown"


def from_features(key, feats):
  """Builds RealStats from streamed real features."""
  acts = feats.pool_3
  if acts.shape[0] < 2:
    raise ValueError(
        f"only {acts.shape[0]} real images were read for {key.dataset}/{key.split}; "
        "FID needs at least 2. Check the data set name, split and data_dir.")
  acts64 = acts.astype(np.float64)
  return RealStats(key=key, activations=acts, mean=acts64.mean(axis=0),
                   cov=np.cov(acts64, rowvar=False), count=int(acts.shape[0]),
                   inception_score=metrics.inception_score(feats.logits),
                   labels=feats.labels)


def save(path, stats):
  """Writes atomically (temp file + rename), so a crash never leaves half a cache."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp.npz")
  os.close(fd)
  try:
    np.savez(tmp, key=np.array(stats.key.to_json()), activations=stats.activations,
             mean=stats.mean, cov=stats.cov, count=np.int64(stats.count),
             inception_score=np.float64(stats.inception_score),
             **({} if stats.labels is None else {"labels": stats.labels}))
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def load(path, key):
  """Returns the RealStats at `path` if it is intact and made for `key`, else None."""
  if not os.path.isfile(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as data:
      stored_key = str(data["key"])
      acts, mean, cov = data["activations"], data["mean"], data["cov"]
      count, score = int(data["count"]), float(data["inception_score"])
      labels = data["labels"] if "labels" in data.files else None
  except (OSError, ValueError, KeyError) as e:
    logging.warning("real-statistics cache %s is unreadable (%s); recomputing.", path, e)
    return None
  if stored_key != key.to_json():
    logging.warning("real-statistics cache %s was made for %s, not %s; recomputing.",
                    path, stored_key, key.to_json())
    return None
  dim = acts.shape[1] if acts.ndim == 2 else -1
  if (acts.ndim != 2 or acts.shape[0] != count or mean.shape != (dim,)
      or cov.shape != (dim, dim)
      or not np.allclose(mean, acts.astype(np.float64).mean(axis=0), atol=1e-6)):
    logging.warning("real-statistics cache %s is inconsistent; recomputing.", path)
    return None
  if labels is not None and labels.shape != (count,):
    logging.warning("real-statistics cache %s has %s labels for %d images; recomputing.",
                    path, labels.shape, count)
    return None
  return RealStats(key, acts, mean, cov, count, score, labels)


def load_or_compute(key, make_dataset, classifier, cache_dir=None, strategy=None,
                    force=False, write=None):
  """Returns (RealStats, from_cache).

  Args:
    key: a RealStatsKey.
    make_dataset: zero-argument callable returning the batched real dataset (images in
      [-1, 1] at `key.resolution`, or (images, labels)); called only on a cache miss.
    classifier: the Classifier whose identity is `key.classifier`.
    cache_dir: where cache files live (default `default_cache_dir()`).
    strategy: distribution strategy for the feature pass.
    force: recompute even if a valid cache exists.
    write: progress sink.
  """
  identity = getattr(classifier, "identity", None)
  if identity is not None and identity != key.classifier:
    raise ValueError(
        f"key.classifier={key.classifier!r} but the classifier is {identity!r}; build "
        "the key from classifier.identity.")
  path = os.path.join(cache_dir or default_cache_dir(), key.filename())
  if not force:
    stats = load(path, key)
    if stats is not None:
      logging.info("real statistics from cache %s (%d images)", path, stats.count)
      return stats, True
  feats = features_lib.dataset_features(make_dataset(), classifier, key.num_samples,
                                        strategy=strategy, write=write)
  if feats.count < key.num_samples:
    logging.warning("%s/%s has only %d images (asked for %d); using all of them.",
                    key.dataset, key.split, feats.count, key.num_samples)
  stats = from_features(key, feats)
  save(path, stats)
  logging.info("real statistics cached in %s (%d images)", path, stats.count)
  return stats, False
