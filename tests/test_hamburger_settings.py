"""The Hamburger's fidelity settings, mixed precision and serialisation.

docs/design.md, 'The Hamburger layer' and 'Differences from the official code':
`normalize_bases`, `ridge` and `inference_bases` choose between the official HamGAN TF
code (raw Uniform[0, 1) NMF bases, CD ridge 0.01, new bases on every call) and the
layer's defaults (normalised bases, ridge 0.1, fixed inference bases). Each setting is
checked against a NumPy reference of the whole layer: the breads come from the layer
(spectral norm is tested in test_spectral_norm.py), the layout, ReLU, decomposition
(test_hams.py's float64 reference) and residual are NumPy here.
"""
import numpy as np
import pytest
import tensorflow as tf

from hamgan.layers import hams
from hamgan.layers.hamburger import Hamburger
from test_hamburger import _converge_sn, _x
from test_hams import np_cd_final, np_cd_iterate, np_nmf, np_vq

STEPS = 3


def _np_layer(layer, x, bases0, ridge=0.1):
  """The layer's inference output for groups=1 from initial bases (B, D, R), in NumPy."""
  b, h, w, _ = x.shape
  z = layer.lower_bread(x, training=False).numpy().astype(np.float64)  # (B, H, W, D)
  if layer.ham == "nmf":
    z = np.maximum(z, 0.0)
  x_ham = z.reshape(b, h * w, -1).transpose(0, 2, 1)  # (B, D, N)
  bases0 = np.asarray(bases0, np.float64)
  if layer.ham == "nmf":
    recon = np_nmf(x_ham, bases0, STEPS)[0]
  elif layer.ham == "cd":
    recon = np_cd_final(x_ham, *np_cd_iterate(x_ham, bases0, STEPS), beta=ridge)[0]
  else:
    recon = np_vq(x_ham, bases0, STEPS)[0]
  back = recon.transpose(0, 2, 1).reshape(z.shape).astype(np.float32)
  up = layer.upper_bread(tf.constant(back), training=False).numpy()
  return x.numpy() + layer.residual_scale.numpy() * up


def _layer(x, **settings):
  tf.keras.utils.set_random_seed(1)  # the same breads for every setting
  layer = Hamburger(rank=3, steps=STEPS, name="ham", **settings)
  layer.build(x.shape)
  _converge_sn(layer, x)
  layer.residual_scale.assign(1.0)
  return layer


def _seed_draw(layer, rows, normalize):
  seed = tf.constant(layer.bases_seed.numpy())
  return hams.init_bases(layer.ham, rows, layer._d, layer.rank, seed=seed,
                         normalize=normalize).numpy()


def test_raw_uniform_bases_are_the_normalised_draw_before_its_l2_norm():
  seed = tf.constant([7, 3], tf.int64)
  raw = hams.init_bases("nmf", 4, 16, 5, seed=seed, normalize=False).numpy()
  unit = hams.init_bases("nmf", 4, 16, 5, seed=seed).numpy()
  assert raw.min() >= 0.0 and raw.max() < 1.0  # Uniform[0, 1), not rescaled
  assert np.abs(np.linalg.norm(raw, axis=1) - 1.0).max() > 0.5  # norms ~ sqrt(16/3)
  np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True),
                             rtol=1e-6)


def test_normalize_bases_false_starts_nmf_from_the_raw_draw():
  x = _x(b=2, h=4, w=6, c=8)
  official = _layer(x, normalize_bases=False)
  default = _layer(x)
  got = official(x, training=False).numpy()
  want = _np_layer(official, x, _seed_draw(official, 2, normalize=False))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  # The same raw draw, normalised, is the default's start: a different fit.
  np.testing.assert_allclose(default(x, training=False).numpy(),
                             _np_layer(default, x, _seed_draw(default, 2, normalize=True)),
                             rtol=1e-4, atol=1e-4)
  assert np.abs(got - default(x, training=False).numpy()).max() > 1e-3


def test_cd_ridge_setting_reaches_the_ridge_solve():
  x = _x(b=2, h=4, w=6, c=8)
  official = _layer(x, ham="cd", ridge=0.01)
  default = _layer(x, ham="cd")
  bases0 = _seed_draw(official, 2, normalize=True)
  got = official(x, training=False).numpy()
  np.testing.assert_allclose(got, _np_layer(official, x, bases0, ridge=0.01),
                             rtol=1e-4, atol=1e-4)
  want_default = _np_layer(default, x, bases0, ridge=0.1)
  np.testing.assert_allclose(default(x, training=False).numpy(), want_default,
                             rtol=1e-4, atol=1e-4)
  assert np.abs(got - want_default).max() > 1e-3  # the two ridges fit differently


