"""FID, Inception Score and KID from classifier outputs: the formulas, in one module.

Two implementations of the same formulas, side by side:

  - hamgan's own, in float64 NumPy (`*_float64` below): the same formulas as TF-GAN
    2.1.0's `frechet_classifier_distance_from_activations`, `classifier_score_from_logits`
    and `kernel_classifier_distance_and_std_from_activations`, for stacks where TF-GAN
    does not import (it needs `tf.estimator`, gone in TF >= 2.16):

      FID  ||m1 - m2||^2 + tr(S1) + tr(S2) - 2 tr(sqrt(A S2 A)), A = sqrt(S1), S the
           unbiased (N - 1) covariances; each square root of a symmetric PSD matrix
           from its SVD, singular values under 1e-10 left as they are instead of rooted.
           One function (`frechet_distance_from_moments`) and one square root
           (`symmetric_sqrt`) for every FID hamgan computes itself, from activations
           or from a statistics file's mu and sigma.
      IS   exp(mean_x KL(p(y|x) || p(y))), p(y) the mean of the softmaxes.
      KID  the unbiased MMD^2 with the kernel (x.y / D + 1)^3, averaged over equal
           blocks (the smaller blocks first), and its standard error (NaN for one block).

  - the public functions (`frechet_distance`, `inception_score`, `kernel_distance`, ...):
    they validate their inputs, then call TF-GAN where it imports (the `tpu` stack, TF
    2.15; float64 inside) and the float64 formulas elsewhere. `implementation_name()`
    says which one is in use, and every result row records it.

All public functions run eagerly on NumPy arrays or tensors and return Python floats.
FID uses the unbiased covariances of both activation sets; the Inception Score is
TF-GAN's single split over all samples, and we also give the customary 10-split mean
and standard deviation (Salimans et al.'s original code).

Metric names carry their protocol: `fid50k/imagenet2012-validation` is FID of 50,000
samples against the validation split of imagenet2012 (`scoring` builds the names).
"""
import numpy as np
import tensorflow as tf

try:
  import tensorflow_gan as tfgan  # pylint: disable=g-import-not-at-top
except (ImportError, AttributeError):  # not installed, or TF >= 2.16 (no tf.estimator)
  tfgan = None

# Singular values below this are not square-rooted (the root is unstable near 0).
SQRT_EPS = 1e-10


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


# ------------------------------------------------- the formulas in float64 NumPy

def _unbiased_covariance(x):
  centred = x - x.mean(axis=0)
  return centred.T @ centred / (len(x) - 1)


def symmetric_sqrt(mat):
  """The square root of a symmetric PSD matrix: U diag(sqrt(s)) V^T from its SVD."""
  u, s, vt = np.linalg.svd(mat)
  root = np.where(s < SQRT_EPS, s, np.sqrt(np.maximum(s, 0.0)))
  return (u * root) @ vt


def frechet_distance_from_moments(mu1, sigma1, mu2, sigma2):
  """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2)), in float64: hamgan's one FID.

  tr(sqrt(S1 S2)) is taken as tr(sqrt(A S2 A)) with A = sqrt(S1): the product stays
  symmetric, and both roots are `symmetric_sqrt`'s. Every FID hamgan computes itself
  comes from here: from activations (`frechet_distance_float64`, through their means
  and unbiased covariances) and from a statistics file's mu and sigma (`scoring`).
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  if mu1.shape != mu2.shape:
    raise ValueError(f"feature sizes differ: {mu1.shape} vs {mu2.shape}; use statistics "
                     "of the same classifier on both sides.")
  a = symmetric_sqrt(sigma1)
  trace_sqrt = np.trace(symmetric_sqrt(a @ sigma2 @ a))
  mean_term = np.sum(np.square(mu1 - mu2))
  return float(mean_term + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)


def frechet_distance_float64(real, generated):
  """FID between activation sets (N1, D) and (N2, D), from their moments."""
  real = np.asarray(real, np.float64)
  generated = np.asarray(generated, np.float64)
  return frechet_distance_from_moments(real.mean(axis=0), _unbiased_covariance(real),
                                       generated.mean(axis=0),
                                       _unbiased_covariance(generated))


def _log_softmax(logits):
  shifted = logits - logits.max(axis=1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def inception_score_float64(logits):
  """exp(E_x KL(p(y|x) || p(y))) over all rows of (N, classes) logits."""
  log_p = _log_softmax(np.asarray(logits, np.float64))
  p = np.exp(log_p)
  marginal = p.mean(axis=0)
  kl = np.sum(p * (log_p - np.log(marginal)), axis=1)
  return float(np.exp(kl.mean()))


def _block_bounds(n, num_blocks):
  """Start/end of `num_blocks` consecutive blocks of n rows, the smaller ones first."""
  base, extra = divmod(n, num_blocks)
  sizes = [base] * (num_blocks - extra) + [base + 1] * extra
  ends = np.cumsum(sizes)
  return list(zip(ends - sizes, ends))


def _mean_off_diagonal(kernel):
  m = len(kernel)
  return (kernel.sum() - np.trace(kernel)) / (m * (m - 1))


def kernel_distance_float64(real, generated, max_block_size):
  """(KID, standard error) with the block estimator over <= max_block_size rows."""
  real = np.asarray(real, np.float64)
  generated = np.asarray(generated, np.float64)
  dim = real.shape[1]
  num_blocks = int(np.ceil(max(len(real), len(generated)) / max_block_size))

  def kernel(x, y):
    return (x @ y.T / dim + 1.0) ** 3

  estimates = []
  for (r0, r1), (g0, g1) in zip(_block_bounds(len(real), num_blocks),
                                _block_bounds(len(generated), num_blocks)):
    r, g = real[r0:r1], generated[g0:g1]
    estimates.append(_mean_off_diagonal(kernel(r, r)) + _mean_off_diagonal(kernel(g, g))
                     - 2.0 * kernel(r, g).mean())
  estimates = np.asarray(estimates)
  if num_blocks <= 1:
    return float(estimates.mean()), float("nan")
  variance = np.sum(np.square(estimates - estimates.mean())) / (num_blocks - 1)
  return float(estimates.mean()), float(np.sqrt(variance / num_blocks))


# ------------------------------------------- checked inputs, TF-GAN where it imports

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
    return frechet_distance_float64(a, b)
  return float(tfgan.eval.frechet_classifier_distance_from_activations(
      tf.constant(a, tf.float64), tf.constant(b, tf.float64)))


def inception_score(logits):
  """TF-GAN's classifier score exp(E_x KL(p(y|x) || p(y))) over all samples."""
  logits = _as_2d("logits", logits)
  if tfgan is None:
    return inception_score_float64(logits)
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
    return kernel_distance_float64(a, b, max_block_size)
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


def intra_class_fid(real_features, real_labels, fake_features, fake_labels):
  """(mean, {class: FID}) over the classes with at least 2 samples on both sides."""
  per_class = {}
  for c in np.intersect1d(np.unique(real_labels), np.unique(fake_labels)):
    r, f = real_features[real_labels == c], fake_features[fake_labels == c]
    if len(r) >= 2 and len(f) >= 2:
      per_class[int(c)] = frechet_distance(r, f)
  if not per_class:
    raise ValueError("no class has at least 2 real and 2 generated samples; intra-class "
                     "FID needs more samples per class (or drop --intra_fid).")
  return float(np.mean(list(per_class.values()))), per_class
