"""The hams: matrix decompositions that recover a low-rank global context.

Each ham takes a batch of data matrices x of shape (B, D, N) (D channels, N pixels)
and initial bases (B, D, R), runs K optimisation steps of its decomposition and
returns (reconstruction (B, D, N), bases (B, D, R), coef (B, N, R)). The initial bases
are an argument, not drawn inside, so the algorithms can be checked against a
reference with the same start; `init_bases` draws them as the Hamburger layer does.

Gradients (docs/design.md, 'NMF ham'): with `one_step=True` the K steps run on
`tf.stop_gradient` inputs, so no tape or graph gradient records them and the backward
pass costs the same for any K; only one final coefficient update (and the
reconstruction) is differentiated. With `one_step=False` every step is
back-propagated (the paper's BPTT ablation).

Everything is batched matmul over (B, D, N) / (B, D, R) / (B, N, R) tensors: nothing is
ever N x N, shapes may be dynamic in B, and the functions compile under XLA. With
`channels_last=True` x (and the reconstruction) are (B, N, D) instead, the layout an
NHWC map reshapes to for free; the transpose flags of matmul absorb the difference.
"""
import collections
import numbers

import tensorflow as tf

from hamgan.validation import check_int

HAM_KINDS = ("nmf", "cd", "vq")

Factors = collections.namedtuple("Factors", ["bases", "coef", "xt_bases"])
Factors.__doc__ = """What a ham's `*_factors` function returns.

bases (B, D, R) and coef (B, N, R) with X ~ bases coef^T; xt_bases is X^T bases
(B, N, R) for the returned bases when the ham computed it on the way (NMF's last
coef update, CD's ridge solve), else None."""


def _l2n(v, axis):
  """v / max(||v||, 1e-6) along `axis` (rsqrt of the clipped squared norm)."""
  return tf.math.l2_normalize(v, axis=axis, epsilon=1e-12)


def _check_steps(steps):
  """The loop is unrolled in Python, so steps must be a plain integer."""
  check_int("ham", "steps", steps, minimum=0,
            hint="the number of decomposition iterations is unrolled when tracing, so "
            "pass a Python integer, e.g. steps=6.")


def _check_inputs(x, bases, channels_last):
  """Checks ranks, dtypes and the shared D; returns the layout helper."""
  layout = "(B, N, D)" if channels_last else "(B, D, N)"
  if x.shape.rank != 3 or bases.shape.rank != 3:
    raise ValueError(
        f"x of shape {x.shape} and bases of shape {bases.shape}: expected x {layout} "
        "and bases (B, D, R); reshape NHWC features to (B*S, H*W, D) and pass "
        "channels_last=True, or to (B*S, D, H*W).")
  lay = _Layout(channels_last)
  d_x, d_b = x.shape[lay.d_axis], bases.shape[1]
  if d_x is not None and d_b is not None and d_x != d_b:
    raise ValueError(
        f"x has D={d_x} (shape {x.shape}, layout {layout}) but bases have D={d_b}: "
        "expected the same D; check channels_last and the bases' shape.")
  if x.dtype != bases.dtype:
    raise ValueError(
        f"x dtype {x.dtype.name} and bases dtype {bases.dtype.name} differ: expected "
        "the same float dtype; cast both to float32 (the hams are fragile in low "
        "precision).")
  return lay


def init_bases(kind, batch, dim, rank, seed=None, dtype=tf.float32, normalize=True):
  """Draws initial bases (batch, dim, rank), L2-normalised over dim by default.

  NMF starts from Uniform[0, 1) (non-negative, as multiplicative updates need);
  CD and VQ from N(0, 1). `normalize=False` returns the raw draw (the official
  HamGAN TF code's NMF start; docs/design.md, 'Differences from the official
  code'). `batch` may be a tensor (dynamic batch). A `seed` makes
  the draw reproducible (stateless RNG): an int, or a shape-(2,) integer tensor
  (the stateless seed pair itself, e.g. read from a checkpointed variable); None
  draws fresh values every call.
  """
  if kind not in HAM_KINDS:
    raise ValueError(
        f"kind={kind!r}: expected one of {HAM_KINDS}; pick the ham whose bases to "
        "draw.")
  if isinstance(batch, int):
    shape = [batch, dim, rank]
  else:
    shape = tf.stack([tf.cast(batch, tf.int32), dim, rank])  # dynamic batch
  if seed is None:
    if kind == "nmf":
      b = tf.random.uniform(shape, dtype=dtype)
    else:
      b = tf.random.normal(shape, dtype=dtype)
  else:
    if isinstance(seed, numbers.Integral):
      pair = tf.constant([seed, 0], dtype=tf.int64)
    else:
      pair = tf.cast(seed, tf.int64)
      if pair.shape != [2]:
        raise ValueError(
            f"seed of shape {pair.shape}: expected an int or a shape-(2,) integer "
            "tensor (a stateless seed pair); pass e.g. seed=0 or tf.constant([0, 1]).")
    if kind == "nmf":
      b = tf.random.stateless_uniform(shape, seed=pair, dtype=dtype)
    else:
      b = tf.random.stateless_normal(shape, seed=pair, dtype=dtype)
  return _l2n(b, axis=1) if normalize else b


