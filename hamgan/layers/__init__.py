"""Keras layers of hamgan: spectral norm, conditional BN, the Hamburger and attention.

The context modules (`none`, `sagan`, `ylg`, `ham_nmf`, `ham_cd`, `ham_vq`, and any
registered later) are built by name or gin reference with `build_context`; see
`hamgan.layers.registry`.
"""
from hamgan.layers.attention import FullSelfAttention, LocalAttention, SelfAttention
from hamgan.layers.hamburger import Hamburger
from hamgan.layers.normalization import ConditionalBatchNorm
from hamgan.layers.registry import (CONTEXT_NAMES, NoContext, build_context, context_name,
                                    context_names, register_context)
from hamgan.layers.spectral_norm import SNConv2D, SNDense, SNEmbedding, power_iteration
