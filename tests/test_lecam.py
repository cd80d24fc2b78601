"""Tests for the LeCam penalty (train.lecam_weight, train.lecam_decay)."""
import numpy as np
import pytest
import tensorflow as tf

from hamgan.training import losses
from hamgan.training import trainer as trainer_lib
import step_harness as harness


def test_penalty_and_its_gradient_match_the_formula():
  """mean((D(x) - a_F)^2) + mean((D(G(z)) - a_R)^2); d/dD(x)_i = 2 (D(x)_i - a_F) / n,
  d/dD(G(z))_i = 2 (D(G(z))_i - a_R) / n, and no gradient into the anchors."""
  rng = np.random.RandomState(0)
  real, fake = rng.normal(size=6), rng.normal(size=6)
  ema_real, ema_fake = 0.7, -0.4
  r, f = tf.Variable(real, dtype=tf.float32), tf.Variable(fake, dtype=tf.float32)
  anchors = tf.Variable([ema_real, ema_fake])
  with tf.GradientTape() as tape:
    penalty = tf.reduce_mean(losses.lecam(r, f, anchors[0], anchors[1]))
  g_real, g_fake, g_anchors = tape.gradient(penalty, [r, f, anchors])
  want = np.mean((real - ema_fake) ** 2) + np.mean((fake - ema_real) ** 2)
  assert float(penalty) == pytest.approx(want, rel=1e-6)
  np.testing.assert_allclose(g_real, 2 * (real - ema_fake) / 6, rtol=1e-5)
  np.testing.assert_allclose(g_fake, 2 * (fake - ema_real) / 6, rtol=1e-5)
  assert g_anchors is None


def test_d_step_adds_the_weighted_penalty_and_moves_the_emas(tmp_path):
  """With SGD at rate 1, D's update with weight w minus its update without the term is
  -w times the gradient of the penalty against the EMAs from before the step; then each
  EMA moves to decay * EMA + (1 - decay) * D's mean output (on real, on fake)."""
  weight, decay, anchors = 0.5, 0.9, np.array([0.3, -0.2], np.float32)
  with_term = harness.trainer(tmp_path / "w", lecam_weight=weight, lecam_decay=decay)
  without = harness.trainer(tmp_path / "0")
  harness.copy_state(without, with_term)
  with_term.lecam_ema.assign(anchors)
  d = without.discriminator
  images, labels = harness.real_batch(8)
  z, y = without._gan_step.draw(tf.constant([1, 2], tf.int64), tf.constant([3, 4], tf.int64))
  start = harness.snapshot(without)

  fake = without.generator((z, y), training=True)
  x = tf.concat([tf.cast(images, fake.dtype), fake], 0)
  with tf.GradientTape() as tape:
    logits = tf.cast(d((x, tf.concat([labels, y], 0)), training=True), tf.float32)
    penalty = tf.reduce_mean(losses.lecam(logits[:8], logits[8:], anchors[0], anchors[1]))
  grads = harness.gradients_by_variable(d, tape.gradient(penalty, d.trainable_variables))
  means = [float(tf.reduce_mean(logits[:8])), float(tf.reduce_mean(logits[8:]))]
  harness.restore(without, start)

  metrics_w = with_term._gan_step.d_step(tf.constant(images), tf.constant(labels), z, y)
  metrics_0 = without._gan_step.d_step(tf.constant(images), tf.constant(labels), z, y)
  # The logged d_loss is the adversarial part only; d_real and d_fake are the means.
  np.testing.assert_allclose([float(m) for m in metrics_w], [float(m) for m in metrics_0],
                             rtol=1e-6)
  np.testing.assert_allclose([float(metrics_w[1]), float(metrics_w[2])], means, rtol=1e-5)
  # Both updates share the adversarial step: their difference is the penalty's step.
  after_0 = [v.numpy().astype(np.float64) for v in d.variables]
  expected = {id(v): a0 - w0 - weight * grads[id(v)]
              for v, a0, w0 in zip(d.variables, after_0, start[1]) if id(v) in grads}
  expected_w = {id(vw): expected[id(v)] for v, vw in
                zip(d.variables, with_term.discriminator.variables) if id(v) in expected}
  assert harness.assert_update_equals(with_term.discriminator, start[1], expected_w) > 1e-3
  np.testing.assert_allclose(with_term.lecam_ema.numpy(),
                             decay * anchors + (1 - decay) * np.array(means), rtol=1e-5)
  assert float(penalty) > 0.1


def test_emas_restore_from_a_checkpoint_and_exist_only_when_on(tmp_path):
  t = harness.trainer(tmp_path / "on", lecam_weight=0.1)
  np.testing.assert_array_equal(t.lecam_ema.numpy(), [0.0, 0.0])
  t.lecam_ema.assign([1.25, -0.5])
  t.step.assign(3)
  t.save(3)
  restored = harness.trainer(tmp_path / "on", lecam_weight=0.1)
  assert int(restored.step.numpy()) == 3
  np.testing.assert_array_equal(restored.lecam_ema.numpy(), [1.25, -0.5])
  reader = tf.train.load_checkpoint(str(tmp_path / "on" / "checkpoints" / "ckpt-3"))
  assert any(k.startswith("lecam/") for k in reader.get_variable_to_shape_map())
  # Off: no EMAs, no key, so the checkpoints of runs without LeCam are unchanged.
  off = harness.trainer(tmp_path / "off")
  assert off.lecam_ema is None
  off.save(0)
  reader = tf.train.load_checkpoint(str(tmp_path / "off" / "checkpoints" / "ckpt-0"))
  assert not any(k.startswith("lecam") for k in reader.get_variable_to_shape_map())


@pytest.mark.parametrize("setting,match", [
    (dict(lecam_weight=-0.1), "lecam_weight=-0.1 must be a number >= 0"),
    (dict(lecam_weight=float("nan")), "lecam_weight=nan"),
    (dict(lecam_weight="0.1"), "lecam_weight='0.1'"),
    (dict(lecam_decay=1.0), r"lecam_decay=1.0 is outside \[0, 1\)"),
    (dict(lecam_decay=-0.5), r"lecam_decay=-0.5 is outside \[0, 1\)"),
])
def test_bad_settings_are_refused(setting, match):
  with pytest.raises(ValueError, match=match):
    trainer_lib.TrainConfig(**setting)
  assert trainer_lib.TrainConfig().lecam_decay == 0.99