@pytest.mark.parametrize("ham", ["nmf", "cd", "vq"])
def test_fresh_inference_bases_are_new_on_every_call(monkeypatch, ham):
  x = _x(b=2, h=4, w=6, c=8)
  layer = _layer(x, ham=ham, inference_bases="fresh", normalize_bases=ham != "nmf")
  drawn = []
  real_init = hams.init_bases

  def recording_init(*args, **kwargs):
    drawn.append((kwargs.get("seed"), real_init(*args, **kwargs)))
    return drawn[-1][1]

  monkeypatch.setattr(hams, "init_bases", recording_init)
  seed_before = layer.bases_seed.numpy().copy()
  first = layer(x, training=False).numpy()
  second = layer(x, training=False).numpy()
  np.testing.assert_array_equal(layer.bases_seed.numpy(), seed_before)  # state untouched
  assert len(drawn) == 2 and all(seed is None for seed, _ in drawn)  # stateful draws
  assert np.abs(first - second).max() > 1e-4  # new bases, another fit
  for out, (_, bases) in zip((first, second), drawn):
    np.testing.assert_allclose(out, _np_layer(layer, x, bases.numpy()), rtol=1e-4, atol=1e-4)
  # Training calls still draw from the checkpointed seed, as with "fixed".
  fixed = _layer(x, ham=ham, normalize_bases=ham != "nmf")
  np.testing.assert_allclose(layer(x, training=True).numpy(), fixed(x, training=True).numpy(),
                             rtol=1e-5, atol=1e-5)


def test_fidelity_settings_are_checked():
  with pytest.raises(ValueError, match=r"ridge=0.01 with ham='nmf'"):
    Hamburger(ridge=0.01)
  with pytest.raises(ValueError, match=r"ridge=0: expected a positive float"):
    Hamburger(ham="cd", ridge=0)
  with pytest.raises(ValueError, match=r"inference_bases='always'"):
    Hamburger(inference_bases="always")
  with pytest.raises(ValueError, match=r"init='online' .*init='random' only"):
    Hamburger(init="online", inference_bases="fresh")


def test_mixed_bfloat16_matches_float32():
  """bfloat16 breads, float32 ham: the ham branch within 3% (measured 0.6%)."""
  x = _x(b=2, h=8, w=8, c=16, seed=3)
  tf.keras.utils.set_random_seed(1)
  want_layer = Hamburger(rank=4, steps=STEPS, name="ham32")
  want_layer.build(x.shape)
  want_layer.residual_scale.assign(1.0)
  low = Hamburger(rank=4, steps=STEPS, name="ham32", dtype="mixed_bfloat16")
  low.build(x.shape)
  low.set_weights(want_layer.get_weights())  # same kernels, SN vectors and seed pair
  want = want_layer(x, training=False).numpy()
  got = low(tf.cast(x, tf.bfloat16), training=False)
  assert got.dtype == tf.bfloat16 and low.last_relative_error.dtype == tf.float32
  branch_want = want - x.numpy()
  branch_got = tf.cast(got, tf.float32).numpy() - tf.cast(tf.cast(x, tf.bfloat16),
                                                          tf.float32).numpy()
  err = np.abs(branch_got - branch_want).mean() / np.abs(branch_want).mean()
  assert err < 0.03, err


def test_get_config_round_trip_rebuilds_the_same_layer():
  x = _x()
  layer = _layer(x, ham="cd", groups=2, ridge=0.02, inference_bases="fixed", seed=4)
  config = layer.get_config()
  clone = Hamburger.from_config(config)
  assert clone.get_config() == config
  assert (clone.ridge, clone.normalize_bases, clone.inference_bases) == (0.02, True, "fixed")
  clone.build(x.shape)
  clone.set_weights(layer.get_weights())
  np.testing.assert_array_equal(clone(x, training=False).numpy(),
                                layer(x, training=False).numpy())


def test_checkpoint_round_trip_keeps_outputs_and_variable_names(tmp_path):
  x = _x()
  layer = _layer(x, conditional=True, num_classes=3)
  y = tf.constant([0, 2])
  layer(x, y, training=True)  # move the seed counter and the BN statistics
  want = layer(x, y, training=False).numpy()
  path = tf.train.Checkpoint(layer=layer).write(str(tmp_path / "ckpt"))
  keys = {k for k, _ in tf.train.list_variables(path)} - {"_CHECKPOINTABLE_OBJECT_GRAPH"}
  # The residual scale and the spectral norms keep the variable names of earlier
  # runs ("sigma", "sn_sigma"), so their checkpoints restore into this code.
  assert "layer/sigma/.ATTRIBUTES/VARIABLE_VALUE" in keys
  assert "layer/lower_bread/sn_sigma/.ATTRIBUTES/VARIABLE_VALUE" in keys
  tf.keras.utils.set_random_seed(9)  # other initial weights
  other = Hamburger(rank=3, steps=STEPS, name="ham", conditional=True, num_classes=3)
  other.build(x.shape)
  tf.train.Checkpoint(layer=other).read(path).assert_consumed()
  np.testing.assert_array_equal(other(x, y, training=False).numpy(), want)


@pytest.mark.slow
def test_saved_model_round_trip(tmp_path):
  inputs = tf.keras.Input((4, 6, 8))
  model = tf.keras.Model(inputs, Hamburger(rank=3, steps=STEPS, name="ham")(inputs))
  model.get_layer("ham").residual_scale.assign(0.5)
  x = _x()
  want = model(x, training=False).numpy()
  model.save(str(tmp_path / "model"), save_format="tf")
  restored = tf.keras.models.load_model(str(tmp_path / "model"))
  np.testing.assert_allclose(restored(x, training=False).numpy(), want, rtol=1e-6, atol=1e-6)
  raw = tf.saved_model.load(str(tmp_path / "model"))  # no Python classes needed
  np.testing.assert_allclose(raw(x, training=False).numpy(), want, rtol=1e-6, atol=1e-6)
