"""Tests for the Hamburger layer (docs/design.md, 'The Hamburger layer').

The hams themselves are checked against NumPy in test_hams.py; here the layer's own
work is checked: the (B, H, W, S*D) <-> (B*S, D, N) layout, the ReLU, eval_steps, the
residual, the state it keeps, XLA, dynamic batches and the argument checks. The
fidelity settings, mixed precision (mixed_bfloat16 against float32) and serialisation
(get_config, checkpoint and SavedModel round trips) are in test_hamburger_settings.py.
"""
import numpy as np
import pytest
import tensorflow as tf

from hamgan.layers import hams
from hamgan.layers import hamburger as hamburger_lib
from hamgan.layers.hamburger import Hamburger

HAMS = ["nmf", "cd", "vq"]


def _x(b=2, h=4, w=6, c=8, seed=0):
  return tf.constant(np.random.default_rng(seed).normal(size=(b, h, w, c)), tf.float32)


def _np_l2n(v, axis):
  return v / np.maximum(np.linalg.norm(v, axis=axis, keepdims=True), 1e-6)


def _manual(layer, x, steps, bases0=None):
  """The layer's inference output rebuilt from its parts with NumPy reshapes.

  Uses the layer's breads and online bases (or `bases0`, (B*S, D, R)) and the
  (separately tested) ham; the grouping layout, ReLU and residual are done here
  independently. Returns (output, x_ham, final bases).
  """
  b, h, w, _ = x.shape
  s, r = layer.groups, layer.rank
  z = layer.lower_bread(x, training=False).numpy()  # (B, H, W, S*D)
  d = z.shape[-1] // s
  if layer.ham == "nmf":
    z = np.maximum(z, 0.0)
  x_ham = np.zeros((b * s, d, h * w), np.float32)
  for i in range(b):
    for g in range(s):
      x_ham[i * s + g] = z[i, :, :, g * d:(g + 1) * d].reshape(h * w, d).T
  if bases0 is None:
    bases0 = np.tile(layer.bases.numpy(), (b, 1, 1))  # sample-major, group-minor
  recon, bases, _ = getattr(hams, layer.ham)(tf.constant(x_ham), tf.constant(bases0), steps)
  recon = recon.numpy()
  back = np.zeros(z.shape, np.float32)
  for i in range(b):
    for g in range(s):
      back[i, :, :, g * d:(g + 1) * d] = recon[i * s + g].T.reshape(h, w, d)
  up = layer.upper_bread(tf.constant(back), training=False).numpy()
  return x.numpy() + layer.residual_scale.numpy() * up, x_ham, bases.numpy().reshape(b, s, d, r)


def _converge_sn(layer, x):
  """Runs the breads' power iterations to convergence, so training and inference
  calls normalise the kernels by the same sigma."""
  z = layer.lower_bread(x, training=False)
  for _ in range(30):
    layer.lower_bread(x, training=True)
    layer.upper_bread(z, training=True)


@pytest.mark.parametrize("ham", HAMS)
def test_zero_residual_scale_is_identity_and_a_scale_enables_the_ham(ham):
  x = _x()
  layer = Hamburger(ham=ham, rank=3, conditional=True, num_classes=4)
  y = tf.constant([1, 3])
  np.testing.assert_array_equal(layer(x, y, training=True).numpy(), x.numpy())
  np.testing.assert_array_equal(layer(x, y, training=False).numpy(), x.numpy())
  assert layer.residual_scale.numpy() == 0.0 and layer.residual_scale.trainable
  layer.residual_scale.assign(1.0)
  assert np.abs(layer(x, y, training=False).numpy() - x.numpy()).max() > 1e-2


