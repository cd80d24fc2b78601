"""Tests of hamgan.models: layouts, parameter counts, the blocks against NumPy, context
placement and arguments (conditioning, precision, XLA, checkpoints and training:
test_models_behaviour.py)."""
import gin
import numpy as np
import pytest
import tensorflow as tf

from hamgan.layers.registry import CONTEXT_NAMES
from hamgan.models import Discriminator, Generator
from hamgan.models.blocks import DiscriminatorBlock, GeneratorBlock, count_trainable

SMALL = dict(image_size=32, num_classes=5, ch=16)
Z_DIM = 128


def _residual_scales(*models):
  """The context modules' residual scales (trainable, 0 at init), in order."""
  return [m.context_layer.residual_scale for m in models if m.context_layer is not None]


def _inputs(batch, image_size=32, num_classes=5, seed=0):
  rng = np.random.default_rng(seed)
  z = tf.constant(rng.standard_normal((batch, Z_DIM)), tf.float32)
  x = tf.constant(rng.uniform(-1, 1, (batch, image_size, image_size, 3)), tf.float32)
  y = tf.constant(np.arange(batch) % num_classes, tf.int32)
  return z, x, y


def _spy_on_context(model, monkeypatch):
  """Records (input, output) of every call of the model's context layer."""
  layer = model.context_layer
  calls = []
  original = layer.call

  def spy(x, *args, **kwargs):
    out = original(x, *args, **kwargs)
    calls.append((x, out))
    return out
  monkeypatch.setattr(layer, "call", spy)
  return calls


def _tiny(context, **kwargs):
  """ch=8 models for the per-context run (YLG's 8 heads need C % 64 == 0, so 4 here)."""
  settings = {"heads": 4} if context == "ylg" else None
  kwargs = dict(image_size=32, num_classes=5, ch=8, context=context, context_settings=settings,
                **kwargs)
  return Generator(**kwargs), Discriminator(**kwargs)


# ---------------------------------------------------------------------------
# 128x128, ch=64, 1000 classes: the TF-GAN SAGAN reference. Built once.


@pytest.fixture(scope="module")
def sagan128():
  tf.keras.mixed_precision.set_global_policy("float32")
  g = Generator(image_size=128, num_classes=1000, ch=64, context="sagan")
  d = Discriminator(image_size=128, num_classes=1000, ch=64, context="sagan")
  g.build_for_shapes()
  d.build_for_shapes()
  return g, d


@pytest.mark.slow
def test_sagan128_parameter_counts_match_tfgan_reference(sagan128):
  g, d = sagan128
  assert count_trainable(g) == 42_078_852
  assert count_trainable(d) == 39_463_618
  # Spectral-norm vectors and BN moving statistics are state, not parameters.
  assert all("sn_u" in v.name or "sn_sigma" in v.name or "moving" in v.name
             for v in g.non_trainable_weights + d.non_trainable_weights)


@pytest.mark.slow
def test_sagan128_context_input_is_32x32(sagan128, monkeypatch):
  g, d = sagan128
  g_calls = _spy_on_context(g, monkeypatch)
  d_calls = _spy_on_context(d, monkeypatch)
  z, x, y = _inputs(1, image_size=128, num_classes=1000)
  images = g((z, y), training=False)
  logits = d((x, y), training=False)
  assert images.shape == (1, 128, 128, 3) and logits.shape == (1,)
  assert [c[0].shape.as_list() for c in g_calls] == [[1, 32, 32, 256]]
  assert [c[0].shape.as_list() for c in d_calls] == [[1, 32, 32, 128]]


@pytest.mark.slow
def test_sagan128_summary_lists_blocks_context_and_counts(sagan128, capsys):
  g, d = sagan128
  g.summary()
  d.summary()
  text = capsys.readouterr().out
  assert "42,078,852" in text and "39,463,618" in text
  assert "context 'sagan' at 32x32, C=256" in text
  assert "context 'sagan' at 32x32, C=128" in text
  # Every block shows its output shape, in network order.
  g_lines = g.describe().splitlines()
  names = [line.split()[0] for line in g_lines[3:-1]]
  assert names[:5] == ["linear", "block1", "block2", "block3", g.context_layer.name]
  block5 = [line for line in g_lines if line.split()[0] == "block5"]
  assert len(block5) == 1 and "(128, 128, 64)" in block5[0]


