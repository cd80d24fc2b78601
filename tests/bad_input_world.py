"""The inputs of tests/test_bad_input.py: good and bad files, run directories, a classifier.

Everything under one folder; the rows name it W. Kept apart from the table so that the
test file reads as the table and the checks on it.
"""
import hashlib
import os

import numpy as np
import tensorflow as tf

from hamgan import images as image_io
from hamgan.evaluation import restore
from hamgan.models import Generator
from test_evaluation import StandInClassifier, _real_images

RUN_CONFIG = """hamgan.models.Generator.ch = 4
hamgan.models.Generator.context = 'none'
hamgan.models.Generator.image_size = 32
hamgan.models.Generator.num_classes = 10
hamgan.models.Generator.z_dim = 16
train.dataset = 'digits'
"""
TINY = ["Generator.ch = 2", "Discriminator.ch = 2", "Generator.z_dim = 8",
        "Generator.context_settings = {'rank': 2, 'steps': 2}",
        "Discriminator.context_settings = {'rank': 2, 'steps': 2}",
        "train.batch_size = 4", "train.num_steps = 2", "train.steps_per_loop = 2",
        "train.log_every = 2", "train.summary_every = 2", "train.checkpoint_every = 2"]


def _make_run(path):
  """A run directory as hamgan-train writes it: config, ckpt-10 and ckpt-20 of a small G."""
  os.makedirs(path)
  with open(os.path.join(path, "operative_config.gin"), "w") as f:
    f.write(RUN_CONFIG)
  g = Generator(image_size=32, num_classes=10, ch=4, z_dim=16, context="none")
  restore.build_generator(g)
  step = tf.Variable(0, dtype=tf.int64)
  manager = tf.train.CheckpointManager(
      tf.train.Checkpoint(generator=g, ema_generator=g, step=step),
      os.path.join(path, "checkpoints"), max_to_keep=5)
  for s in (10, 20):
    step.assign(s)
    manager.save(checkpoint_number=s)


def _stats(path, mu, sigma):
  np.savez(path, mu=mu, sigma=sigma)


def build(w):
  """Writes every input the rows name into the folder `w` (W in the rows); returns w."""
  tf.saved_model.save(StandInClassifier(seed=0), str(w / "clf"))
  np.savez(w / "v.npz", images=image_io.to_uint8(_real_images(20, seed=1)))
  np.savez(w / "real.npz", images=image_io.to_uint8(_real_images(20, seed=2)))
  for name, value in (("nan", np.nan), ("inf", np.inf)):
    x = _real_images(20, seed=3)
    x[4, 1, 2, 0] = value
    np.savez(w / f"{name}.npz", images=x)
  os.makedirs(w / "pngs")
  for i, image in enumerate(image_io.to_uint8(_real_images(4, seed=5))):
    image_io.write_png(str(w / "pngs" / f"img_{i}.png"), image)
  rng = np.random.default_rng(0)
  features = rng.normal(size=(40, 10))
  sigma = np.cov(features, rowvar=False)
  _stats(w / "good.npz", features.mean(0), sigma)
  _stats(w / "asym.npz", np.zeros(10), sigma + np.triu(np.full((10, 10), 0.5), 1))
  flipped = np.eye(10)
  flipped[3, 3] = -2.0
  _stats(w / "nonpsd.npz", np.zeros(10), flipped)
  _stats(w / "nanmu.npz", np.full(10, np.nan), sigma)
  inf_sigma = sigma.copy()
  inf_sigma[2, 2] = np.inf
  _stats(w / "infsigma.npz", np.zeros(10), inf_sigma)
  (w / "afile.txt").write_text("a file, not a folder\n")
  os.makedirs(w / "adir.npz")
  os.makedirs(w / "adir")
  os.symlink(w / "v.npz", w / "link_to_v.json")
  _make_run(str(w / "run"))
  for name in ("run_bad_config", "run_bad_state", "run_truncated"):
    _make_run(str(w / name))
  (w / "run_bad_config" / "operative_config.gin").write_text("Generator.ch = = ((\n")
  (w / "run_bad_state" / "checkpoints" / "checkpoint").write_text("garbage {{{\n")
  data = next(p for p in (w / "run_truncated" / "checkpoints").iterdir()
              if p.name.startswith("ckpt-20.data"))
  data.write_bytes(data.read_bytes()[:100])
  os.makedirs(w / "out_with_dir" / "comparison.md")
  (w / "checkpoints_file_run").mkdir()
  (w / "checkpoints_file_run" / "checkpoints").write_text("not a folder\n")
  return w


def digest(path):
  """sha256 of a file's bytes, or of a folder's names and bytes; None if absent."""
  if not os.path.lexists(path):
    return None
  h = hashlib.sha256()
  if os.path.isdir(path):
    for root, dirs, names in os.walk(path):
      dirs.sort()
      for name in sorted(names):
        h.update(os.path.relpath(os.path.join(root, name), path).encode() + b"\0")
        h.update(digest(os.path.join(root, name)).encode())
  else:
    with open(path, "rb") as f:
      h.update(f.read())
  return h.hexdigest()