@pytest.mark.parametrize("ham", HAMS)
def test_inference_uses_eval_steps_and_group_layout(ham):
  x = _x(c=8)
  layer = Hamburger(ham=ham, groups=2, rank=3, steps=1, eval_steps=5, init="online")
  layer.build(x.shape)
  layer.residual_scale.assign(0.7)
  got = layer(x, training=False).numpy()
  expected, _, _ = _manual(layer, x, 5)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
  with_train_steps, _, _ = _manual(layer, x, 1)
  assert np.abs(got - with_train_steps).max() > 1e-3  # eval_steps made a difference


@pytest.mark.parametrize("ham", HAMS)
def test_folded_upper_bread_equals_reconstruct_then_convolve_with_gradients(ham):
  """The layer folds its upper bread into the bases; the plain route must agree."""
  x = _x(c=8)
  layer = Hamburger(ham=ham, groups=2, rank=3, steps=4, init="online")
  layer.build(x.shape)
  layer.residual_scale.assign(0.7)
  s, d = 2, 4

  def plain(inputs):
    z = layer.lower_bread(inputs, training=False)
    if ham == "nmf":
      z = tf.nn.relu(z)
    b, h, w, _ = inputs.shape
    x_ham = tf.reshape(tf.transpose(tf.reshape(z, [b, h * w, s, d]), [0, 2, 1, 3]),
                       [b * s, h * w, d])
    bases0 = tf.reshape(tf.tile(layer.bases[None], [b, 1, 1, 1]), [b * s, d, 3])
    recon = getattr(hams, ham)(x_ham, bases0, 4, channels_last=True)[0]
    back = tf.reshape(tf.transpose(tf.reshape(recon, [b, s, h * w, d]), [0, 2, 1, 3]),
                      [b, h, w, s * d])
    return inputs + layer.residual_scale * layer.upper_bread(back, training=False)

  weights = tf.constant(np.random.default_rng(1).normal(size=x.shape), tf.float32)
  grads = []
  for fn in (lambda t: layer(t, training=False), plain):
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = tf.reduce_sum(weights * fn(x))
    grads.append(tape.gradient(loss, [x, layer.upper_bread.kernel,
                                      layer.lower_bread.kernel, layer.residual_scale]))
  np.testing.assert_allclose(layer(x, training=False).numpy(), plain(x).numpy(),
                             rtol=1e-4, atol=1e-5)
  for got, want in zip(*grads):
    assert np.abs(want.numpy()).max() > 1e-3  # every gradient is really there
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("ham", HAMS)
def test_training_updates_online_bases_and_relative_error(ham):
  x = _x(c=8)
  layer = Hamburger(ham=ham, groups=2, rank=3, steps=3, init="online",
                    online_momentum=0.9)
  layer.build(x.shape)
  _converge_sn(layer, x)
  old = layer.bases.numpy()
  layer(x, training=False)
  np.testing.assert_array_equal(layer.bases.numpy(), old)  # inference: untouched
  assert layer.last_relative_error.numpy() == 0.0
  _, x_ham, final = _manual(layer, x, 3)  # same SN sigma, same start, same steps
  layer(x, training=True)
  expected = _np_l2n(0.9 * old + 0.1 * final.mean(axis=0), axis=1)
  np.testing.assert_allclose(layer.bases.numpy(), expected, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(layer.bases.numpy(), axis=1), 1.0, rtol=1e-5)
  recon = getattr(hams, ham)(tf.constant(x_ham),
                         tf.constant(np.tile(old, (x.shape[0], 1, 1))), 3)[0].numpy()
  rel = np.linalg.norm(x_ham - recon) / np.linalg.norm(x_ham)
  np.testing.assert_allclose(layer.last_relative_error.numpy(), rel, rtol=1e-4)


def _seed_draw(layer, rows):
  """The bases a single-device call draws from the layer's current seed pair."""
  return hams.init_bases(layer.ham, rows, layer._d, layer.rank,
                         seed=tf.constant(layer.bases_seed.numpy())).numpy()


