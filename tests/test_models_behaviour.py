"""Tests of hamgan.models, behaviour: conditioning, the context's residual scale, mixed
precision, XLA against eager, checkpoints, and a per-context training smoke test
(layouts, blocks and arguments: test_models.py)."""
import re

import numpy as np
import pytest
import tensorflow as tf

from hamgan.layers.registry import CONTEXT_NAMES
from hamgan.models import Discriminator, Generator
from test_models import SMALL, _inputs, _residual_scales, _spy_on_context, _tiny


# ---------------------------------------------------------------------------
# Conditioning and the context's residual scale.


def test_labels_condition_generator_per_example():
  g = Generator(context="none", **SMALL)
  z, _, _ = _inputs(2)
  g((z, tf.constant([0, 0])))
  # Fresh class tables are all gamma=1, beta=0, so classes only differ once trained;
  # give every class its own scale and offset.
  rng = np.random.default_rng(3)
  for v in g.trainable_variables:
    if "cbn" in v.name:
      v.assign(v + rng.normal(0, 0.3, v.shape).astype(np.float32))
  a = g((z, tf.constant([0, 1])), training=False).numpy()
  b = g((z, tf.constant([0, 2])), training=False).numpy()
  # Inference BN is per example: relabelling example 1 leaves example 0 unchanged.
  np.testing.assert_array_equal(a[0], b[0])
  assert np.abs(a[1] - b[1]).mean() > 1e-3


def test_labels_condition_discriminator_only_through_projection():
  d = Discriminator(context="none", **SMALL)
  _, x, _ = _inputs(1)
  logits = np.array([d((x, tf.constant([c])), training=False).numpy()[0] for c in range(5)])
  assert np.ptp(logits) > 1e-4
  table = d.embedding.embeddings
  saved = table.numpy()
  table.assign(tf.zeros_like(saved))
  flat = np.array([d((x, tf.constant([c])), training=False).numpy()[0] for c in range(5)])
  table.assign(saved)
  np.testing.assert_allclose(flat, flat[0], rtol=0, atol=0)
  # The projection is the whole class dependence: the logit is affine in the row.
  h = tf.reduce_sum(tf.nn.relu(_features(d, x)), axis=[1, 2])[0].numpy()
  rows = d.embedding(tf.range(5), training=False).numpy()
  np.testing.assert_allclose(logits - flat, rows @ h, rtol=1e-4, atol=1e-4)


def _features(d, x):
  """D's last feature map, recomputed block by block (no context in this model)."""
  h = x
  for block in d.blocks:
    h = block(h, training=False)
  return h


@pytest.mark.parametrize("context", [c for c in CONTEXT_NAMES if c != "none"])
def test_context_adds_nothing_until_its_residual_scale_moves(context, monkeypatch):
  g = Generator(context=context, **SMALL)
  d = Discriminator(context=context, **SMALL)
  g_calls = _spy_on_context(g, monkeypatch)
  d_calls = _spy_on_context(d, monkeypatch)
  z, x, y = _inputs(4)
  before_g = g((z, y), training=False)
  before_d = d((x, y), training=False)
  assert [float(s) for s in _residual_scales(g, d)] == [0.0, 0.0]
  for x_in, out in g_calls + d_calls:
    np.testing.assert_array_equal(out.numpy(), x_in.numpy())
  for s in _residual_scales(g, d):
    s.assign(0.5)
  after_g = g((z, y), training=False)
  after_d = d((x, y), training=False)
  for x_in, out in g_calls[1:] + d_calls[1:]:
    assert np.abs(out.numpy() - x_in.numpy()).mean() > 1e-4
  assert np.abs(after_g.numpy() - before_g.numpy()).mean() > 1e-5
  assert np.abs(after_d.numpy() - before_d.numpy()).max() > 1e-5


# ---------------------------------------------------------------------------
# Precision, XLA, checkpoints.


def _copy_weights(src, dst):
  for a, b in zip(src.weights, dst.weights):
    assert re.sub(r"_\d+/", "/", a.name) == re.sub(r"_\d+/", "/", b.name)
    b.assign(a)


