"""SAGAN/YLG-style class-conditional generator and discriminator (docs/design.md, 'Models').

Both take their global-context module by registry name (`hamgan.layers.registry`),
so the same networks compare self-attention, YLG and the Hamburgers on one footing.
"""
from hamgan.models.discriminator import Discriminator
from hamgan.models.generator import Generator


def context_sigmas(*models):
  """All context modules' residual scales `sigma` of the given models, in order.

  The trainer logs them: how far each model has opened its context branch.
  """
  return [s for m in models for s in m.context_sigmas()]
