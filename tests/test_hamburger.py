"""Tests for the Hamburger layer (DESIGN.md 3.4).

The hams themselves are checked against NumPy in test_hams.py; here the layer's own
work is checked: the (B, H, W, S*D) <-> (B*S, D, N) layout, the ReLU, eval_steps, the
residual, the state it keeps, XLA, dynamic batches, mixed precision, serialisation
and the argument checks.
"""
import numpy as np
import pytest
import tensorflow as tf

from hamgan.layers import hams
from hamgan.layers.hamburger import Hamburger

HAMS = ["nmf", "cd", "vq"]


def _x(b=2, h=4, w=6, c=8, seed=0):
  return tf.constant(np.random.default_rng(seed).normal(size=(b, h, w, c)), tf.float32)


def _np_l2n(v, axis):
  return v / np.maximum(np.linalg.norm(v, axis=axis, keepdims=True), 1e-6)


def _manual(layer, x, steps):
  """The layer's inference output rebuilt from its parts with NumPy reshapes.

  Uses the layer's breads and online bases and the (separately tested) ham; the
  grouping layout, ReLU and residual are done here independently.
  Returns (output, x_ham, final bases).
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
  bases0 = np.tile(layer.bases.numpy(), (b, 1, 1))  # sample-major, group-minor
  recon, bases, _ = hams.HAMS[layer.ham](tf.constant(x_ham), tf.constant(bases0), steps)
  recon = recon.numpy()
  back = np.zeros(z.shape, np.float32)
  for i in range(b):
    for g in range(s):
      back[i, :, :, g * d:(g + 1) * d] = recon[i * s + g].T.reshape(h, w, d)
  up = layer.upper_bread(tf.constant(back), training=False).numpy()
  return x.numpy() + layer.sigma.numpy() * up, x_ham, bases.numpy().reshape(b, s, d, r)


def _converge_sn(layer, x):
  """Runs the breads' power iterations to convergence, so training and inference
  calls normalise the kernels by the same sigma."""
  z = layer.lower_bread(x, training=False)
  for _ in range(30):
    layer.lower_bread(x, training=True)
    layer.upper_bread(z, training=True)


@pytest.mark.parametrize("ham", HAMS)
def test_sigma_zero_is_identity_and_sigma_enables_the_ham(ham):
  x = _x()
  layer = Hamburger(ham=ham, rank=3, conditional=True, num_classes=4)
  y = tf.constant([1, 3])
  np.testing.assert_array_equal(layer(x, y, training=True).numpy(), x.numpy())
  np.testing.assert_array_equal(layer(x, y, training=False).numpy(), x.numpy())
  assert layer.sigma.numpy() == 0.0 and layer.sigma.trainable
  layer.sigma.assign(1.0)
  assert np.abs(layer(x, y, training=False).numpy() - x.numpy()).max() > 1e-2


@pytest.mark.parametrize("ham", HAMS)
def test_inference_uses_eval_steps_and_group_layout(ham):
  x = _x(c=8)
  layer = Hamburger(ham=ham, groups=2, rank=3, steps=1, eval_steps=5, init="online")
  layer.build(x.shape)
  layer.sigma.assign(0.7)
  got = layer(x, training=False).numpy()
  expected, _, _ = _manual(layer, x, 5)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
  with_train_steps, _, _ = _manual(layer, x, 1)
  assert np.abs(got - with_train_steps).max() > 1e-3  # eval_steps made a difference


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
  recon = hams.HAMS[ham](tf.constant(x_ham),
                         tf.constant(np.tile(old, (x.shape[0], 1, 1))), 3)[0].numpy()
  rel = np.linalg.norm(x_ham - recon) / np.linalg.norm(x_ham)
  np.testing.assert_allclose(layer.last_relative_error.numpy(), rel, rtol=1e-4)


def test_random_bases_are_redrawn_each_call():
  x = _x()
  layer = Hamburger(rank=3, steps=2)
  layer.build(x.shape)
  layer.sigma.assign(1.0)
  a = layer(x, training=False).numpy()
  b = layer(x, training=False).numpy()
  assert np.abs(a - b).max() > 1e-5  # fresh Uniform bases per call
  assert layer.bases is None


def test_one_step_flag_changes_the_gradient():
  x = _x()
  grads = {}
  for one_step in (True, False):
    tf.keras.utils.set_random_seed(5)  # same weights and online bases for both
    layer = Hamburger(rank=3, steps=4, one_step=one_step, init="online")
    layer.build(x.shape)
    layer.sigma.assign(1.0)
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = tf.reduce_sum(tf.sin(layer(x, training=False)))
    grads[one_step] = tape.gradient(loss, x).numpy()
  diff = np.linalg.norm(grads[True] - grads[False]) / np.linalg.norm(grads[False])
  assert diff > 1e-3


@pytest.mark.parametrize("ham", HAMS)
def test_forward_and_backward_compile_with_xla(ham):
  x = _x(b=2, h=4, w=4, c=8)
  y = tf.constant([0, 1])
  layer = Hamburger(ham=ham, rank=3, init="online", conditional=True, num_classes=2)
  layer.build(x.shape)
  layer.sigma.assign(0.5)

  def step(inp, lab, training):
    with tf.GradientTape() as tape:
      tape.watch(inp)
      loss = tf.reduce_sum(tf.square(layer(inp, lab, training=training)))
    grads = tape.gradient(loss, [inp] + layer.trainable_variables)
    return [loss] + [tf.convert_to_tensor(g) for g in grads]  # gamma's are sparse

  eager = step(x, y, False)
  xla = tf.function(lambda a, b: step(a, b, False), jit_compile=True)(x, y)
  for e, c in zip(eager, xla):
    np.testing.assert_allclose(c.numpy(), e.numpy(), rtol=2e-3, atol=1e-4)
  train = tf.function(lambda a, b: step(a, b, True), jit_compile=True)(x, y)
  assert all(np.all(np.isfinite(t.numpy())) for t in train)
  assert np.abs(train[1].numpy()).max() > 0  # gradient reaches the input
  assert layer.last_relative_error.numpy() > 0  # the state update ran under XLA


def test_dynamic_batch():
  layer = Hamburger(ham="nmf", rank=3, init="online", conditional=True, num_classes=3)
  layer.build(tf.TensorShape([None, 4, 4, 8]))
  layer.sigma.assign(1.0)
  fn = tf.function(lambda a, b: layer(a, b, training=False),
                   input_signature=[tf.TensorSpec([None, 4, 4, 8]),
                                    tf.TensorSpec([None], tf.int32)])
  x = _x(b=3, h=4, w=4, c=8)
  y = tf.constant([0, 1, 2])
  full = fn(x, y).numpy()
  single = fn(x[1:2], y[1:2]).numpy()
  assert full.shape == (3, 4, 4, 8)
  np.testing.assert_allclose(single[0], full[1], rtol=1e-5, atol=1e-5)  # per sample
  train = tf.function(lambda a, b: layer(a, b, training=True),
                      input_signature=fn.input_signature)
  assert train(x, y).shape == (3, 4, 4, 8)
  assert train(x[:1], y[:1]).shape == (1, 4, 4, 8)


@pytest.mark.parametrize("ham", HAMS)
def test_mixed_bfloat16_is_finite_and_close_to_float32(ham):
  x = _x(b=2, h=4, w=4, c=16, seed=3)
  ref = Hamburger(ham=ham, rank=4, init="online", conditional=True, num_classes=2)
  ref.build(x.shape)
  ref.sigma.assign(1.0)
  y = tf.constant([0, 1])
  want = ref(x, y, training=False).numpy()
  tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
  low = Hamburger(ham=ham, rank=4, init="online", conditional=True, num_classes=2)
  low.build(x.shape)
  low.set_weights(ref.get_weights())
  got = low(x, y, training=False)
  assert got.dtype == tf.bfloat16
  assert low.sigma.dtype == tf.float32 and low.bases.dtype == tf.float32
  got = tf.cast(got, tf.float32).numpy()
  assert np.all(np.isfinite(got))
  assert np.linalg.norm(got - want) / np.linalg.norm(want) < 3e-2
  train = low(x, y, training=True)
  assert np.all(np.isfinite(tf.cast(train, tf.float32).numpy()))


def test_config_round_trip():
  layer = Hamburger(ham="cd", groups=2, dim=6, rank=5, steps=3, eval_steps=7,
                    one_step=False, init="online", conditional=True, num_classes=10,
                    online_momentum=0.8, name="ham_g")
  config = layer.get_config()
  clone = Hamburger.from_config(config)
  assert clone.get_config() == config
  assert (clone.ham, clone.groups, clone.dim) == ("cd", 2, 6)
  assert (clone.rank, clone.steps) == (5, 3)
  assert (clone.eval_steps, clone.one_step, clone.init) == (7, False, "online")
  assert (clone.num_classes, clone.online_momentum) == (10, 0.8)
  # Same weights -> same outputs (online bases and inference: deterministic).
  x = _x(c=8)
  y = tf.constant([3, 9])
  layer.build(x.shape)
  clone.build(x.shape)
  layer.sigma.assign(0.3)
  clone.set_weights(layer.get_weights())
  np.testing.assert_allclose(clone(x, y, training=False).numpy(),
                             layer(x, y, training=False).numpy(), rtol=1e-6, atol=1e-6)
  assert clone.lower_bread.filters == 12  # groups * dim, not channels


def test_model_saves_and_reloads_as_savedmodel(tmp_path):
  images = tf.keras.Input((4, 4, 8))
  labels = tf.keras.Input((), dtype=tf.int32)
  h = tf.keras.layers.Conv2D(8, 3, padding="same")(images)
  h = Hamburger(rank=3, init="online", conditional=True, num_classes=3)(h, labels)
  model = tf.keras.Model([images, labels], h)
  ham = [l for l in model.layers if isinstance(l, Hamburger)][0]
  ham.sigma.assign(0.8)
  x, y = _x(b=3, h=4, w=4, c=8), tf.constant([0, 2, 1])
  model([x, y], training=True)  # moves SN vectors and bases away from their init
  want = model([x, y], training=False).numpy()

  serve = tf.function(lambda a, b: model([a, b], training=False),
                      input_signature=[tf.TensorSpec([None, 4, 4, 8]),
                                       tf.TensorSpec([None], tf.int32)])
  path = str(tmp_path / "saved")
  tf.saved_model.save(model, path, signatures={"serve": serve})
  loaded = tf.saved_model.load(path)
  got = loaded.signatures["serve"](a=x, b=y)
  got = list(got.values())[0].numpy()
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_keras_load_model_rebuilds_the_layer(tmp_path):
  inp = tf.keras.Input((4, 4, 8))
  out = Hamburger(ham="vq", rank=3, init="online")(inp)
  model = tf.keras.Model(inp, out)
  model.layers[-1].sigma.assign(0.5)
  x = _x(b=2, h=4, w=4, c=8)
  want = model(x, training=False).numpy()
  path = str(tmp_path / "keras_saved")
  model.save(path, save_format="tf")
  again = tf.keras.models.load_model(path)
  assert isinstance(again.layers[-1], Hamburger)
  assert again.layers[-1].get_config()["ham"] == "vq"
  np.testing.assert_allclose(again(x, training=False).numpy(), want, rtol=1e-5, atol=1e-5)


def test_distributed_state_matches_the_global_batch(two_cpu_strategy):
  x = _x(b=4, h=4, w=4, c=8, seed=7)
  single = Hamburger(rank=3, steps=3, init="online")
  single.build(x.shape)
  with two_cpu_strategy.scope():
    mirrored = Hamburger(rank=3, steps=3, init="online")
    mirrored.build(x.shape)
  mirrored.set_weights(single.get_weights())
  single(x, training=True)
  dist = two_cpu_strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensor_slices(x).batch(4))
  two_cpu_strategy.run(tf.function(lambda a: mirrored(a, training=True)),
                       args=(next(iter(dist)),))
  for var in (mirrored.bases, mirrored.last_relative_error):
    values = [v.numpy() for v in two_cpu_strategy.experimental_local_results(var)]
    np.testing.assert_allclose(values[0], values[1], rtol=1e-6)  # replicas agree
  np.testing.assert_allclose(mirrored.bases.numpy(), single.bases.numpy(),
                             rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(mirrored.last_relative_error.numpy(),
                             single.last_relative_error.numpy(), rtol=1e-4)


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
