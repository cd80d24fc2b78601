"""Tests for the mode-seeking term of G's loss (train.mode_seeking_weight)."""
import numpy as np
import pytest
import tensorflow as tf

from hamgan.training import losses
from hamgan.training import trainer as trainer_lib
import step_harness as harness  # a G without batch norm, float64 trainers, one iteration
import test_training  # tiny G / D builders and the fixed random data stream


def _numpy_penalty(fake, z, eps=1e-5):
  h = len(fake) // 2
  image_gap = np.abs(fake[:h] - fake[h:]).reshape(h, -1).mean(axis=1)
  latent_gap = np.abs(z[:h] - z[h:]).mean(axis=1)
  return 1.0 / (image_gap / latent_gap + eps)


def test_penalty_and_paired_labels_match_numpy():
  rng = np.random.RandomState(0)
  fake = rng.normal(size=(6, 4, 4, 3)).astype(np.float32)
  z = rng.normal(size=(6, 5)).astype(np.float32)
  got = losses.mode_seeking(tf.constant(fake), tf.constant(z)).numpy()
  np.testing.assert_allclose(got, _numpy_penalty(fake, z), rtol=1e-5)
  # Two identical images of a pair: the penalty is 1 / eps, the collapse it punishes.
  fake[3] = fake[0]
  assert losses.mode_seeking(tf.constant(fake), tf.constant(z)).numpy()[0] == (
      pytest.approx(1e5, rel=1e-6))
  y = tf.constant([4, 1, 7, 0, 2, 9])
  np.testing.assert_array_equal(losses.paired_labels(y), [4, 1, 7, 4, 1, 7])


def test_penalty_gradient_matches_the_analytic_one():
  # d/da of 1 / (r + eps), r = mean|a - b| / g: -sign(a - b) / (n g (r + eps)^2).
  rng = np.random.RandomState(1)
  fake = rng.normal(size=(2, 2, 2, 3)).astype(np.float64)
  z = rng.normal(size=(2, 3)).astype(np.float64)
  x = tf.Variable(fake, dtype=tf.float32)
  with tf.GradientTape() as tape:
    penalty = losses.mode_seeking(x, tf.constant(z, tf.float32))[0]
  grad = tape.gradient(penalty, x).numpy()
  diff = fake[0] - fake[1]
  n, g = diff.size, np.abs(z[0] - z[1]).mean()
  r = np.abs(diff).mean() / g
  expected = -np.sign(diff) / (n * g * (r + 1e-5) ** 2)
  np.testing.assert_allclose(grad[0], expected, rtol=1e-4)
  np.testing.assert_allclose(grad[1], -expected, rtol=1e-4)


def test_weight_is_checked_before_training(tmp_path):
  with pytest.raises(ValueError, match="mode_seeking_weight=-1"):
    trainer_lib.TrainConfig(mode_seeking_weight=-1.0)
  with pytest.raises(ValueError, match="3 per replica is odd"):
    test_training._trainer(tmp_path, test_training._config(batch_size=3,
                                                           mode_seeking_weight=1.0))
  assert not (tmp_path / "checkpoints").exists()


def test_g_step_descends_the_weighted_penalty(tmp_path):
  """With plain SGD (lr 1), G's update with weight w minus its update with weight 0
  is -w times the gradient of the batch-mean penalty, computed here on its own."""
  weight = 0.25
  config = dict(batch_size=4, optimizer_fn="sgd_momentum", beta1=0.0, g_lr=1.0)
  with_term = test_training._trainer(
      tmp_path / "w", test_training._config(mode_seeking_weight=weight, **config))
  without = test_training._trainer(tmp_path / "0", test_training._config(**config))
  z = tf.constant(np.random.RandomState(2).normal(size=(4, 8)), tf.float32)
  y = tf.constant([0, 2, 0, 2])  # already paired: both runs see the same labels
  generator = without.generator
  start = test_training._values(generator)
  with tf.GradientTape() as tape:
    penalty = tf.reduce_mean(losses.mode_seeking(generator((z, y), training=True), z))
  expected = tape.gradient(penalty, generator.trainable_variables)
  assert float(penalty) > 0
  # That forward pass moved G's spectral-norm state: both trainers start from `start`.
  for v, value in zip(generator.variables, start):
    v.assign(value)
  for a, b in ((without.generator, with_term.generator),
               (without.discriminator, with_term.discriminator)):
    for va, vb in zip(a.variables, b.variables):
      vb.assign(va.numpy())

  loss_with = float(with_term._g_step(z, y))
  loss_without = float(without._g_step(z, y))
  assert loss_with == pytest.approx(loss_without, rel=1e-6)  # the metric: adversarial only
  trainable = {id(v) for v in generator.trainable_variables}
  moved = 0.0
  for v, v_w, g, v_start in zip(generator.variables, with_term.generator.variables,
                               _expand(generator, expected, trainable), start):
    if g is None or _feeds_batch_norm(v):
      continue
    after_w = v_w.numpy().astype(np.float64)
    after = v.numpy().astype(np.float64)
    difference = after_w - after
    # Both updates carry the same adversarial step (lr 1), computed in float32 by two
    # graphs: the difference holds their rounding, which scales with the weights and that
    # step, not with the penalty's gradient. 64 float32 epsilons of those magnitudes.
    rounding = 64 * np.finfo(np.float32).eps * (
        np.abs(after) + np.abs(after - np.asarray(v_start, np.float64)))
    error = np.abs(difference + weight * g)
    allowed = 2e-3 * np.abs(weight * g) + rounding
    worst = int(np.argmax(error - allowed))
    assert np.all(error <= allowed), (
        f"{v.name}: element {worst} differs by {error.flat[worst]:.3g}, allowed "
        f"{allowed.flat[worst]:.3g}")
    moved = max(moved, float(np.abs(difference).max()))
  assert moved > 1e-4, "the penalty's gradient was too small to test anything"