@pytest.mark.parametrize("ham", HAMS)
def test_random_bases_are_redrawn_each_training_call(ham):
  x = _x(c=8)
  layer = Hamburger(ham=ham, groups=2, rank=3, steps=2)
  layer.build(x.shape)
  _converge_sn(layer, x)  # training calls then differ by their bases only
  layer.residual_scale.assign(1.0)
  assert layer.bases is None
  salt, count = layer.bases_seed.numpy()
  assert count == 0 and salt != 0
  # Inference: deterministic for a given counter, which it does not advance.
  first = layer(x, training=False).numpy()
  np.testing.assert_array_equal(layer(x, training=False).numpy(), first)
  np.testing.assert_array_equal(layer.bases_seed.numpy(), [salt, 0])
  # ... and it is the decomposition started from the stateless draw of that seed.
  expected, _, _ = _manual(layer, x, 2, bases0=_seed_draw(layer, 2 * 2))
  np.testing.assert_allclose(first, expected, rtol=1e-4, atol=1e-5)
  # Training calls: fresh bases each time, one counter step each.
  a = layer(x, training=True).numpy()
  np.testing.assert_allclose(a, first, rtol=1e-4, atol=1e-5)  # drew at counter 0
  b = layer(x, training=True).numpy()
  np.testing.assert_array_equal(layer.bases_seed.numpy(), [salt, 2])
  assert np.abs(a - b).max() > 1e-3
  expected, _, _ = _manual(layer, x, 2, bases0=_seed_draw(layer, 4))
  np.testing.assert_allclose(layer(x, training=False).numpy(), expected,
                             rtol=1e-4, atol=1e-5)


def test_seed_and_name_salt_the_draws():
  x = _x()
  outs = {}
  for key, kwargs in {"a": dict(name="ham_a"), "a_again": dict(name="ham_a"),
                      "b": dict(name="ham_b"), "a_seed1": dict(name="ham_a", seed=1)
                      }.items():
    tf.keras.utils.set_random_seed(3)  # same breads for all
    layer = Hamburger(rank=3, steps=2, **kwargs)
    layer.build(x.shape)
    layer.residual_scale.assign(1.0)
    outs[key] = layer(x, training=False).numpy()
  np.testing.assert_array_equal(outs["a_again"], outs["a"])  # name + seed fix the draw
  assert np.abs(outs["b"] - outs["a"]).max() > 1e-3  # another name, other bases
  assert np.abs(outs["a_seed1"] - outs["a"]).max() > 1e-3  # another seed, other bases


@pytest.mark.parametrize("ham", ["nmf", "vq"])
def test_restored_layer_reproduces_the_next_training_call(tmp_path, ham):
  x = _x(c=8)
  layer = Hamburger(ham=ham, rank=3, steps=2)
  layer.build(x.shape)
  layer.residual_scale.assign(0.9)
  layer(x, training=True)
  layer(x, training=True)  # counter at 2, SN vectors moved
  path = tf.train.Checkpoint(layer=layer).save(str(tmp_path / "ckpt"))
  want = layer(x, training=True).numpy()
  after = layer(x, training=True).numpy()

  # A new layer: another auto-generated name (so another salt) until restored.
  other = Hamburger(ham=ham, rank=3, steps=2)
  other.build(x.shape)
  assert other.name != layer.name
  assert other.bases_seed.numpy()[0] != layer.bases_seed.numpy()[0]
  tf.train.Checkpoint(layer=other).restore(path).assert_consumed()
  np.testing.assert_array_equal(other.bases_seed.numpy()[1], 2)
  np.testing.assert_array_equal(other(x, training=True).numpy(), want)
  np.testing.assert_array_equal(other(x, training=True).numpy(), after)
  assert np.abs(after - want).max() > 1e-3  # the calls compared are not all alike


def _per_replica(strategy, layer, x, batch, segments=1):
  """Runs a training call of `layer` on the replicas; returns the outputs in order."""
  dist = strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensor_slices(x).batch(batch))

  @tf.function
  def fn(a):
    return layer(a, training=True, segments=segments)
  out = strategy.run(fn, args=(next(iter(dist)),))
  return [t.numpy() for t in strategy.experimental_local_results(out)]


