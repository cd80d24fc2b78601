"""SAGAN/YLG-style class-conditional generator and discriminator (docs/design.md, 'Models').

Both take their global-context module from the context registry
(`hamgan.layers.registry`, by gin reference or name),
so the same networks compare self-attention, YLG and the Hamburgers on one footing.
"""
from hamgan.models.discriminator import Discriminator
from hamgan.models.generator import Generator

