"""FID, Inception Score and KID from classifier outputs, with TF-GAN's functions.

All functions run eagerly on NumPy arrays or tensors and return Python floats.
Where TF-GAN imports (the `tpu` stack, TF 2.15) its functions compute the metrics;
where it does not (TF >= 2.16 has no `tf.estimator`), `metric_formulas` computes the
same formulas in float64 NumPy. `implementation_name()` says which one is in use, and
every result row records it. TF-GAN computes in float64 internally. FID uses the unbiased covariances of both
activation sets (TF-GAN's `frechet_classifier_distance_from_activations`); the
Inception Score is TF-GAN's single split over all samples, and we also give the
customary 10-split mean and standard deviation (Salimans et al.'s original code).

Metric names carry their protocol: `fid50k/imagenet2012-validation` is FID of 50,000
samples against the validation split of imagenet2012 (`scoring` builds the names).
"""
import numpy as np
import tensorflow as tf

from hamgan.evaluation import metric_formulas

try:
  import tensorflow_gan as tfgan  # pylint: disable=g-import-not-at-top
except (ImportError, AttributeError):  # not installed, or TF >= 2.16 (no tf.estimator)
  tfgan = None


def implementation_name():
  """'tfgan-2.1.0' where TF-GAN computes the metrics, else 'hamgan-float64'."""
  if tfgan is None:
    return "hamgan-float64"
  return f"tfgan-{getattr(tfgan, '__version__', 'unknown')}"


def count_label(num_samples):
  """50000 -> '50k', 10240 -> '10240': the sample count as written in metric names."""
  if num_samples % 1000 == 0:
    return f"{num_samples // 1000}k"
  return str(num_samples)


def _as_2d(name, x):
  x = np.asarray(x)
  if x.ndim != 2 or x.shape[0] < 2:
    raise ValueError(
        f"{name} has shape {x.shape}; expected (N, D) with N >= 2. Pass the stacked "
        "per-sample classifier outputs.")
  finite = np.isfinite(x)
  if not finite.all():
    raise ValueError(f"{name} holds {int(x.size - finite.sum())} NaN or infinite values; "
                     "no metric is computed from them. Check the images and the "
                     "classifier that gave these features.")
  return x


def frechet_distance(real_activations, generated_activations):
  """FID between two activation sets (N1, D) and (N2, D); float64 inside TF-GAN."""
  a = _as_2d("real_activations", real_activations)
  b = _as_2d("generated_activations", generated_activations)
  if a.shape[1] != b.shape[1]:
    raise ValueError(
        f"feature sizes differ: real {a.shape[1]} vs generated {b.shape[1]}; use the "
        "same classifier (and cache) for both sides.")
  if tfgan is None:
    return metric_formulas.frechet_distance(a, b)
  return float(tfgan.eval.frechet_classifier_distance_from_activations(
      tf.constant(a, tf.float64), tf.constant(b, tf.float64)))


def inception_score(logits):
  """TF-GAN's classifier score exp(E_x KL(p(y|x) || p(y))) over all samples."""
  logits = _as_2d("logits", logits)
  if tfgan is None:
    return metric_formulas.inception_score(logits)
  return float(tfgan.eval.classifier_score_from_logits(tf.constant(logits, tf.float64)))


def split_inception_score(logits, splits=10):
  """(mean, std) of the classifier score over `splits` consecutive equal parts."""
  logits = _as_2d("logits", logits)
  if not 1 <= splits <= logits.shape[0] // 2:
    raise ValueError(
        f"splits={splits} does not fit {logits.shape[0]} samples; expected 1 <= splits "
        "<= N/2. Use fewer splits or more samples.")
  scores = [inception_score(part) for part in np.array_split(logits, splits)]
  return float(np.mean(scores)), float(np.std(scores))


def kernel_distance(real_activations, generated_activations, max_block_size=None):
  """(KID, its standard error) with TF-GAN's block estimator.

  The blocks hold at most 1024 samples (49 blocks at 50k); below 20k samples they
  shrink to a tenth of the set, so that there are always about 10 blocks and the
  standard error exists (TF-GAN gives NaN for a single block).
  """
  a = _as_2d("real_activations", real_activations)
  b = _as_2d("generated_activations", generated_activations)
  if max_block_size is None:
    max_block_size = max(2, min(1024, min(len(a), len(b)) // 10))
  if tfgan is None:
    return metric_formulas.kernel_distance(a, b, max_block_size)
  kid, std = tfgan.eval.kernel_classifier_distance_and_std_from_activations(
      tf.constant(a, tf.float64), tf.constant(b, tf.float64),
      max_block_size=max_block_size)
  return float(kid), float(std)


def conditional_accuracy(logits, labels, num_classes=None):
  """The fraction of samples drawn for class c whose classifier argmax is c.

  Meaningful only when the classifier's output c is the generator's class c (e.g. the
  digits classifier for an MNIST G; not Inception's 1008 outputs for an ImageNet G):
  `num_classes`, when given, must equal the classifier's output count.
  """
  logits = _as_2d("logits", logits)
  labels = np.asarray(labels)
  if labels.shape != (logits.shape[0],):
    raise ValueError(f"labels have shape {labels.shape}; expected ({logits.shape[0]},), "
                     "one class per sample.")
  width = logits.shape[1]
  if num_classes is not None and num_classes != width:
    raise ValueError(
        f"--conditional_accuracy needs a classifier whose outputs are the generator's "
        f"classes, but it has {width} outputs and the generator {num_classes} classes; "
        "pass a classifier trained on the generator's labels (--classifier_path) or "
        "drop --conditional_accuracy.")
  if labels.min() < 0 or labels.max() >= width:
    raise ValueError(f"labels span {labels.min()}..{labels.max()}, outside the "
                     f"classifier's {width} outputs; drop --conditional_accuracy.")
  return float(np.mean(np.argmax(logits, axis=1) == labels))
