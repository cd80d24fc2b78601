"""Tests for hamgan.layers.hams against an independent NumPy reference.

The reference follows docs/design.md, 'The hams', 'NMF ham', 'CD ham' and 'VQ ham'.

The reference below is written from the design text alone (float64, einsum, explicit
inverse) and shares no code with the TensorFlow implementation.
"""
import numpy as np
import pytest
import tensorflow as tf

from hamgan.layers import hams

EPS = 1e-6


# ----------------------------------------------------------------------------------
# Independent NumPy reference (per batch of matrices X (B, D, N), bases (B, D, R)).
# ----------------------------------------------------------------------------------
def np_l2n(v, axis):
  return v / np.maximum(np.sqrt(np.sum(v * v, axis=axis, keepdims=True)), 1e-6)


def np_softmax(a):
  a = a - a.max(axis=-1, keepdims=True)
  e = np.exp(a)
  return e / e.sum(axis=-1, keepdims=True)


def np_nmf_coef(x, b, c):
  return c * np.einsum("bdn,bdr->bnr", x, b) / (
      np.einsum("bnk,bdk,bdr->bnr", c, b, b) + EPS)


def np_nmf_iterate(x, b, steps):
  """Returns (bases, coef) after `steps` multiplicative iterations."""
  c = np_softmax(np.einsum("bdn,bdr->bnr", x, b))
  for _ in range(steps):
    c = np_nmf_coef(x, b, c)
    b = b * np.einsum("bdn,bnr->bdr", x, c) / (
        np.einsum("bdk,bnk,bnr->bdr", b, c, c) + EPS)
  return b, c


def np_nmf_final(x, b, c):
  c = np_nmf_coef(x, b, c)
  return np.einsum("bdr,bnr->bdn", b, c), b, c


def np_nmf(x, b, steps):
  return np_nmf_final(x, *np_nmf_iterate(x, b, steps))


def np_cd_iterate(x, b, steps, t=0.01):
  xn = np_l2n(x, 1)
  for _ in range(steps):
    c = np_softmax(np.einsum("bdn,bdr->bnr", xn, b) / t)
    c = c / (c.sum(axis=1, keepdims=True) + EPS)
    b = np_l2n(np.einsum("bdn,bnr->bdr", x, c), 1)
  return b, None


def np_cd_final(x, b, _, beta=0.1):
  r = b.shape[-1]
  inv = np.linalg.inv(np.einsum("bdr,bds->brs", b, b) + beta * np.eye(r))
  c = np.einsum("bdn,bdr,brs->bns", x, b, inv)
  return np.einsum("bdr,bnr->bdn", b, c), b, c


def np_cd(x, b, steps, t=0.01):
  return np_cd_final(x, *np_cd_iterate(x, b, steps, t))


def np_vq_assign(x, b, t=0.01):
  return np_softmax(np.einsum("bdn,bdr->bnr", np_l2n(x, 1), np_l2n(b, 1)) / t)


def np_vq_iterate(x, b, steps, t=0.01):
  for _ in range(steps):
    c = np_vq_assign(x, b, t)
    c = c / (c.sum(axis=1, keepdims=True) + EPS)
    b = np.einsum("bdn,bnr->bdr", x, c)
  return b, None


def np_vq_final(x, b, _, t=0.01):
  c = np_vq_assign(x, b, t)
  return np.einsum("bdr,bnr->bdn", b, c), b, c


def np_vq(x, b, steps, t=0.01):
  return np_vq_final(x, *np_vq_iterate(x, b, steps, t), t)


REF = {
    "nmf": (np_nmf, np_nmf_iterate, np_nmf_final),
    "cd": (np_cd, np_cd_iterate, np_cd_final),
    "vq": (np_vq, np_vq_iterate, np_vq_final),
}


def _data(kind, rng, b=2, d=16, n=24, r=4, dtype=np.float32):
  """Random X (non-negative for NMF) and initial bases drawn as docs/design.md says."""
  if kind == "nmf":
    x = rng.uniform(size=(b, d, n))
    bases = rng.uniform(size=(b, d, r))
  else:
    x = rng.normal(size=(b, d, n))
    bases = rng.normal(size=(b, d, r))
  return x.astype(dtype), np_l2n(bases, 1).astype(dtype)


def _rel(a, b):
  return np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b)


def _num_grad(f, x, h=1e-6):
  """Central-difference gradient of the scalar f at x (float64)."""
  g = np.zeros_like(x)
  it = np.nditer(x, flags=["multi_index"])
  for _ in it:
    i = it.multi_index
    xp, xm = x.copy(), x.copy()
    xp[i] += h
    xm[i] -= h
    g[i] = (f(xp) - f(xm)) / (2 * h)
  return g