def test_describe_builds_a_fresh_model_and_places_the_context():
  g = Generator(context="ham_nmf", **SMALL)
  d = Discriminator(context="none", context_resolution=8, **SMALL)
  g_text, d_text = g.describe(), d.describe()  # neither was called before
  assert "context 'ham_nmf' at 16x16, C=64" in g_text
  assert f"{count_trainable(g):,}" in g_text.splitlines()[-1]
  assert "no context module at 8x8" in d_text
  d_rows = [line.split()[0] for line in d_text.splitlines()[3:-1]]
  assert d_rows == ["block1", "block2", "context:", "block3", "block4", "linear", "embedding"]


# ---------------------------------------------------------------------------
# The blocks against an independent NumPy reference (float64, docs/design.md's order).


def _np_sn_kernel(layer):
  """W / max(1, sigma) with sigma from one power iteration from the stored u."""
  w = layer.kernel.numpy().astype(np.float64)
  w2 = w.reshape(-1, w.shape[-1])  # (k*k*C_in, C_out)
  u = layer.u.numpy().astype(np.float64)
  v = u @ w2.T
  v /= np.linalg.norm(v)
  u = v @ w2
  u /= np.linalg.norm(u)
  return w / max(1.0, (v @ w2 @ u.T).item())  # (1, 1): NumPy >= 2.4 refuses float() of it


def _np_conv(x, layer):
  """'same' convolution, stride 1, with the layer's normalised kernel and bias."""
  w = _np_sn_kernel(layer)
  k, (h, wd) = w.shape[0], x.shape[1:3]
  xp = np.pad(x, ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)))
  out = sum(np.einsum("bhwc,cd->bhwd", xp[:, i:i + h, j:j + wd], w[i, j])
            for i in range(k) for j in range(k))
  return out + layer.bias.numpy()


def _np_bn(x, bn, y):
  """Inference conditional BN: moving statistics, per-class gamma and beta."""
  mean, var = bn.moving_mean.numpy(), bn.moving_variance.numpy()
  gamma, beta = bn.gamma.numpy()[y], bn.beta.numpy()[y]
  return (x - mean) / np.sqrt(var + bn.epsilon) * gamma[:, None, None] + beta[:, None, None]


_relu = lambda a: np.maximum(a, 0.0)
_up = lambda a: a.repeat(2, axis=1).repeat(2, axis=2)
_pool = lambda a: a.reshape(a.shape[0], a.shape[1] // 2, 2, a.shape[2] // 2, 2,
                            a.shape[3]).mean(axis=(2, 4))


def _randomise(layer, rng):
  """Random values for every weight (positive BN variances), so nothing is trivial."""
  for v in layer.weights:
    value = rng.normal(0, 0.5, v.shape)
    if "moving_variance" in v.name:
      value = rng.uniform(0.5, 2.0, v.shape)
    v.assign(value.astype(np.float32))


def test_generator_block_matches_numpy():
  block = GeneratorBlock(5, num_classes=3)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 4, 4, 6)).astype(np.float32)
  y = np.array([2, 0])
  block(x, tf.constant(y), training=False)
  _randomise(block, rng)
  got = block(x, tf.constant(y), training=False).numpy()
  x64 = x.astype(np.float64)
  h = _np_conv(_up(_relu(_np_bn(x64, block.bn0, y))), block.conv1)
  h = _np_conv(_relu(_np_bn(h, block.bn1, y)), block.conv2)
  want = _np_conv(_up(x64), block.shortcut) + h
  assert got.shape == (2, 8, 8, 5)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("in_ch,out_ch,downsample,optimized", [
    (3, 5, True, True), (6, 5, True, False), (5, 5, False, False), (4, 5, False, False)])
