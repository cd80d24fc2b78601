"""Keras layers of hamgan: spectral norm, conditional BN, the Hamburger and attention.

The context modules (`none`, `sagan`, `ylg`, `ham_nmf`, `ham_cd`, `ham_vq`) are built by
name with `build_context`; see `hamgan.layers.registry`.
"""
from hamgan.layers.normalization import ConditionalBatchNorm
from hamgan.layers.spectral_norm import SNConv2D, SNDense, SNEmbedding, power_iteration