# ----------------------------------------------------------------------------------
# 1. Forward equals the reference.
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["nmf", "cd", "vq"])
@pytest.mark.parametrize("one_step", [True, False])
def test_forward_matches_numpy_reference(kind, one_step):
  rng = np.random.default_rng(0)
  x, b0 = _data(kind, rng)
  recon, bases, coef = getattr(hams, kind)(
      tf.constant(x), tf.constant(b0), steps=6, one_step=one_step)
  ref_recon, ref_bases, ref_coef = REF[kind][0](
      x.astype(np.float64), b0.astype(np.float64), 6)
  assert recon.shape == (2, 16, 24) and bases.shape == (2, 16, 4)
  assert coef.shape == (2, 24, 4)
  assert _rel(recon, ref_recon) < 1e-4
  assert _rel(bases, ref_bases) < 1e-4
  assert _rel(coef, ref_coef) < 1e-4


@pytest.mark.parametrize("kind", ["nmf", "cd", "vq"])
def test_factors_and_squared_errors_without_the_reconstruction(kind):
  """FACTORS equal the hams' bases and coef; the error needs no reconstruction."""
  rng = np.random.default_rng(3)
  x, b0 = _data(kind, rng)
  recon, bases, coef = getattr(hams, kind)(tf.constant(x), tf.constant(b0), steps=6)
  f_bases, f_coef, xt_bases = hams.FACTORS[kind](tf.constant(x), tf.constant(b0), steps=6)
  np.testing.assert_array_equal(f_bases.numpy(), bases.numpy())
  np.testing.assert_array_equal(f_coef.numpy(), coef.numpy())
  if xt_bases is not None:  # the by-product is X^T bases for the returned bases
    np.testing.assert_allclose(xt_bases.numpy(), np.einsum("bdn,bdr->bnr", x, bases),
                               rtol=1e-4, atol=1e-5)
    err_reused, _ = hams.squared_errors(tf.constant(x), bases, coef, xt_bases=xt_bases)
  # The Gram expansion against the error of the explicit float64 product.
  x64, b64, c64 = (t.astype(np.float64) for t in (x, bases.numpy(), coef.numpy()))
  expected = np.sum((x64 - np.einsum("bdr,bnr->bdn", b64, c64)) ** 2)
  err, total = hams.squared_errors(tf.constant(x), bases, coef)
  np.testing.assert_allclose(total.numpy(), np.sum(x64 ** 2), rtol=1e-6)
  np.testing.assert_allclose(err.numpy(), expected, rtol=1e-4)
  if xt_bases is not None:
    np.testing.assert_allclose(err_reused.numpy(), expected, rtol=1e-4)
  # Channels-last input, and an exact factorisation whose error is ~0, not negative.
  err_cl, _ = hams.squared_errors(tf.constant(np.swapaxes(x, 1, 2)), bases, coef,
                                  channels_last=True)
  np.testing.assert_allclose(err_cl.numpy(), expected, rtol=1e-4)
  exact = np.einsum("bdr,bnr->bdn", b64, c64).astype(np.float32)
  err0, total0 = hams.squared_errors(tf.constant(exact), bases, coef)
  assert 0.0 <= err0.numpy() <= 1e-5 * total0.numpy()


def test_squared_errors_keep_precision_when_the_fit_is_good():
  """A 1% relative error: the expansion cancels ~99.99% of ||X||^2 and must still be
  accurate to 1e-4 (one global float32 expansion was 3e-3 off here)."""
  rng = np.random.default_rng(5)
  b64 = rng.uniform(size=(16, 64, 16))
  c64 = rng.uniform(size=(16, 1024, 16))
  exact = np.einsum("bdr,bnr->bnd", b64, c64)
  x = (exact * (1 + 0.01 * rng.normal(size=exact.shape))).astype(np.float32)
  bases, coef = b64.astype(np.float32), c64.astype(np.float32)
  expected = np.sum((x.astype(np.float64) -
                     np.einsum("bdr,bnr->bnd", bases.astype(np.float64), coef)) ** 2)
  err, total = hams.squared_errors(tf.constant(x), tf.constant(bases), tf.constant(coef),
                                   channels_last=True)
  assert 5e-5 < expected / total.numpy() < 2e-4  # the regime this test is about
  np.testing.assert_allclose(err.numpy(), expected, rtol=1e-4)


