"""Scores images a user already has (hamgan-eval --images) and exports real statistics.

The generated side is a folder of PNG/JPEG files or an .npz (`read_images`); the real
side is a hamgan data set split (`--real_dataset/--real_split`, cached like the run
evaluator's), other images (`--real_images`) or a statistics file (`--real_stats`,
FID only). The result is one JSON row, the same fields as eval/results.jsonl where they
apply, written to `out` (default: next to the images, `<images>.eval.json`).

Order of work, so that bad input fails first and destroys nothing: the output paths are
checked (never an input file or folder, never a folder where a file goes), the image
files and the statistics file are read and checked (finite pixels; a finite, symmetric,
positive semi-definite sigma), the asked-for metrics are checked against what the real
side can give, then the classifier is loaded and its feature size checked, then
features (refused when any is NaN or infinite). `num_samples` scores the first images
only; the row's num_samples says how many were scored, images_count how many there are.

The images, read by `read_images`: a folder is every *.png / *.jpg / *.jpeg directly
inside it, in name order, decoded to RGB (grey images get three equal channels, alpha
is dropped), all of one size; an .npz is an `images` array (N, H, W, 3), uint8 0..255
or float in [-1, 1], and optionally `labels` (N,) of class ids (used by intra-class
FID). Everything is checked when read, so a bad input fails before a classifier or a
feature is touched.
"""
import dataclasses
import hashlib
import json
import os
import time

import numpy as np
import tensorflow as tf

from hamgan import output_paths
from hamgan.evaluation import classifier as classifier_lib
from hamgan.evaluation import features as features_lib
from hamgan.evaluation import metrics
from hamgan.evaluation import real_stats
from hamgan.evaluation import scoring
from hamgan.evaluation import stats_file

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


def read_images(path, what="--images"):
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


@dataclasses.dataclass
class ImageEvalSettings:
  """What hamgan-eval's --images / --export_stats mode reads."""
  images: str = None
  real_dataset: str = None
  real_split: str = None
  real_images: str = None
  real_stats: str = None
  num_samples: int = None  # None: every image of `images`; else the first num_samples
  real_num_samples: int = None  # None: the whole split / all real images
  data_dir: str = None
  classifier_path: str = None
  batch_size: int = 100
  kid: bool = False
  manifold: bool = False
  intra_fid: bool = False
  conditional_accuracy: bool = False
  cache_dir: str = None
  out: str = None
  export_stats: str = None
  progress_every_s: float = 10.0


def default_out(images_path):
  return images_path.rstrip("/" + os.sep) + ".eval.json"


def _check_sources(s):
  given = [n for n in ("real_dataset", "real_images", "real_stats") if getattr(s, n)]
  if len(given) != 1:
    raise ValueError(
        f"pass exactly one real side of --real_dataset, --real_images, --real_stats "
        f"(got {', '.join('--' + n for n in given) or 'none'}).")
  if s.real_stats and s.export_stats:
    raise ValueError("--export_stats writes the statistics of --real_dataset or "
                     "--real_images; with --real_stats there is nothing new to export.")
  if not s.images and not s.export_stats:
    raise ValueError("pass --images=PATH to score, and/or --export_stats=FILE.")
  if s.out and not s.images:
    raise ValueError(f"--out={s.out!r} is where the row of --images goes, but there are "
                     "no --images; drop --out (--export_stats names its own file).")
  if s.num_samples is not None and not s.images:
    raise ValueError(f"--num_samples={s.num_samples} counts the --images to score, but "
                     "there are none; pass --real_num_samples to limit the real side.")


def _check_outputs(s):
  """--out and --export_stats: never an input, never a folder, never each other."""
  inputs = {"--images": s.images, "--real_images": s.real_images,
            "--real_stats": s.real_stats}
  out = (s.out or default_out(s.images)) if s.images else None
  if out:
    output_paths.check_file("--out", out, inputs, suffix=".json")
  if s.export_stats:
    output_paths.check_file("--export_stats", s.export_stats, {**inputs, "--out": out},
                            suffix=".npz")


def _check_count(s, fake_set):
  """Enough images for every score; --num_samples at most the images there are."""
  least = 2 * scoring.IS_SPLITS  # the 10-split Inception Score: 2 per split
  if fake_set.count < least:
    raise ValueError(f"--images={s.images!r} holds {fake_set.count} images, but the scores "
                     f"need at least {least} (the {scoring.IS_SPLITS}-split Inception Score; "
                     "FID wants thousands); pass more images.")
  if s.num_samples is not None and not least <= s.num_samples <= fake_set.count:
    raise ValueError(
        f"--num_samples={s.num_samples} but --images={s.images!r} holds {fake_set.count} "
        f"images; pass {least} .. {fake_set.count} to score the first ones, or leave "
        "--num_samples out to score them all.")