@pytest.mark.parametrize("ham", HAMS)
def test_two_replicas_draw_like_one_device(two_cpu_strategy, ham):
  """A training call on a global batch of 4 over 2 replicas == one device on the 4."""
  x = _x(b=4, h=4, w=4, c=8, seed=7)
  single = Hamburger(ham=ham, groups=2, rank=3, steps=2)
  single.build(x.shape)
  with two_cpu_strategy.scope():
    mirrored = Hamburger(ham=ham, groups=2, rank=3, steps=2)
    mirrored.build(x.shape)
  single.residual_scale.assign(1.0)
  mirrored.set_weights(single.get_weights())  # breads, SN vectors and bases_seed
  want = single(x, training=True).numpy()
  got = _per_replica(two_cpu_strategy, mirrored, x, 4)
  assert [g.shape[0] for g in got] == [2, 2]
  np.testing.assert_allclose(np.concatenate(got), want, rtol=1e-5, atol=1e-5)
  for var in (mirrored.bases_seed, single.bases_seed):
    values = [v.numpy() for v in two_cpu_strategy.experimental_local_results(var)]
    for v in values:  # one step on every replica, the same state everywhere
      np.testing.assert_array_equal(v, single.bases_seed.numpy())
  assert single.bases_seed.numpy()[1] == 1
  # Each replica used its own rows: replica 1 on its 2 examples alone would draw
  # rows 0-1 of a 2-example draw, which gives another output.
  alone = Hamburger(ham=ham, groups=2, rank=3, steps=2)
  alone.build(x.shape)
  alone.set_weights(mirrored.get_weights())
  alone.bases_seed.assign(single.bases_seed.numpy() - [0, 1])
  assert np.abs(alone(x[2:], training=True).numpy() - want[2:]).max() > 1e-3


def test_batch_segments_match_concatenated_slices(two_cpu_strategy):
  """Replica r called on [a_r, b_r] with segments=2 == one device on [a, b]."""
  a = _x(b=4, h=4, w=4, c=8, seed=1)
  b = _x(b=4, h=4, w=4, c=8, seed=2)
  single = Hamburger(rank=3, steps=2)
  single.build(a.shape)
  with two_cpu_strategy.scope():
    mirrored = Hamburger(rank=3, steps=2)
    mirrored.build(a.shape)
  single.residual_scale.assign(1.0)
  mirrored.set_weights(single.get_weights())
  want = single(tf.concat([a, b], 0), training=True).numpy()  # rows: a0..a3, b0..b3
  # Replica r holds [a[2r:2r+2], b[2r:2r+2]]: global order a0 a1 b0 b1 | a2 a3 b2 b3.
  per_replica = tf.concat([a[:2], b[:2], a[2:], b[2:]], 0)
  got = _per_replica(two_cpu_strategy, mirrored, per_replica, 8, segments=2)
  order = [0, 1, 4, 5, 2, 3, 6, 7]  # rows of `want` in the replicas' order
  np.testing.assert_allclose(np.concatenate(got), want[order], rtol=1e-5, atol=1e-5)
  # Without the declaration, b's examples get a's rows of the other replica.
  mirrored.bases_seed.assign(single.bases_seed.numpy() - [0, 1])
  plain = np.concatenate(_per_replica(two_cpu_strategy, mirrored, per_replica, 8))
  assert np.abs(plain - want[order]).max() > 1e-3
  with pytest.raises(ValueError, match=r"batch=3 is not divisible by segments=2"):
    single(a[:3], training=True, segments=2)