@pytest.mark.parametrize("kind", ["nmf", "cd", "vq"])
@pytest.mark.parametrize("one_step", [True, False])
def test_channels_last_layout_gives_the_same_values_and_gradients(kind, one_step):
  rng = np.random.default_rng(8)
  x, b0 = _data(kind, rng, b=2, d=8, n=12, r=3, dtype=np.float64)
  w = rng.normal(size=x.shape)
  out = {}
  for channels_last in (False, True):
    xt = tf.constant(np.transpose(x, (0, 2, 1)) if channels_last else x)  # (B, N, D)
    with tf.GradientTape() as tape:
      tape.watch(xt)
      recon, bases, coef = getattr(hams, kind)(xt, tf.constant(b0), 4, one_step=one_step,
                                           channels_last=channels_last)
      if channels_last:
        recon = tf.transpose(recon, [0, 2, 1])  # back to (B, D, N)
      loss = tf.reduce_sum(recon * w)
    grad = tape.gradient(loss, xt).numpy()
    if channels_last:
      grad = np.transpose(grad, (0, 2, 1))
    out[channels_last] = (recon.numpy(), bases.numpy(), coef.numpy(), grad)
  ref = REF[kind][0](x, b0, 4)
  assert _rel(out[True][0], ref[0]) < 1e-8  # channels-last still matches the reference
  for first, second in zip(out[False], out[True]):
    assert _rel(second, first) < 1e-8


@pytest.mark.parametrize("kind", ["nmf", "cd", "vq"])
def test_forward_under_xla_with_dynamic_batch(kind):
  rng = np.random.default_rng(1)
  x, b0 = _data(kind, rng, b=3)
  spec = [tf.TensorSpec([None, 16, 24]), tf.TensorSpec([None, 16, 4])]
  fn = tf.function(lambda a, b: getattr(hams, kind)(a, b, 6)[0],
                   input_signature=spec, jit_compile=True)
  for batch in (3, 1):
    got = fn(x[:batch], b0[:batch]).numpy()
    ref = REF[kind][0](x[:batch].astype(np.float64), b0[:batch].astype(np.float64),
                       6)[0]
    assert _rel(got, ref) < 1e-4


# ----------------------------------------------------------------------------------
# 2. Gradients.
# ----------------------------------------------------------------------------------
# A softer temperature than the default 0.01 for the gradient checks of CD / VQ:
# at 0.01 the softmax saturates on random data and every gradient is ~0.
GRAD_T = 0.3


def _tf_grad(kind, x, b0, w, steps, one_step):
  xt = tf.constant(x)
  kw = {} if kind == "nmf" else {"temperature": GRAD_T}
  with tf.GradientTape() as tape:
    tape.watch(xt)
    recon, _, _ = getattr(hams, kind)(
        xt, tf.constant(b0), steps, one_step=one_step, **kw)
    loss = tf.reduce_sum(recon * w)
  return tape.gradient(loss, xt).numpy()


def test_nmf_one_step_gradient_equals_last_update_gradient():
  """One-step: the gradient is that of the final coef update with bases/coef fixed.

  Computed another way: the K steps run in NumPy, then the closed form of
  d/dX sum(W * B (C * X^T B / Den)^T) = B ((W^T B) * C / Den)^T.
  """
  rng = np.random.default_rng(2)
  x, b0 = _data("nmf", rng, b=2, d=8, n=12, r=3, dtype=np.float64)
  w = rng.normal(size=x.shape)
  got = _tf_grad("nmf", x, b0, w, 5, one_step=True)
  bk, ck = np_nmf_iterate(x, b0, 5)
  den = np.einsum("bnk,bdk,bdr->bnr", ck, bk, bk) + EPS
  g = np.einsum("bdn,bdr->bnr", w, bk) * ck / den  # dL / d(X^T B), (B, N, R)
  expected = np.einsum("bdr,bnr->bdn", bk, g)
  assert _rel(got, expected) < 1e-8


@pytest.mark.parametrize("kind", ["nmf", "cd", "vq"])
def test_one_step_gradient_equals_finite_difference_of_final_step(kind):
  rng = np.random.default_rng(3)
  x, b0 = _data(kind, rng, b=1, d=6, n=10, r=3, dtype=np.float64)
  w = rng.normal(size=x.shape)
  got = _tf_grad(kind, x, b0, w, 4, one_step=True)
  _, iterate, final = REF[kind]
  if kind == "nmf":
    bk, ck = iterate(x, b0, 4)  # held fixed: no gradient through the iterations
    expected = _num_grad(lambda v: np.sum(final(v, bk, ck)[0] * w), x)
  elif kind == "cd":
    bk, ck = iterate(x, b0, 4, GRAD_T)
    expected = _num_grad(lambda v: np.sum(final(v, bk, ck)[0] * w), x)
  else:
    bk, ck = iterate(x, b0, 4, GRAD_T)
    expected = _num_grad(lambda v: np.sum(final(v, bk, ck, GRAD_T)[0] * w), x)
  assert np.abs(expected).max() > 1e-3  # a gradient that is really there
  assert _rel(got, expected) < 1e-6