def test_discriminator_block_matches_numpy(in_ch, out_ch, downsample, optimized):
  block = DiscriminatorBlock(out_ch, downsample=downsample, optimized=optimized)
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 4, 4, in_ch)).astype(np.float32)
  block(x, training=False)
  _randomise(block, rng)
  got = block(x, training=False).numpy()
  x64 = x.astype(np.float64)
  h = _np_conv(x64 if optimized else _relu(x64), block.conv1)
  h = _np_conv(_relu(h), block.conv2)
  s = x64
  if downsample or in_ch != out_ch:
    s = _np_conv(x64, block.shortcut)
  else:
    assert block.shortcut is None  # identity shortcut: no parameters
  if downsample:
    h, s = _pool(h), _pool(s)
  np.testing.assert_allclose(got, s + h, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------
# Layouts and arguments.


def _expected_params(image_size, ch, k, z_dim=128):
  """Trainable parameters of the documented layouts (no context), counted by hand."""
  conv = lambda kk, ci, co: kk * kk * ci * co + co  # every SN-conv has a bias
  if image_size == 32:
    g_init, g_mults = 4, [4, 4, 4]
    d_opt, d_layout = 4, [(4, True), (4, False), (4, False)]
  else:
    g_init, g_mults = 16, [16, 8, 4, 2, 1][:5 if image_size == 128 else 4]
    d_opt = 1
    d_layout = [(2, True), (4, True), (8, True)] + (
        [(16, True)] if image_size == 128 else []) + [(16, False)]
  g = z_dim * 16 * g_init * ch + 16 * g_init * ch
  c_in = g_init * ch
  for m in g_mults:
    c = m * ch  # two class tables (gamma, beta) per conditional BN
    g += 2 * k * c_in + conv(3, c_in, c) + 2 * k * c + conv(3, c, c) + conv(1, c_in, c)
    c_in = c
  g += 2 * c_in + conv(3, c_in, 3)
  c_in = d_opt * ch
  d = conv(3, 3, c_in) + conv(3, c_in, c_in) + conv(1, 3, c_in)
  for m, down in d_layout:
    c = m * ch
    d += conv(3, c_in, c) + conv(3, c, c) + (conv(1, c_in, c) if down or c != c_in else 0)
    c_in = c
  d += c_in + 1 + k * c_in
  return g, d


@pytest.mark.parametrize("image_size", [32, 64, 128])
def test_layouts_have_documented_shapes_and_counts(image_size):
  ch, k = 4, 7
  g = Generator(image_size=image_size, num_classes=k, ch=ch, context="none")
  d = Discriminator(image_size=image_size, num_classes=k, ch=ch, context="none")
  z, x, y = _inputs(2, image_size=image_size, num_classes=k)
  images = g((z, y), training=True)
  logits = d((images, y), training=True)
  assert images.shape == (2, image_size, image_size, 3) and images.dtype == tf.float32
  assert logits.shape == (2,) and logits.dtype == tf.float32
  assert float(tf.reduce_max(tf.abs(images))) <= 1.0
  assert (count_trainable(g), count_trainable(d)) == _expected_params(image_size, ch, k)
  assert g.context_layer is None and d.context_layer is None
  assert _residual_scales(g, d) == []


def _creates_no_variables(build):
  """Runs `build` (which must raise ValueError); returns the error and variables made."""
  made = []

  def creator(next_creator, **kwargs):
    made.append(kwargs.get("name"))
    return next_creator(**kwargs)
  with tf.variable_creator_scope(creator):
    with pytest.raises(ValueError) as err:
      build()
  return str(err.value), made


@pytest.mark.parametrize("cls,kwargs,needle", [
    (Generator, dict(image_size=48), "image_size=48"),
    (Discriminator, dict(image_size=256), "image_size=256"),
    (Generator, dict(image_size=32, context_resolution=64), "context_resolution=64"),
    (Generator, dict(image_size=128, context_resolution=4), "context_resolution=4"),
    (Discriminator, dict(image_size=32, context_resolution=32), "context_resolution=32"),
    (Discriminator, dict(image_size=64, context_resolution=64), "context_resolution=64"),
    (Generator, dict(context="transformer"), "'transformer'"),
    (Discriminator, dict(context="attention"), "'attention'"),
    (Generator, dict(num_classes=0), "num_classes=0"),
    (Discriminator, dict(num_classes=-3), "num_classes=-3"),
    (Generator, dict(ch=0), "ch=0"),
    (Discriminator, dict(ch=2.5), "ch=2.5"),
    (Generator, dict(z_dim=0), "z_dim=0"),
    (Generator, dict(context_settings=["rank", 8]), "context_settings"),
    (Discriminator, dict(context="ham_nmf", context_settings=dict(conditional=True)),
     "conditional=True"),
    # Settings the context layer itself rejects also fail at construction.
    (Generator, dict(image_size=32, ch=4, context="ham_nmf"), "rank=32"),
    (Discriminator, dict(image_size=32, ch=4, context="ylg"), "multiple of 64"),
    (Generator, dict(context="ylg", context_settings=dict(heads=3)), "heads"),
])
def test_bad_arguments_raise_before_any_weight(cls, kwargs, needle):
  message, made = _creates_no_variables(lambda: cls(**kwargs))
  assert needle in message
  assert made == []


def test_inputs_of_the_wrong_shape_are_rejected():
  g = Generator(context="none", **SMALL)
  d = Discriminator(context="none", **SMALL)
  with pytest.raises(ValueError, match="expected \\(batch, 128\\)"):
    g((tf.zeros([2, 64]), tf.zeros([2], tf.int32)))
  with pytest.raises(ValueError, match="expected \\(batch, 32, 32, 3\\)"):
    d((tf.zeros([2, 64, 64, 3]), tf.zeros([2], tf.int32)))
  assert g.weights == [] and d.weights == []  # nothing was built with the wrong shape


def test_unknown_context_error_lists_the_valid_names():
  message, _ = _creates_no_variables(lambda: Generator(context="transformer"))
  for name in CONTEXT_NAMES:
    assert name in message


def test_context_resolution_error_lists_reachable_ones():
  message, _ = _creates_no_variables(lambda: Discriminator(image_size=32, context_resolution=32))
  assert "[8, 16]" in message


def test_gin_bindings_configure_both_models():
  gin.clear_config()
  try:
    gin.parse_config([
        "Generator.ch = 8",
        "Generator.image_size = 32",
        "hamgan.models.Generator.context = 'ham_nmf'",
        "Discriminator.ch = 4",
        "Discriminator.image_size = 64",
        "Discriminator.context_resolution = 16",
    ])
    g, d = Generator(), Discriminator()
  finally:
    gin.clear_config()
  assert (g.ch, g.image_size, g.context, g.context_resolution) == (8, 32, "ham_nmf", 16)
  assert (d.ch, d.image_size, d.context, d.context_resolution) == (4, 64, "sagan", 16)


def test_get_config_round_trips():
  g = Generator(context="ham_cd", context_settings={"rank": 8}, **SMALL)
  d = Discriminator(context="ylg", context_resolution=8, **SMALL)
  g2 = Generator.from_config(g.get_config())
  d2 = Discriminator.from_config(d.get_config())
  assert g2.get_config() == g.get_config() and d2.get_config() == d.get_config()
  z, x, y = _inputs(2)
  g((z, y)), g2((z, y)), d((x, y)), d2((x, y))
  assert count_trainable(g2) == count_trainable(g)
  assert count_trainable(d2) == count_trainable(d)


def test_hamburger_is_conditional_in_g_only(monkeypatch):
  g = Generator(context="ham_nmf", **SMALL)
  d = Discriminator(context="ham_nmf", **SMALL)
  assert g.context_layer.conditional and g.context_layer.num_classes == SMALL["num_classes"]
  assert not d.context_layer.conditional
  assert d.context_layer.rank == 16 and g.context_layer.rank == 32
  # G feeds its labels to the Hamburger: with distinct class tables in its upper-bread
  # BN, relabelling changes the module's output for the same input and bases.
  rng = np.random.default_rng(4)
  for v in g.context_layer.trainable_variables:
    if "norm" in v.name:
      v.assign(v + rng.normal(0, 0.5, v.shape).astype(np.float32))
  g.context_layer.residual_scale.assign(1.0)
  calls = _spy_on_context(g, monkeypatch)
  z, _, _ = _inputs(2)
  outs = []
  for labels in ([0, 1], [0, 3]):
    tf.random.set_seed(9)  # the same random initial bases for both calls
    g((z, tf.constant(labels)), training=False)
    outs.append(calls[-1][1].numpy())
  np.testing.assert_allclose(outs[0][0], outs[1][0], atol=1e-5)
  assert np.abs(outs[0][1] - outs[1][1]).mean() > 1e-3
