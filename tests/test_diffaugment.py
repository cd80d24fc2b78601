"""Tests for DiffAugment (train.diffaugment): the ops, their gradients, the trainer's use."""
import numpy as np
import pytest
import tensorflow as tf

from hamgan.training import diffaugment
from hamgan.training import gan_step
from hamgan.training import losses
from hamgan.training import trainer as trainer_lib
import step_harness as harness

# Non-square images, so that a row/column mix-up shows.
H, W = 8, 6
# One image per row; the draws cover both ends of every range.
U = np.array([[0.0, 0.0, 0.0, 0.0, 0.99999, 0.0, 0.99999],
              [0.3, 0.7, 0.2, 0.45, 0.5, 0.35, 0.6],
              [0.99999, 0.99999, 0.99999, 0.99999, 0.0, 0.99999, 0.1],
              [0.6, 0.1, 0.8, 0.7, 0.2, 0.5, 0.5]], np.float32)


def _images(n=4, seed=0):
  return np.random.RandomState(seed).uniform(-1, 1, (n, H, W, 3))


def _integer(u, count):
  return min(int(np.floor(np.float64(u) * count)), count - 1)


def _np_translation(x, u):
  out = np.zeros_like(x)
  for i in range(len(x)):
    shifts = []
    for size, ui in zip((H, W), u[i]):
      s = int(size * 0.125 + 0.5)
      shifts.append(_integer(ui, 2 * s + 1) - s)
    for h in range(H):
      for w in range(W):
        hs, ws = h - shifts[0], w - shifts[1]
        if 0 <= hs < H and 0 <= ws < W:
          out[i, h, w] = x[i, hs, ws]
  return out


def _np_cutout(x, u):
  out = x.copy()
  for i in range(len(x)):
    windows = []
    for size, ui in zip((H, W), u[i]):
      length = int(size * 0.5 + 0.5)
      first = _integer(ui, size + 1 - length % 2) - length // 2
      windows.append(range(max(first, 0), min(first + length, size)))
    for h in windows[0]:
      for w in windows[1]:
        out[i, h, w] = 0.0
  return out


def _np_color(x, u):
  x = x + (u[:, 0, None, None, None] - 0.5)
  mean = x.mean(axis=3, keepdims=True)
  x = (x - mean) * (2 * u[:, 1, None, None, None]) + mean
  mean = x.mean(axis=(1, 2, 3), keepdims=True)
  return (x - mean) * (u[:, 2, None, None, None] + 0.5) + mean


@pytest.mark.parametrize("policy,reference", [
    ("color", lambda x, u: _np_color(x, u.astype(np.float64))),
    ("translation", lambda x, u: _np_translation(x, u[:, 3:5])),
    ("cutout", lambda x, u: _np_cutout(x, u[:, 5:7])),
    ("color,translation,cutout",
     lambda x, u: _np_cutout(_np_translation(_np_color(x, u.astype(np.float64)), u[:, 3:5]),
                             u[:, 5:7])),
    ("cutout,translation",
     lambda x, u: _np_translation(_np_cutout(x, u[:, 5:7]), u[:, 3:5])),
])
def test_each_op_matches_numpy_for_fixed_draws(policy, reference):
  x = _images()
  got = diffaugment.augment(tf.constant(x, tf.float32), tf.constant(U),
                            diffaugment.parse_policy(policy)).numpy()
  want = reference(x, U)
  # Float32 arithmetic on values of size ~1: a few epsilons of the largest value.
  np.testing.assert_allclose(got, want, rtol=0, atol=8 * np.finfo(np.float32).eps *
                             max(1.0, np.abs(want).max()))


def test_ranges_of_the_draws():
  """u = 0 and u -> 1 reach both ends: shifts -s..s (s = 1 for 8 and for 6), cutout
  centres 0..size - (c mod 2) (c = 4 for 8, 3 for 6)."""
  edges = tf.constant([0.0, 0.49, 0.99999])
  assert diffaugment.translation_offsets(edges, 8).numpy().tolist() == [-1, 0, 1]
  assert diffaugment.translation_offsets(edges, 32).numpy().tolist() == [-4, 0, 4]
  first, length = diffaugment.cutout_window(edges, 8)
  assert length == 4 and first.numpy().tolist() == [-2, 2, 6]
  first, length = diffaugment.cutout_window(edges, 6)
  assert length == 3 and first.numpy().tolist() == [-1, 1, 4]


def test_policy_names_are_checked():
  assert diffaugment.parse_policy("") == ()
  assert diffaugment.parse_policy(" cutout , color") == ("cutout", "color")
  with pytest.raises(ValueError, match=r"names \['colour'\], not a known augmentation"):
    diffaugment.parse_policy("colour,cutout")
  with pytest.raises(ValueError, match="twice"):
    diffaugment.parse_policy("color,color")
  with pytest.raises(ValueError, match="train.diffaugment='flip'"):
    trainer_lib.TrainConfig(diffaugment="flip")
  with pytest.raises(ValueError, match="not a string"):
    trainer_lib.TrainConfig(diffaugment=["color"])


