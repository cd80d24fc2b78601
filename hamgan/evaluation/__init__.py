"""Evaluation: FID / Inception Score / KID over many generated samples.

docs/design.md, 'Evaluation protocol'.

Modules, one concept each:
  classifier         load the Inception module (or a local SavedModel) once per process.
  preprocessing      images in [-1, 1] -> the classifier's input size (bilinear).
  metrics            FID / IS / KID from features, with TF-GAN's functions.
  features           stream samples through G and the classifier under a strategy.
  real_stats         real-data features, cached on disk under a full key.
  run_dir            the training run directory: checkpoints, gin config, G restore.
  evaluator          checkpoints -> metrics -> eval/results.jsonl (+ sample grids).
  images             sample grids and PNG writing.
  digits_classifier  a small digits CNN standing in for Inception in the offline demo.

This package is the only place in hamgan that imports `tensorflow_gan`; the import is
kept inside `metrics` so that sampling tools do not need it.
"""