class _Layout:
  """The products the hams need, for x stored (B, D, N) or channels-last (B, N, D).

  Channels-last is what an NHWC feature map reshapes to without a copy; the
  matmul transpose flags absorb the difference, so neither layout transposes x.
  """

  def __init__(self, channels_last):
    self.channels_last = bool(channels_last)
    self.d_axis = 2 if self.channels_last else 1

  def xt_b(self, x, bases):
    """X^T bases, (B, N, R)."""
    return tf.matmul(x, bases, transpose_a=not self.channels_last)

  def x_c(self, x, coef):
    """X coef, (B, D, R)."""
    return tf.matmul(x, coef, transpose_a=self.channels_last)

  def recon(self, bases, coef):
    """bases coef^T in x's layout: (B, D, N), or (B, N, D) channels-last."""
    if self.channels_last:
      return tf.matmul(coef, bases, transpose_b=True)
    return tf.matmul(bases, coef, transpose_b=True)


def _nmf_coef_step(lay, x, bases, coef, eps, numer=None):
  """Multiplicative update of coef: coef * (X^T B) / (coef (B^T B) + eps).

  Returns (new coef, X^T B); `numer` is X^T B when the caller already has it.
  """
  if numer is None:
    numer = lay.xt_b(x, bases)  # (B, N, R)
  denom = tf.matmul(coef, tf.matmul(bases, bases, transpose_a=True))  # (B, N, R)
  return coef * numer / (denom + eps), numer


def _nmf_bases_step(lay, x, bases, coef, eps):
  """Multiplicative update of bases: B * (X coef) / (B (coef^T coef) + eps)."""
  numer = lay.x_c(x, coef)  # (B, D, R)
  denom = tf.matmul(bases, tf.matmul(coef, coef, transpose_a=True))  # (B, D, R)
  return bases * numer / (denom + eps)


def nmf(x, bases, steps, one_step=True, eps=1e-6, channels_last=False):
  """Non-negative matrix factorisation X ~ bases coef^T by multiplicative updates.

  x must be non-negative (the Hamburger layer applies the ReLU; none is applied
  here). Coef starts as softmax(X^T bases) over R; each of the `steps` iterations
  updates coef then bases; one more coef update carries the gradient.
  `channels_last=True` takes x as (B, N, D) and returns the reconstruction so.
  """
  bases, coef, _ = nmf_factors(x, bases, steps, one_step, eps, channels_last)
  return reconstruct(bases, coef, channels_last), bases, coef


def nmf_factors(x, bases, steps, one_step=True, eps=1e-6, channels_last=False):
  """`nmf` without the reconstruction: returns `Factors(bases, coef, xt_bases)`."""
  _check_steps(steps)
  lay = _check_inputs(x, bases, channels_last)
  if one_step:
    # Unrecorded iterations: the tape/graph never sees a path from x to these ops.
    x_it, bases = tf.stop_gradient(x), tf.stop_gradient(bases)
  else:
    x_it = x
  numer = lay.xt_b(x_it, bases)  # (B, N, R); the first coef update reuses it
  coef = tf.nn.softmax(numer, axis=-1)
  for _ in range(int(steps)):
    coef, _ = _nmf_coef_step(lay, x_it, bases, coef, eps, numer)
    bases = _nmf_bases_step(lay, x_it, bases, coef, eps)
    numer = None
  if one_step:
    bases, coef = tf.stop_gradient(bases), tf.stop_gradient(coef)
    numer = None  # it was taken from the stopped x: recompute it with the gradient
  coef, numer = _nmf_coef_step(lay, x, bases, coef, eps, numer)
  return Factors(bases, coef, numer)


CD_RIDGE = 0.1  # beta of CD's ridge solve (the PyTorch code's; the official TF uses 0.01)


def cd(x, bases, steps, one_step=True, temperature=0.01, beta=CD_RIDGE, eps=1e-6,
       channels_last=False):
  """Concept decomposition: spherical soft clustering, then a ridge solve for coef.

  Each step assigns normalised pixels to the bases by a sharp softmax, normalises
  the assignments per basis over N and sets each basis to the normalised weighted
  sum of pixels. The final coef = X^T B (B^T B + beta I)^-1 carries the gradient.
  `channels_last=True` takes x as (B, N, D) and returns the reconstruction so.
  """
  bases, coef, _ = cd_factors(x, bases, steps, one_step, temperature, beta, eps,
                              channels_last)
  return reconstruct(bases, coef, channels_last), bases, coef


