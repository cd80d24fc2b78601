"""hamgan: Hamburger (matrix decomposition) GANs in TensorFlow 2 / Keras.

Sub-packages: layers (the Keras layers), models (generator and discriminator),
data (input pipelines), training (strategy, losses, trainer), evaluation (FID/IS),
bench (benchmarks) and cli (command-line entry points). TF-GAN is imported only
inside hamgan.evaluation.
"""
__version__ = "0.1.0"
