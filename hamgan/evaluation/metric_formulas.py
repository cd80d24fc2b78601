"""FID, Inception Score and KID in float64 NumPy: hamgan's own implementation.

The same formulas as TF-GAN 2.1.0's `frechet_classifier_distance_from_activations`,
`classifier_score_from_logits` and `kernel_classifier_distance_and_std_from_activations`,
for stacks where TF-GAN does not import (it needs `tf.estimator`, gone in TF >= 2.16):

  FID  ||m1 - m2||^2 + tr(S1) + tr(S2) - 2 tr(sqrt(A S2 A)), A = sqrt(S1), S the
       unbiased (N - 1) covariances; each square root of a symmetric PSD matrix from
       its SVD, singular values under 1e-10 left as they are instead of rooted.
  IS   exp(mean_x KL(p(y|x) || p(y))), p(y) the mean of the softmaxes.
  KID  the unbiased MMD^2 with the kernel (x.y / D + 1)^3, averaged over equal blocks
       (the smaller blocks first), and its standard error (NaN for a single block).

Inputs are validated by `metrics`; these functions take (N, D) arrays and return floats.
"""
import numpy as np

# Singular values below this are not square-rooted (the root is unstable near 0).
SQRT_EPS = 1e-10


def _unbiased_covariance(x):
  centred = x - x.mean(axis=0)
  return centred.T @ centred / (len(x) - 1)


def symmetric_sqrt(mat):
  """The square root of a symmetric PSD matrix: U diag(sqrt(s)) V^T from its SVD."""
  u, s, vt = np.linalg.svd(mat)
  root = np.where(s < SQRT_EPS, s, np.sqrt(np.maximum(s, 0.0)))
  return (u * root) @ vt


def frechet_distance(real, generated):
  """FID between activation sets (N1, D) and (N2, D)."""
  real = np.asarray(real, np.float64)
  generated = np.asarray(generated, np.float64)
  sigma_r = _unbiased_covariance(real)
  sigma_g = _unbiased_covariance(generated)
  # tr(sqrt(S1 S2)) = tr(sqrt(A S2 A)) with A = sqrt(S1): the product stays symmetric.
  a = symmetric_sqrt(sigma_r)
  trace_sqrt = np.trace(symmetric_sqrt(a @ sigma_g @ a))
  mean_term = np.sum(np.square(real.mean(axis=0) - generated.mean(axis=0)))
  return float(mean_term + np.trace(sigma_r) + np.trace(sigma_g) - 2.0 * trace_sqrt)


def _log_softmax(logits):
  shifted = logits - logits.max(axis=1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def inception_score(logits):
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


def kernel_distance(real, generated, max_block_size):
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