def cd_factors(x, bases, steps, one_step=True, temperature=0.01, beta=CD_RIDGE, eps=1e-6,
               channels_last=False):
  """`cd` without the reconstruction: returns `Factors(bases, coef, xt_bases)`."""
  _check_steps(steps)
  lay = _check_inputs(x, bases, channels_last)
  x_it = tf.stop_gradient(x) if one_step else x
  bases = tf.stop_gradient(bases) if one_step else bases
  xn = _l2n(x_it, axis=lay.d_axis)
  for _ in range(int(steps)):
    coef = tf.nn.softmax(lay.xt_b(xn, bases) / temperature, axis=-1)  # (B, N, R)
    coef = coef / (tf.reduce_sum(coef, axis=1, keepdims=True) + eps)
    bases = _l2n(lay.x_c(x_it, coef), axis=1)  # (B, D, R)
  if one_step:
    bases = tf.stop_gradient(bases)
  gram = tf.matmul(bases, bases, transpose_a=True)  # (B, R, R)
  gram += beta * tf.eye(tf.shape(gram)[-1], dtype=gram.dtype)  # symmetric PD
  eye = tf.broadcast_to(tf.eye(tf.shape(gram)[-1], dtype=gram.dtype), tf.shape(gram))
  inverse = tf.linalg.cholesky_solve(tf.linalg.cholesky(gram), eye)  # R x R only
  xt_bases = lay.xt_b(x, bases)
  return Factors(bases, tf.matmul(xt_bases, inverse), xt_bases)  # coef (B, N, R)


def _vq_assign(lay, x, bases, temperature, x_normalized=False):
  """softmax over R of cos(pixel, basis) / T, shape (B, N, R).

  Pixel norms divide the (B, N, R) products rather than x itself, so no normalised
  copy of x is made (or kept for the backward pass); pass `x_normalized=True` when
  the pixels already have unit norm.
  """
  cos = lay.xt_b(x, _l2n(bases, axis=1))
  if not x_normalized:
    sq = tf.reduce_sum(tf.square(x), axis=lay.d_axis)  # (B, N)
    cos *= tf.math.rsqrt(tf.maximum(sq, 1e-12))[..., None]
  return tf.nn.softmax(cos / temperature, axis=-1)


def vq(x, bases, steps, one_step=True, temperature=0.01, eps=1e-6,
       channels_last=False):
  """Vector quantisation by soft k-means with cosine similarity.

  Each step soft-assigns pixels to bases and moves every basis to the
  assignment-weighted mean of the pixels; the final assignment carries the gradient.
  `channels_last=True` takes x as (B, N, D) and returns the reconstruction so.
  """
  bases, coef, _ = vq_factors(x, bases, steps, one_step, temperature, eps, channels_last)
  return reconstruct(bases, coef, channels_last), bases, coef


def vq_factors(x, bases, steps, one_step=True, temperature=0.01, eps=1e-6,
               channels_last=False):
  """`vq` without the reconstruction: returns `Factors(bases, coef, None)`."""
  _check_steps(steps)
  lay = _check_inputs(x, bases, channels_last)
  x_it = tf.stop_gradient(x) if one_step else x
  bases = tf.stop_gradient(bases) if one_step else bases
  xn = _l2n(x_it, axis=lay.d_axis) if steps else None  # once, not per step
  for _ in range(int(steps)):
    coef = _vq_assign(lay, xn, bases, temperature, x_normalized=True)
    coef = coef / (tf.reduce_sum(coef, axis=1, keepdims=True) + eps)
    bases = lay.x_c(x_it, coef)  # (B, D, R)
  if one_step:
    bases = tf.stop_gradient(bases)
  return Factors(bases, _vq_assign(lay, x, bases, temperature), None)


def reconstruct(bases, coef, channels_last=False):
  """bases coef^T: (B, D, N), or (B, N, D) with `channels_last`."""
  return _Layout(channels_last).recon(bases, coef)


def squared_errors(x, bases, coef, channels_last=False, xt_bases=None):
  """(||X - bases coef^T||_F^2, ||X||_F^2) summed over the batch, never forming the product.

  Per pixel n, ||x_n - B c_n||^2 = ||x_n||^2 - 2 c_n . (B^T x_n) + c_n . (B^T B) c_n:
  N x R and R x R terms only, so a caller that never needs the reconstruction (the
  Hamburger feeds coef straight into its upper bread) skips the (B, D, N) tensor. The
  expansion cancels when the fit is good; done per pixel, its rounding is independent
  from pixel to pixel and averages out in the sum, which then adds small non-negative
  terms (about 2e-6 relative at a 3% relative error, where one global expansion gave
  1e-4). Float32 throughout, so it runs on TPUs. `xt_bases`, X^T bases from the ham's
  `Factors`, saves recomputing that product.
  """
  lay = _Layout(channels_last)
  if xt_bases is None:
    xt_bases = lay.xt_b(x, bases)  # (B, N, R)
  pixel_norms = tf.reduce_sum(tf.square(x), axis=lay.d_axis)  # (B, N)
  fitted = tf.matmul(coef, tf.matmul(bases, bases, transpose_a=True))  # (B, N, R)
  per_pixel = pixel_norms + tf.reduce_sum(coef * (fitted - 2.0 * xt_bases), axis=-1)
  return tf.maximum(tf.reduce_sum(per_pixel), 0.0), tf.reduce_sum(pixel_norms)


FACTORS = {"nmf": nmf_factors, "cd": cd_factors, "vq": vq_factors}
