"""The context registry: every name builds a working module; unknown names are listed."""
import numpy as np
import pytest
import tensorflow as tf

from hamgan.layers import CONTEXT_NAMES, build_context, register_context
from hamgan.layers.registry import NoContext


def test_names_are_the_documented_ones():
  assert CONTEXT_NAMES == ("none", "sagan", "ylg", "ham_nmf", "ham_cd", "ham_vq")


@pytest.mark.parametrize("name", CONTEXT_NAMES)
def test_every_module_keeps_shape_and_starts_as_identity(name):
  layer = build_context(name, 64, **({"rank": 4} if name.startswith("ham") else {}))
  x = tf.random.normal([2, 8, 8, 64])
  out = layer(x, training=True)
  assert out.shape == x.shape
  np.testing.assert_allclose(out.numpy(), x.numpy(), atol=1e-6)
  if name != "none":
    assert float(layer.residual_scale.numpy()) == 0.0


def test_unknown_name_lists_the_valid_ones():
  with pytest.raises(ValueError) as err:
    build_context("ham_svd", 16)
  for name in CONTEXT_NAMES:
    assert name in str(err.value)
  with pytest.raises(ValueError, match="channels"):
    build_context("sagan", 0)


def test_settings_reach_the_layer_and_users_can_register():
  ham = build_context("ham_cd", 32, rank=8, steps=3, groups=2)
  assert (ham.ham, ham.rank, ham.steps, ham.groups) == ("cd", 8, 3, 2)

  @register_context("test_identity_twice")
  def _build(channels, **settings):
    return NoContext(**settings)

  assert isinstance(build_context("test_identity_twice", 4), NoContext)
  with pytest.raises(ValueError, match="already registered"):
    register_context("test_identity_twice")(_build)
