"""The context registry: every name builds a working module; unknown names are listed;
gin references choose a context as the names do, and later registrations are seen."""
import gin
import numpy as np
import pytest
import tensorflow as tf

from hamgan.layers import CONTEXT_NAMES, build_context, context_names, register_context
from hamgan.layers import registry
from hamgan.layers.registry import NoContext
from hamgan.models import Discriminator, Generator


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


@pytest.fixture
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


def test_gin_reference_chooses_the_context_like_a_name(clean_gin):
  gin.parse_config("""
      Generator.context = @ham_cd
      Discriminator.context = @hamgan.contexts.sagan
      ham_cd.rank = 4
      Generator.context_settings = {'steps': 2}
  """)
  g = Generator(image_size=32, num_classes=3, ch=8)
  d = Discriminator(image_size=32, num_classes=3, ch=8)
  assert (g.context, d.context) == ("ham_cd", "sagan")  # reported by name
  layer = g.context_layer  # the gin default and the explicit settings both arrive
  assert (layer.ham, layer.rank, layer.steps) == ("cd", 4, 2)
  assert g.get_config()["context"] == "ham_cd"
  # Explicit settings override the gin defaults of the builder.
  assert build_context(registry.context_name("ham_cd"), 32, rank=8).rank == 8


def test_a_context_registered_after_import_is_named_and_referenced(clean_gin):
  @register_context("test_late_identity")
  def _build(channels, **settings):
    del channels
    return NoContext(**settings)

  assert "test_late_identity" in context_names()  # nothing frozen at import
  assert registry.context_name(_build) == "test_late_identity"
  gin.parse_config("Generator.context = @test_late_identity")
  g = Generator(image_size=32, num_classes=3, ch=8)
  assert g.context == "test_late_identity" and isinstance(g.context_layer, NoContext)
  with pytest.raises(ValueError, match="expected a Python identifier"):
    register_context("not a name")
  with pytest.raises(ValueError, match=r"Generator: unknown context module .*test_late"):
    Generator(image_size=32, num_classes=3, ch=8, context=len)