@pytest.mark.parametrize("context", CONTEXT_NAMES)
def test_mixed_bfloat16_outputs_float32_close_to_float32(context):
  z, x, y = _inputs(4)
  g32, d32 = _tiny(context)
  g32((z, y)), d32((x, y))
  for s in _residual_scales(g32, d32):
    s.assign(0.5)
  tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
  g16, d16 = _tiny(context)
  g16((z, y)), d16((x, y))
  _copy_weights(g32, g16)
  _copy_weights(d32, d16)
  # VQ's sharp softmax (temperature 0.01) turns bfloat16 rounding of its inputs into
  # visibly different assignments: its mean error ranged 0.036-0.054 over 4 seeds.
  bound = 0.08 if context == "ham_vq" else 0.05
  for training in (True, False):
    # The copied weights include each Hamburger's seed counter: both models draw the
    # same bases.
    images = g16((z, y), training=training)
    logits = d16((images, y), training=training)
    assert images.dtype == tf.float32 and logits.dtype == tf.float32
    ref_images = g32((z, y), training=training)
    ref_logits = d32((ref_images, y), training=training)
    assert np.isfinite(images.numpy()).all() and np.isfinite(logits.numpy()).all()
    assert np.abs(images.numpy() - ref_images.numpy()).mean() < bound
    scale = np.abs(ref_logits.numpy()).mean() + 1.0
    assert np.abs(logits.numpy() - ref_logits.numpy()).max() < 0.1 * scale


@pytest.mark.slow  # about a minute on 2 shared cores: one XLA compile of G and D
def test_jit_compile_matches_eager():
  # Deterministic contexts, so that XLA and eager outputs can be compared.
  g = Generator(context="sagan", **SMALL)
  d = Discriminator(context="ylg", **SMALL)
  z, x, y = _inputs(4)
  for s in _residual_scales(g, d):
    s.assign(0.5)  # open the context branches, so their gradients are not zero
  eager_images = g((z, y), training=False)
  eager_logits = d((x, y), training=False)
  variables = g.variables + d.variables
  trainable = g.trainable_variables + d.trainable_variables

  def train_grads(z, y):
    with tf.GradientTape() as tape:
      loss = -tf.reduce_mean(d((g((z, y), training=True), y), training=True))
    return loss, tape.gradient(loss, trainable)

  # The training calls move the SN vectors and BN statistics: start both routes alike.
  start = [v.numpy() for v in variables]
  eager_loss, eager_grads = train_grads(z, y)
  for v, value in zip(variables, start):
    v.assign(value)

  @tf.function(jit_compile=True)
  def infer_and_train_grads(z, x, y):
    images, logits = g((z, y), training=False), d((x, y), training=False)
    return (images, logits) + train_grads(z, y)

  images, logits, loss, grads = infer_and_train_grads(z, x, y)
  np.testing.assert_allclose(images.numpy(), eager_images.numpy(), atol=1e-4)
  np.testing.assert_allclose(logits.numpy(), eager_logits.numpy(), rtol=1e-3, atol=1e-3)
  np.testing.assert_allclose(loss.numpy(), eager_loss.numpy(), rtol=1e-3, atol=1e-4)
  assert len(grads) == len(eager_grads) == len(trainable)
  got = [tf.convert_to_tensor(t).numpy() for t in grads]
  want = [tf.convert_to_tensor(t).numpy() for t in eager_grads]
  # Per variable, relative to the gradient's norm, floored at 0.1% of the largest one
  # (a conv bias before a batch norm has a zero gradient up to rounding): XLA fuses
  # and orders the sums differently (measured: at most 0.2% of the largest entry).
  floor = 1e-3 * max(np.linalg.norm(w) for w in want)
  for v, a, b in zip(trainable, got, want):
    error = np.linalg.norm(a - b) / max(np.linalg.norm(b), floor)
    assert error < 5e-3, (v.name, error)