def test_random_bases_compile_with_xla_and_dynamic_batch():
  """Stateless draws compile. XLA's lowering of the stateless RNG gives another bit
  stream than the TF kernels (even for alg="philox"), so compiled calls are checked
  against bases drawn by compiled init_bases, not against eager calls."""
  x = _x(b=3, h=4, w=4, c=8)
  layer = Hamburger(rank=3, steps=2)
  layer.build(tf.TensorShape([None, 4, 4, 8]))
  _converge_sn(layer, x)  # so the manual (inference-mode) breads match training's
  layer.residual_scale.assign(1.0)
  start, weights = layer.bases_seed.numpy(), layer.get_weights()
  draw = tf.function(lambda s: hams.init_bases("nmf", 3, 8, 3, seed=s), jit_compile=True)
  xla_bases = draw(tf.constant(start)).numpy()
  train = tf.function(lambda a: layer(a, training=True), jit_compile=True)
  got = train(x).numpy()
  np.testing.assert_array_equal(layer.bases_seed.numpy(), start + [0, 1])
  expected, _, _ = _manual(layer, x, 2, bases0=xla_bases)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
  layer.set_weights(weights)
  np.testing.assert_array_equal(train(x).numpy(), got)  # reproducible when compiled
  # Dynamic batch (uncompiled, inference): the TF kernels' draw of this seed.
  dynamic = tf.function(lambda a: layer(a, training=False),
                        input_signature=[tf.TensorSpec([None, 4, 4, 8])])
  layer.set_weights(weights)
  expected, _, _ = _manual(layer, x, 2, bases0=_seed_draw(layer, 3))
  np.testing.assert_allclose(dynamic(x).numpy(), expected, rtol=1e-4, atol=1e-4)
  assert dynamic(x[:1]).shape == (1, 4, 4, 8)


# ----------------------------------------------------------------------------------
# Bad input.
# ----------------------------------------------------------------------------------
def test_input_not_4d():
  with pytest.raises(ValueError, match=r"is not 4-D; expected NHWC"):
    Hamburger(rank=2)(tf.ones([2, 16, 8]))


def test_channels_not_divisible_by_groups():
  with pytest.raises(ValueError, match=r"channels=10 is not divisible by groups=4"):
    Hamburger(groups=4, rank=2)(tf.ones([1, 4, 4, 10]))


def test_rank_larger_than_dim_or_pixels():
  with pytest.raises(ValueError, match=r"rank=9 exceeds min\(D=8, N=H\*W=16\)"):
    Hamburger(rank=9)(tf.ones([1, 4, 4, 8]))
  with pytest.raises(ValueError, match=r"rank=5 exceeds min\(D=8, N=H\*W=4\)"):
    Hamburger(rank=5)(tf.ones([1, 2, 2, 8]))
  with pytest.raises(ValueError, match=r"rank=3 exceeds min\(D=2"):
    Hamburger(groups=4, rank=3)(tf.ones([1, 4, 4, 8]))


def test_conditional_needs_classes_and_labels():
  with pytest.raises(ValueError, match=r"num_classes=None"):
    Hamburger(conditional=True)
  layer = Hamburger(rank=2, conditional=True, num_classes=5)
  with pytest.raises(ValueError, match=r"labels y is None"):
    layer(tf.ones([1, 4, 4, 8]))


def test_unknown_names_and_bad_numbers():
  with pytest.raises(ValueError, match=r"ham='svd'.*\('nmf', 'cd', 'vq'\)"):
    Hamburger(ham="svd")
  with pytest.raises(ValueError, match=r"init='warm'"):
    Hamburger(init="warm")
  with pytest.raises(ValueError, match=r"steps=-2"):
    Hamburger(steps=-2)
  with pytest.raises(ValueError, match=r"rank=0"):
    Hamburger(rank=0)
  with pytest.raises(ValueError, match=r"online_momentum=1.5"):
    Hamburger(online_momentum=1.5)
  with pytest.raises(ValueError, match=r"seed=-1"):
    Hamburger(seed=-1)
  with pytest.raises(ValueError, match=r"segments=0"):
    Hamburger(rank=2)(tf.zeros([2, 4, 4, 8]), training=True, segments=0)