def test_augmentation_is_differentiable_with_the_right_gradient():
  """For fixed draws the augmentation is affine in the images: in float64 its gradient
  times any direction equals the change of the output along it, exactly."""
  rng = np.random.RandomState(1)
  x, direction = rng.normal(size=(4, H, W, 3)), rng.normal(size=(4, H, W, 3))
  weights = rng.normal(size=(4, H, W, 3))
  policies = diffaugment.parse_policy("color,translation,cutout")

  def f(images):
    return tf.reduce_sum(weights * diffaugment.augment(images, tf.constant(U), policies))
  xv = tf.Variable(x)
  with tf.GradientTape() as tape:
    value = f(xv)
  grad = tape.gradient(value, xv).numpy()
  change = float(f(tf.constant(x + direction)) - value)
  assert np.sum(grad * direction) == pytest.approx(change, rel=1e-9)
  assert np.abs(grad).max() > 0.1


def test_d_and_g_see_augmented_images_and_g_gets_gradients_through_them(tmp_path):
  """With SGD at rate 1 and the trainer's draws for a seed, D's update is minus the
  gradient of its hinge loss on augment(concat(real, G(z))) and G's is minus the
  gradient of -mean D(augment(G(z))), computed here directly (float64 models)."""
  t = harness.trainer(tmp_path, diffaugment="color,translation,cutout")
  policies = diffaugment.parse_policy(t.config.diffaugment)
  g, d = t.generator, t.discriminator
  images, labels = harness.real_batch(8)
  seed = tf.constant([5, 6], tf.int64)
  z, y = t._gan_step.draw(tf.constant([1, 2], tf.int64), tf.constant([3, 4], tf.int64))
  start = harness.snapshot(t)  # each reference pass moves SN vectors: start from here

  fake = g((z, y), training=True)
  x = tf.concat([tf.cast(images, fake.dtype), fake], 0)
  x = diffaugment.augment(x, diffaugment.draw(seed, 16), policies)
  with tf.GradientTape() as tape:
    logits = tf.cast(d((x, tf.concat([labels, y], 0)), training=True), tf.float32)
    d_loss = tf.reduce_mean(losses.hinge(logits[:8], logits[8:])[0])
  d_grads = harness.gradients_by_variable(d, tape.gradient(d_loss, d.trainable_variables))
  harness.restore(t, start)
  t._gan_step.d_step(tf.constant(images), tf.constant(labels), z, y, seed)
  middle = harness.snapshot(t)
  assert harness.assert_update_equals(d, start[1], {k: -v for k, v in d_grads.items()}) > 0

  def g_gradients(augment):
    with tf.GradientTape() as tape:
      fake = g((z, y), training=True)
      seen = diffaugment.augment(fake, diffaugment.draw(seed, 8), policies) if augment else fake
      loss = -tf.reduce_mean(tf.cast(d((seen, y), training=True), tf.float32))
    harness.restore(t, middle)
    return harness.gradients_by_variable(g, tape.gradient(loss, g.trainable_variables))
  g_grads, plain = g_gradients(True), g_gradients(False)
  t._gan_step.g_step(z, y, seed)
  assert harness.assert_update_equals(g, middle[0], {k: -v for k, v in g_grads.items()}) > 0
  # Not vacuous: the gradient through the augmentation is not the plain one.
  kernel = id(g.dense.kernel)
  assert np.abs(g_grads[kernel] - plain[kernel]).max() > 0.1 * np.abs(plain[kernel]).max()


def test_the_same_seeds_give_the_same_augmentation_after_a_restore(tmp_path):
  """The augmentation's seed is a column of the checkpointed generator's draw: a trainer
  restored from step 2 draws the seeds (and so the augmentation) of step 3 that the
  uninterrupted one does, whatever else ran in between."""
  t = harness.trainer(tmp_path, diffaugment="translation,cutout")
  count = gan_step.seed_count(t.config)
  assert count == 6  # z and labels for D and G, then one augmentation seed each
  for _ in range(2):
    t.rng.make_seeds(count)
  t.step.assign(2)
  t.save(2)
  restored = harness.trainer(tmp_path, diffaugment="translation,cutout")
  assert int(restored.step.numpy()) == 2
  a, b = t.rng.make_seeds(count), restored.rng.make_seeds(count)
  np.testing.assert_array_equal(a.numpy(), b.numpy())
  x = tf.constant(_images(8), tf.float32)
  policies = diffaugment.parse_policy("translation,cutout")
  same = [diffaugment.augment(x, diffaugment.draw(s[:, 4], 8), policies).numpy()
          for s in (a, b)]
  np.testing.assert_array_equal(same[0], same[1])
  other = diffaugment.augment(x, diffaugment.draw(a[:, 5], 8), policies).numpy()
  assert not np.array_equal(other, same[0])
