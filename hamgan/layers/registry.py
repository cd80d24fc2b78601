"""The context-module registry: a global-context layer built by name.

Models never import a context layer directly; they call
`build_context(name, channels, **settings)`, so swapping self-attention for a
Hamburger is a setting (`Generator.context = "ham_nmf"`), not an edited file.
Every product is called as `layer(x, y=None, training=None)` on NHWC input and
returns the same shape. Users add their own with `@register_context("name")`.
"""
import tensorflow as tf

from hamgan.layers.attention import LocalAttention, SelfAttention
from hamgan.layers.hamburger import Hamburger

_REGISTRY = {}


def register_context(name):
  """Decorator: registers `builder(channels, **settings) -> layer` under `name`."""
  def wrap(builder):
    if name in _REGISTRY:
      raise ValueError(f"context module {name!r} is already registered; pick another name.")
    _REGISTRY[name] = builder
    return builder
  return wrap


class NoContext(tf.keras.layers.Layer):
  """The `none` context: returns its input unchanged (the no-attention baseline)."""

  def call(self, x, y=None, training=None):
    return x


@register_context("none")
def _none(channels, **settings):
  del channels
  return NoContext(**settings)


@register_context("sagan")
def _sagan(channels, **settings):
  del channels
  return SelfAttention(**settings)


@register_context("ylg")
def _ylg(channels, **settings):
  del channels
  return LocalAttention(**settings)


def _hamburger(ham):
  def build(channels, **settings):
    del channels  # the layer derives dim = channels // groups in build, and checks it
    return Hamburger(ham=ham, **settings)
  return build


for _ham in ("nmf", "cd", "vq"):
  register_context(f"ham_{_ham}")(_hamburger(_ham))

CONTEXT_NAMES = tuple(_REGISTRY)


def context_names():
  """Names accepted by build_context, the built-in ones and any registered later."""
  return tuple(_REGISTRY)


def check_context_name(name):
  """Raises a ValueError listing the valid names when `name` is not registered."""
  if name not in _REGISTRY:
    raise ValueError(f"unknown context module {name!r}; expected one of "
                     f"{', '.join(context_names())} (or register one with "
                     "hamgan.layers.registry.register_context).")


def build_context(name, channels, **settings):
  """Builds the context module `name` for feature maps with `channels` channels."""
  check_context_name(name)
  if int(channels) < 1:
    raise ValueError(f"build_context({name!r}): channels={channels!r}; expected a positive "
                     "integer (the channel count of the feature map the module sits on).")
  return _REGISTRY[name](int(channels), **settings)