def _feeds_batch_norm(variable):
  """G's biases, but the last convolution's, add a constant that the next batch norm
  removes: their gradient is zero but for rounding, which differs between two graphs
  (1.5e-7 measured, the size of the bias's whole update), so they carry nothing to test."""
  name = variable.name
  return name.endswith("/bias:0") and "conv_out" not in name


def _expand(generator, grads, trainable):
  """Gradients aligned with generator.variables (None for non-trainable state)."""
  by_id = {id(v): None if g is None else tf.convert_to_tensor(g).numpy()
           for v, g in zip(generator.trainable_variables, grads)}
  return [by_id.get(id(v)) if id(v) in trainable else None for v in generator.variables]


def test_step_with_the_term_lowers_to_xla(tmp_path):
  """On a TPU the replica step is compiled: the paired labels and the penalty must lower
  with static shapes (the pairing halves the per-replica batch inside the step)."""
  trainer = test_training._trainer(
      tmp_path, test_training._config(jit_compile=True, mode_seeking_weight=0.1))
  b = trainer.per_replica_batch
  real = ((tf.random.uniform([b, 32, 32, 3], -1, 1), tf.zeros([b], tf.int32)),)
  seeds = tf.constant([[1, 2, 3, 4], [5, 6, 7, 8]], tf.int64)
  hlo = trainer.replica_step_fn.experimental_get_compiler_ir(real, seeds)(stage="hlo")
  assert "ENTRY" in hlo and f"f32[{b // 2},32,32,3]" in hlo  # one half of G's batch


# ------------------------------------------------------------------ MSGAN's own form


def _numpy_msgan(fake, z, eps=1e-5):
  h = len(fake) // 2
  ratio = np.abs(fake[:h] - fake[h:]).mean() / np.abs(z[:h] - z[h:]).mean()
  return 1.0 / (ratio + eps)


def test_msgan_form_and_its_gradient_match_the_formula():
  """One ratio for the batch, mean|G(z1) - G(z2)| / mean|z1 - z2|, and 1 / (ratio + eps);
  its gradient in the images is -sign(a - b) / (n_x mean|dz| (ratio + eps)^2) for a
  (n_x the elements of one half), and the slope msgan_penalty returns is d/d(image sum)."""
  rng = np.random.RandomState(3)
  fake = rng.normal(size=(6, 4, 4, 3))
  z = rng.normal(size=(6, 5))
  x = tf.Variable(fake, dtype=tf.float32)
  with tf.GradientTape() as tape:
    penalty = losses.mode_seeking_msgan(x, tf.constant(z, tf.float32))
  grad = tape.gradient(penalty, x).numpy()
  assert float(penalty) == pytest.approx(_numpy_msgan(fake, z), rel=1e-5)
  diff = fake[:3] - fake[3:]
  n_x, dz = diff.size, np.abs(z[:3] - z[3:]).mean()
  ratio = np.abs(diff).mean() / dz
  expected = -np.sign(diff) / (n_x * dz * (ratio + 1e-5) ** 2)
  np.testing.assert_allclose(grad[:3], expected, rtol=1e-4)
  np.testing.assert_allclose(grad[3:], -expected, rtol=1e-4)
  # The slope, against a central difference of the penalty in the image sum (float64).
  s_x, s_z, n_z = np.abs(diff).sum(), np.abs(z[:3] - z[3:]).sum(), 15.0
  _, slope = losses.msgan_penalty(tf.constant(s_x, tf.float64), tf.constant(s_z, tf.float64),
                                  float(n_x), n_z)
  def p(s):
    return 1.0 / ((s / n_x) / (s_z / n_z) + 1e-5)
  h = 1e-4 * s_x
  assert float(slope) == pytest.approx((p(s_x + h) - p(s_x - h)) / (2 * h), rel=1e-6)
  # One collapsed pair among others: MSGAN's form stays moderate, hamgan's per-pair
  # variant is dominated by it.
  fake[3] = fake[0]
  per_pair = float(tf.reduce_mean(losses.mode_seeking(tf.constant(fake), tf.constant(z))))
  msgan = float(losses.mode_seeking_msgan(tf.constant(fake), tf.constant(z)))
  assert per_pair > 1e4 and msgan < 10