def test_checkpoint_restores_weights_and_state(tmp_path):
  z, x, y = _inputs(4)
  g = Generator(context="ham_nmf", **SMALL)
  d = Discriminator(context="sagan", **SMALL)
  for _ in range(2):  # move the SN vectors and BN statistics away from their init
    d((g((z, y), training=True), y), training=True)
  for s in _residual_scales(g, d):
    s.assign(0.7)
  path = tf.train.Checkpoint(generator=g, discriminator=d).save(str(tmp_path / "ckpt"))
  g2 = Generator(context="ham_nmf", **SMALL)
  d2 = Discriminator(context="sagan", **SMALL)
  g2((z, y), training=False), d2((x, y), training=False)  # build, then overwrite
  tf.train.Checkpoint(generator=g2, discriminator=d2).restore(path).assert_consumed()
  tf.random.set_seed(5)  # the Hamburger draws fresh bases on every call
  a_img = g((z, y), training=False)
  tf.random.set_seed(5)
  b_img = g2((z, y), training=False)
  np.testing.assert_allclose(b_img.numpy(), a_img.numpy(), atol=1e-6)
  np.testing.assert_array_equal(d2((x, y), training=False).numpy(),
                                d((x, y), training=False).numpy())
  for a, b in zip(g.weights + d.weights, g2.weights + d2.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


# ---------------------------------------------------------------------------
# Every context: gradients reach every variable, and D overfits a fixed batch.


def _redundant_biases(g):
  """G's biases that feed straight into a training-mode BN (their gradient is 0 there)."""
  names = {b.conv1.bias.name for b in g.blocks}
  last = g.blocks[-1]
  context_after_last = g.context_resolution == g.image_size  # a context there mixes pixels
  if g.context_layer is None or not context_after_last:
    names |= {last.conv2.bias.name, last.shortcut.bias.name}
  return names


def _hinge_d(d_real, d_fake):
  return tf.reduce_mean(tf.nn.relu(1.0 - d_real)) + tf.reduce_mean(tf.nn.relu(1.0 + d_fake))


def _fixed_images(n=16, size=32):
  """Smooth coloured patterns, one per example, in [-1, 1]."""
  rng = np.random.default_rng(7)
  u = np.linspace(0, 2 * np.pi, size)
  freq = rng.uniform(0.5, 3, (n, 1, 1, 3))
  phase = rng.uniform(0, 2 * np.pi, (n, 1, 1, 3))
  img = np.sin(freq * u[None, :, None, None] + phase) * np.cos(freq * u[None, None, :, None])
  return tf.constant(img, tf.float32)


@pytest.mark.parametrize("context", CONTEXT_NAMES)
def test_every_variable_learns_and_d_overfits_a_batch(context):
  g, d = _tiny(context)
  z, _, y = _inputs(16)
  x = _fixed_images()
  g((z, y)), d((x, y))
  for s in _residual_scales(g, d):
    s.assign(0.5)

  for training in (True, False):
    with tf.GradientTape(persistent=True) as tape:
      fake = g((z, y), training=training)
      d_loss = _hinge_d(d((x, y), training=training), d((fake, y), training=training))
      g_loss = -tf.reduce_mean(d((fake, y), training=training))
    g_grads = dict(zip([v.name for v in g.trainable_variables],
                       map(tf.convert_to_tensor, tape.gradient(g_loss, g.trainable_variables))))
    d_grads = tape.gradient(d_loss, d.trainable_variables)
    for v, grad in zip(d.trainable_variables, d_grads):
      assert grad is not None and float(tf.norm(tf.convert_to_tensor(grad))) > 1e-6, v.name
    redundant = _redundant_biases(g) if training else set()
    typical = np.median([float(tf.norm(gr)) for gr in g_grads.values()])
    for name, grad in g_grads.items():
      norm = float(tf.norm(grad))
      if name in redundant:  # BN removes any per-channel constant: mathematically 0
        assert norm < 1e-4 * typical, name
      else:
        assert norm > 1e-6 * typical and norm > 0, name

  # D memorises 16 real images against 16 fixed samples (real and fake in one batch,
  # as a trainer would feed them), then G learns to fool that D. Eager: tracing two
  # tf.functions per context would cost more than the dozen steps themselves.
  fake = g((z, y), training=True)
  both_x, both_y = tf.concat([x, fake], 0), tf.concat([y, y], 0)
  d_opt = tf.keras.optimizers.Adam(4e-4, beta_1=0.0, beta_2=0.999)
  g_opt = tf.keras.optimizers.Adam(1e-3, beta_1=0.0, beta_2=0.999)
  d_losses, g_losses = [], []
  for _ in range(12):
    with tf.GradientTape() as tape:
      logits = d((both_x, both_y), training=True)
      loss = _hinge_d(logits[:16], logits[16:])
    d_opt.apply_gradients(zip(tape.gradient(loss, d.trainable_variables), d.trainable_variables))
    d_losses.append(float(loss))
  for _ in range(6):
    with tf.GradientTape() as tape:
      loss = -tf.reduce_mean(d((g((z, y), training=True), y), training=True))
    g_opt.apply_gradients(zip(tape.gradient(loss, g.trainable_variables), g.trainable_variables))
    g_losses.append(float(loss))
  assert np.isfinite(d_losses + g_losses).all()
  assert np.mean(d_losses[-3:]) < 0.4 * d_losses[0], d_losses
  assert g_losses[-1] < g_losses[0] - 2.0, g_losses
