"""Evaluation: FID / Inception Score / KID over many generated samples.

docs/design.md, 'Evaluation protocol'.

Modules, one concept each:
  classifier         load the Inception module (or a local SavedModel) once per process;
                     images in [-1, 1] -> its input size (bilinear).
  metrics            FID / IS / KID / intra-class FID from features: the float64 NumPy
                     formulas, and TF-GAN's functions where TF-GAN imports.
  latent             z and labels for generation, with the bounded truncation trick.
  features           stream samples through G and the classifier under a strategy.
  real_stats         real-data features, cached on disk under a full key.
  restore            G rebuilt from the config that trained a step, its weights, and
                     its BN standing statistics recomputed.
  evaluator          milestones/checkpoints -> metrics -> result rows (hamgan.run_dir).
  manifold           precision/recall, density/coverage from k-NN balls, in blocks.
  scoring            every metric of one evaluation, named by its protocol.
  image_eval         hamgan-eval --images: a folder of PNG/JPEG files or an .npz, checked
                     before any work, scored against real data/images/stats.
  stats_file         mu/sigma .npz export and import (the original FID code's layout).
  digits_classifier  a small digits CNN standing in for Inception in the offline demo.

This package is the only place in hamgan that imports `tensorflow_gan`; the import is
kept inside `metrics` so that sampling tools do not need it.
"""