class _RealSide:
  """The real side as the settings name it; checked on construction, computed on demand."""

  def __init__(self, s, resolution):
    self.s, self.resolution = s, resolution
    self.image_set = read_images(s.real_images, "--real_images") if s.real_images else None
    self.stats_arrays = stats_file.read(s.real_stats) if s.real_stats else None
    if s.real_dataset:
      from hamgan import data  # pylint: disable=g-import-not-at-top
      info = data.dataset_info(s.real_dataset, s.data_dir)  # a bad name fails here
      self.split = s.real_split or info.eval_split
    if self.image_set is not None and resolution is not None and (
        self.image_set.resolution != resolution):
      raise ValueError(
          f"--real_images={s.real_images!r} are {self.image_set.resolution}px but "
          f"--images are {resolution}px; pass real images at the generated size.")

  def describe(self):
    """(against name, has features, has labels, asked count)."""
    s = self.s
    if self.stats_arrays is not None:
      key = self.stats_arrays[2].get("key")
      name = os.path.splitext(os.path.basename(s.real_stats))[0]
      try:
        k = json.loads(key)
        name = f"{k['dataset'].replace('/', '_')}-{k['split']}"
      except (TypeError, ValueError, KeyError):
        pass
      return name, False, False, None
    if self.image_set is not None:
      name = os.path.splitext(os.path.basename(s.real_images.rstrip("/")))[0]
      return name, True, self.image_set.labels is not None, s.real_num_samples
    return (f"{s.real_dataset.replace('/', '_')}-{self.split}", True, True,
            s.real_num_samples)

  def compute(self, classifier, strategy, write):
    s = self.s
    if self.stats_arrays is not None:
      return stats_file.as_real_stats(s.real_stats, self.stats_arrays)
    if self.image_set is not None:
      n = min(s.real_num_samples or self.image_set.count, self.image_set.count)
      feats = features_lib.dataset_features(
          self.image_set.dataset(s.batch_size), classifier, n, strategy=strategy,
          progress_every_s=s.progress_every_s, write=write)
      key = dict(images=self.image_set.source, sha256=self.image_set.fingerprint,
                 count=n, classifier=classifier.identity)
      return real_stats.from_features(key, feats)
    from hamgan.evaluation import evaluator  # pylint: disable=g-import-not-at-top
    if self.resolution is None:
      raise ValueError("--export_stats of a --real_dataset needs the resolution: pass "
                       "--images (their size is used) or --real_resolution.")
    key = real_stats.RealStatsKey(
        dataset=s.real_dataset, split=self.split, resolution=self.resolution,
        num_samples=s.real_num_samples or 50000, classifier=classifier.identity,
        data_dir=s.data_dir, source_version=real_stats.source_version(s.real_dataset,
                                                                      s.data_dir))
    make = lambda: evaluator.hamgan_dataset(  # pylint: disable=g-long-lambda
        s.real_dataset, self.split, s.data_dir, self.resolution, s.batch_size, strategy)
    stats, _ = real_stats.load_or_compute(key, make, classifier, cache_dir=s.cache_dir,
                                          strategy=strategy, write=write)
    return stats


def _feature_dim(classifier, resolution):
  probe = np.zeros((1, resolution or classifier.image_size,
                    resolution or classifier.image_size, 3), np.float32)
  return int(classifier(probe)["pool_3"].shape[-1])


def evaluate_images(s, strategy=None, write=None, real_resolution=None):
  """Runs --images and/or --export_stats; returns the row (None when only exporting)."""
  start = time.time()
  _check_sources(s)
  _check_outputs(s)
  fake_set = read_images(s.images) if s.images else None
  if fake_set is not None:
    _check_count(s, fake_set)
  resolution = fake_set.resolution if fake_set is not None else real_resolution
  real_side = _RealSide(s, resolution)
  against, has_features, has_labels, asked = real_side.describe()
  if fake_set is not None:
    scoring.check_request(has_features, has_labels, s.kid, s.manifold, s.intra_fid,
                          source=s.real_stats or s.real_images or s.real_dataset)
    for name, on in (("--intra_fid", s.intra_fid),
                     ("--conditional_accuracy", s.conditional_accuracy)):
      if on and fake_set.labels is None:
        raise ValueError(f"{name} needs class labels of the generated images, but "
                         f"{s.images!r} has none; save them as `labels` in the .npz.")
  classifier = classifier_lib.load_classifier(s.classifier_path)
  if real_side.stats_arrays is not None:
    stats_file.check_feature_dim(s.real_stats, real_side.stats_arrays[0],
                                 _feature_dim(classifier, resolution))
  real = real_side.compute(classifier, strategy, write)
  if s.export_stats:
    stats_file.export(s.export_stats, real)
  if fake_set is None:
    return None
  fake = features_lib.dataset_features(
      fake_set.dataset(s.batch_size), classifier, s.num_samples or fake_set.count,
      strategy=strategy,
      progress_every_s=s.progress_every_s, write=write)
  label = scoring.sample_label(fake.count, real.count, asked)
  values, extra = scoring.score(real, fake, label, against, s.kid, s.manifold,
                                s.intra_fid, s.conditional_accuracy)
  protocol = f"{label}/{against}"
  if classifier.identity != classifier_lib.INCEPTION_TFHUB:  # as the run evaluator's
    protocol += f", classifier {os.path.basename(classifier.source)}"
  row = dict(
      images=fake_set.source, images_sha256=fake_set.fingerprint, num_samples=fake.count,
      images_count=fake_set.count,
      protocol=protocol, classifier=classifier.identity, metrics=values,
      real=os.path.abspath(s.real_stats or s.real_images) if not s.real_dataset else against,
      real_data_dir=s.data_dir if s.real_dataset else None,
      real_count=real.count, real_num_samples=asked,
      metrics_implementation=getattr(metrics, "implementation_name", lambda: None)(),
      eval_seconds=time.time() - start, wall_time=time.time(), **extra)
  out = s.out or default_out(s.images)
  if os.path.dirname(out):
    os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out, "w") as f:
    json.dump(row, f, sort_keys=True, indent=1)
  row["out"] = out
  return row