@pytest.mark.parametrize("kind", ["nmf", "cd", "vq"])
def test_bptt_gradient_equals_unrolled_finite_difference(kind):
  """one_step=False differentiates every step; one_step=True differs from it."""
  rng = np.random.default_rng(4)
  x, b0 = _data(kind, rng, b=1, d=6, n=10, r=3, dtype=np.float64)
  w = rng.normal(size=x.shape)
  full = _tf_grad(kind, x, b0, w, 4, one_step=False)
  kw = {} if kind == "nmf" else {"t": GRAD_T}
  expected = _num_grad(lambda v: np.sum(REF[kind][0](v, b0, 4, **kw)[0] * w), x)
  assert np.abs(expected).max() > 1e-3
  assert _rel(full, expected) < 1e-6
  one = _tf_grad(kind, x, b0, w, 4, one_step=True)
  assert _rel(one, full) > 1e-2


def _backward_op_count(steps, one_step):
  @tf.function
  def grad(x, b):
    with tf.GradientTape() as tape:
      tape.watch(x)
      recon, _, _ = hams.nmf(x, b, steps, one_step=one_step)
      loss = tf.reduce_sum(recon * recon)
    return tape.gradient(loss, x)
  graph = grad.get_concrete_function(
      tf.TensorSpec([None, 8, 16]), tf.TensorSpec([None, 8, 4])).graph
  return sum(1 for op in graph.get_operations() if "gradient_tape" in op.name)


def test_one_step_backward_graph_does_not_grow_with_steps():
  assert _backward_op_count(1, True) == _backward_op_count(12, True)
  assert _backward_op_count(12, False) > 2 * _backward_op_count(1, False)


# ----------------------------------------------------------------------------------
# 3. NMF behaves as a decomposition.
# ----------------------------------------------------------------------------------
def test_nmf_error_never_rises_between_steps():
  rng = np.random.default_rng(5)
  x, b0 = _data("nmf", rng, b=2, d=12, n=20, r=4, dtype=np.float64)
  errors = []
  for k in range(25):
    recon, _, _ = hams.nmf(tf.constant(x), tf.constant(b0), k)
    errors.append(np.linalg.norm(recon.numpy() - x))
  errors = np.array(errors)
  assert np.all(np.diff(errors) <= 1e-12 * errors[:-1])
  assert errors[-1] < 0.9 * errors[0]  # and it actually descends


def test_nmf_recovers_low_rank_data():
  rng = np.random.default_rng(6)
  d, n, r = 32, 64, 4
  w_true = rng.uniform(size=(2, d, r))
  h_true = rng.uniform(size=(2, r, n))
  x = np.einsum("bdr,brn->bdn", w_true, h_true)
  x = (x + 0.01 * rng.uniform(size=x.shape)).astype(np.float32)
  b0 = hams.init_bases("nmf", 2, d, r, seed=7)
  rel = {}
  for steps in (6, 500):
    recon, _, _ = hams.nmf(tf.constant(x), b0, steps)
    rel[steps] = _rel(recon, x)
  assert rel[500] < 0.05
  assert rel[500] < rel[6]  # 6 steps is the early-stopped, rougher solution


# ----------------------------------------------------------------------------------
# Initial bases and argument checks.
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["nmf", "cd", "vq"])
def test_init_bases_shapes_norms_and_signs(kind):
  b = hams.init_bases(kind, 5, 16, 8, seed=3).numpy()
  assert b.shape == (5, 16, 8)
  np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, rtol=1e-5)
  if kind == "nmf":
    assert b.min() >= 0.0
  else:
    assert (b < 0).mean() > 0.3  # normal draws have both signs
  again = hams.init_bases(kind, 5, 16, 8, seed=3).numpy()
  np.testing.assert_array_equal(b, again)
  fresh = hams.init_bases(kind, 5, 16, 8).numpy()
  assert np.abs(fresh - b).max() > 1e-3
  dyn = hams.init_bases(kind, tf.constant(2), 16, 8)
  assert dyn.shape == (2, 16, 8)


def test_bad_arguments_raise_value_errors():
  x = tf.ones([2, 4, 6])
  b = tf.ones([2, 4, 3])
  with pytest.raises(ValueError, match="kind='svd'"):
    hams.init_bases("svd", 2, 4, 3)
  with pytest.raises(ValueError, match="steps=-1"):
    hams.nmf(x, b, -1)
  with pytest.raises(ValueError, match=r"expected x \(B, D, N\)"):
    hams.vq(tf.ones([2, 4, 2, 3]), b, 2)
  with pytest.raises(ValueError, match="float64"):
    hams.cd(tf.ones([2, 4, 6], tf.float64), b, 2)
  with pytest.raises(ValueError, match=r"x has D=6 .* bases have D=4"):
    hams.nmf(x, b, 2, channels_last=True)  # x is (B, D, N) but was declared (B, N, D)
