"""The context-module registry: a global-context layer built by name or gin reference.

Models never import a context layer directly; they call
`build_context(context, channels, **settings)`, so swapping self-attention for a
Hamburger is a setting, not an edited file. A context is chosen like the losses, by
gin reference (`Generator.context = @ham_nmf`, or `@hamgan.contexts.ham_nmf`), or by
its name as a string (`Generator.context = 'ham_nmf'`). Every builder is a gin
configurable in module `hamgan.contexts`, so `ham_nmf.rank = 16` sets a default that
`context_settings` can still override. Every product is called as
`layer(x, y=None, training=None)` on NHWC input and returns the same shape. Users add
their own with `@register_context("name")`, at any time: nothing is frozen at import.
"""
import gin
import tensorflow as tf

from hamgan.layers.attention import LocalAttention, SelfAttention
from hamgan.layers.hamburger import Hamburger

_REGISTRY = {}


GIN_MODULE = "hamgan.contexts"


def register_context(name):
  """Decorator: registers `builder(channels, **settings) -> layer` under `name`.

  Returns the gin-configurable form of the builder, the object a gin reference
  `@name` resolves to, so the registry can map a reference back to its name.
  """
  if not isinstance(name, str) or not name.isidentifier():
    raise ValueError(f"context module name {name!r}: expected a Python identifier (gin "
                     "refers to it as @name), e.g. 'my_attention'.")

  def wrap(builder):
    if name in _REGISTRY:
      raise ValueError(f"context module {name!r} is already registered; pick another name.")
    _REGISTRY[name] = gin.external_configurable(builder, name=name, module=GIN_MODULE)
    return _REGISTRY[name]
  return wrap


class NoContext(tf.keras.layers.Layer):
  """The `none` context: returns its input unchanged (the no-attention baseline)."""

  def call(self, x, y=None, training=None, segments=1):
    del y, training, segments
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

# The built-in names, in registration order (for docs and tests); `context_names()`
# is the live list, which includes contexts registered later.
CONTEXT_NAMES = tuple(_REGISTRY)


def context_names():
  """Names accepted by build_context, the built-in ones and any registered later."""
  return tuple(_REGISTRY)


def context_name(context):
  """The registered name of `context`: a name string or a builder from a gin reference.

  Raises a ValueError listing the valid names when it is neither.
  """
  if isinstance(context, str):
    if context in _REGISTRY:
      return context
  else:
    for name, builder in _REGISTRY.items():
      if context is builder:
        return name
  raise ValueError(f"unknown context module {context!r}; expected one of "
                   f"{', '.join(context_names())} as a name or a gin reference "
                   "(e.g. @ham_nmf), or register one with "
                   "hamgan.layers.registry.register_context.")


def check_context_name(context):
  """Raises a ValueError listing the valid names when `context` is not registered."""
  context_name(context)


def build_context(context, channels, **settings):
  """Builds the context module `context` (a name or a gin reference) for `channels` channels."""
  name = context_name(context)
  if isinstance(channels, bool) or int(channels) < 1:
    raise ValueError(f"build_context({name!r}): channels={channels!r}; expected a positive "
                     "integer (the channel count of the feature map the module sits on).")
  return _REGISTRY[name](int(channels), **settings)