def test_g_step_with_the_msgan_form_descends_its_gradient(tmp_path):
  """With SGD at rate 1, G's update with weight w in the msgan form minus its update
  without the term is -w times the gradient of mode_seeking_msgan(G(z), z) on the batch
  (computed in two passes inside the step: the slope needs the batch's sums first)."""
  weight = 0.5
  with_term = harness.trainer(tmp_path / "w", mode_seeking_weight=weight,
                              mode_seeking_form="msgan")
  without = harness.trainer(tmp_path / "0")
  harness.copy_state(without, with_term)
  z, y = with_term._gan_step.draw(tf.constant([1, 2], tf.int64), tf.constant([3, 4], tf.int64),
                                  paired=True)
  np.testing.assert_array_equal(y.numpy()[:4], y.numpy()[4:])
  g = without.generator
  start = harness.snapshot(without)
  with tf.GradientTape() as tape:
    penalty = losses.mode_seeking_msgan(g((z, y), training=True), z)
  grads = harness.gradients_by_variable(g, tape.gradient(penalty, g.trainable_variables))
  harness.restore(without, start)
  loss_w = float(with_term._g_step(z, y))
  loss_0 = float(without._g_step(z, y))
  assert loss_w == pytest.approx(loss_0, rel=1e-6)  # the metric: adversarial only
  expected = {id(vw): v.numpy().astype(np.float64) - w0 - weight * grads[id(v)]
              for v, vw, w0 in zip(g.variables, with_term.generator.variables, start[0])
              if id(v) in grads}
  assert harness.assert_update_equals(with_term.generator, start[0], expected) > 1e-3
  assert float(penalty) > 0


@pytest.mark.parametrize("form", ["msgan", "per_pair"])
def test_two_replicas_match_one_device_with_the_term(tmp_path, two_cpu_strategy, form):
  """One iteration with the term on two logical CPUs moves G, D and the EMA G as one
  device does: every pair is a pair of the global batch (each replica holds matching
  rows of both halves, the Hamburgers take their rows per half) and, in the msgan form,
  the ratio's sums are global. Adam with eps = 1 and rate 1, as in
  test_training.py::test_two_replicas_match_one_device (there: why, and the bounds)."""
  settings = dict(mode_seeking_weight=0.5, mode_seeking_form=form, optimizer_fn="adam",
                  epsilon=1.0, beta1=0.0)
  g_fn, d_fn = test_training._model_fns("ham_nmf")
  one = harness.trainer(tmp_path / "one", generator_fn=g_fn, discriminator_fn=d_fn,
                        float64=False, **settings)
  two = harness.trainer(tmp_path / "two", strategy=two_cpu_strategy, generator_fn=g_fn,
                        discriminator_fn=d_fn, float64=False, **settings)
  harness.copy_state(one, two)
  before = [harness.values(m) for m in (one.generator, one.discriminator)]
  images, labels = harness.real_batch(8)
  m_one = harness.run_iteration(one, images, labels, harness.seeds(4))
  m_two = harness.run_iteration(two, images, labels, harness.seeds(4))
  np.testing.assert_allclose(m_two, m_one, rtol=1e-5, atol=1e-6)
  for a, b, w0 in zip((one.generator, one.discriminator), (two.generator, two.discriminator),
                      before):
    wa = harness.values(a)
    assert max(np.abs(x - y).max() for x, y in zip(wa, w0)) > 1e-3
    for va, x, y in zip(a.variables, wa, harness.values(b)):
      np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-4, err_msg=va.name)


def test_form_is_checked_and_per_pair_stays_the_default(tmp_path):
  assert trainer_lib.TrainConfig().mode_seeking_form == "per_pair"
  with pytest.raises(ValueError, match=r"mode_seeking_form='MSGAN'; expected one of "
                                       r"\('per_pair', 'msgan'\)"):
    trainer_lib.TrainConfig(mode_seeking_form="MSGAN")
