"""hamgan: Hamburger (matrix decomposition) GANs in TensorFlow 2 / Keras.

Sub-packages: layers (the Keras layers), models (generator and discriminator),
data (input pipelines), training (strategy, losses, trainer), evaluation (FID/IS),
compare (the hamgan-compare report), bench (benchmarks) and cli (command-line entry
points); run_dir owns a run's directory (layout, configs, result rows), checkpoints
its checkpoints, run_config reads a saved gin config as data, files reads and writes
local or gs:// paths. TF-GAN is imported only
inside hamgan.evaluation.metrics, and only where it imports (the `tpu` stack).
"""
import os

# The layers are Keras 2 layers. TensorFlow >= 2.16 routes `tf.keras` to Keras 3
# unless this is set when `tf.keras` is first touched; with it, both stacks (TF 2.15
# and the current TF) route `tf.keras` to the tf-keras package. Importing hamgan
# (every CLI, the tests' conftest) sets it, so no user has to.
os.environ["TF_USE_LEGACY_KERAS"] = "1"

__version__ = "0.1.0"
