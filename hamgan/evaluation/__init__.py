"""Evaluation: FID / Inception Score / KID over many generated samples.

docs/design.md, 'Evaluation protocol'.

Modules, in three parts (features -> metrics -> evaluator):
Features: images in, classifier outputs and real statistics out.
  classifier         load the Inception module (or a local SavedModel) once per process;
                     images in [-1, 1] -> its input size (bilinear).
  latent             z and labels for generation, with the bounded truncation trick.
  features           stream samples through G and the classifier under a strategy.
  real_stats         real-data features, cached on disk under a full key.
  stats_file         mu/sigma .npz export and import (the original FID code's layout).
  digits_classifier  a small digits CNN standing in for Inception in the offline demo.
Metrics: pure functions on features.
  metrics            FID (one formula, one matrix square root), IS, KID, intra-class
                     FID, conditional accuracy: float64 NumPy, or TF-GAN where it imports.
  manifold           precision/recall, density/coverage from k-NN balls, in blocks.
  scoring            every metric of one evaluation, named by its protocol.
Evaluator: a checkpoint or a folder of images in, one row out.
  restore            G rebuilt from the config that trained a step, its weights, and
                     its BN standing statistics recomputed.
  evaluator          milestones/checkpoints -> metrics -> result rows; the watcher.
  image_eval         hamgan-eval --images: a folder of PNG/JPEG files or an .npz, checked
                     before any work, scored against real data/images/stats.

This package is the only place in hamgan that imports `tensorflow_gan`; the import is
kept inside `metrics` so that sampling tools do not need it.
"""
