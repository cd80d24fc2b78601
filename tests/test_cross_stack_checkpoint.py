"""A training checkpoint written on one stack restores on the other (tpu <-> current).

tests/fixtures/cross_stack/<stack>/ holds a checkpoint of a tiny Hamburger GAN after two
training steps (G, D, EMA G, both Adams with their slots, step, RNG), written by that
stack, and the EMA generator's images for fixed inputs as computed there. Each stack
restores both fixtures: every saved value must find its object, the variable names
and shapes must be those this stack writes itself, and the restored EMA generator must
draw the same images. Re-make a fixture on its own stack with
`python tests/test_cross_stack_checkpoint.py` (it writes the running stack's folder).
"""
import hamgan  # noqa: F401  (first: routes tf.keras to tf-keras when run as a script)

from importlib import metadata
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import pytest
import tensorflow as tf

from hamgan import checkpoints
from hamgan import models
from hamgan.training import trainer as trainer_lib

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "cross_stack")
STACKS = ("tpu", "current")
CLASSES, Z_DIM = 3, 8


def this_stack():
  """'tpu' where TF < 2.16 (the TF-GAN stack), else 'current'."""
  major, minor = (int(p) for p in tf.__version__.split(".")[:2])
  return "tpu" if (major, minor) < (2, 16) else "current"


def _trainer(model_dir):
  settings = {"rank": 2}

  def generator_fn(name):
    return models.Generator(image_size=32, num_classes=CLASSES, ch=2, z_dim=Z_DIM,
                            context="ham_nmf", context_settings=settings, name=name)

  def discriminator_fn(name):
    return models.Discriminator(image_size=32, num_classes=CLASSES, ch=2,
                                context="ham_nmf", context_settings=settings, name=name)

  rng = np.random.RandomState(7)
  images = rng.uniform(-1, 1, (8, 32, 32, 3)).astype(np.float32)
  labels = rng.randint(0, CLASSES, 8).astype(np.int32)

  def dataset_fn(input_context, per_replica_batch):
    del input_context
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).repeat()
    return ds.batch(per_replica_batch, drop_remainder=True)

  config = trainer_lib.TrainConfig(
      batch_size=4, num_steps=2, steps_per_loop=2, log_every=1000, summary_every=1000,
      checkpoint_every=1000, ema_start_step=0, ema_decay=0.5, seed=3)
  return trainer_lib.Trainer(model_dir, config, generator_fn=generator_fn,
                             discriminator_fn=discriminator_fn, dataset_fn=dataset_fn)


def _fixed_inputs():
  rng = np.random.RandomState(11)
  return rng.normal(size=(6, Z_DIM)).astype(np.float32), np.arange(6, dtype=np.int32) % CLASSES


def _train_and_save(model_dir):
  """Two training steps and the final checkpoint; returns (trainer, checkpoint path)."""
  trainer = _trainer(model_dir)
  trainer.train()
  return trainer, checkpoints.list_checkpoints(model_dir)[-1][1]  # the full state


def write_fixture(out_dir):
  """Writes this stack's fixture: ckpt.index/.data, the EMA images and the versions."""
  with tempfile.TemporaryDirectory() as model_dir:
    trainer, path = _train_and_save(model_dir)
    if os.path.isdir(out_dir):
      shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    for suffix in (".index", ".data-00000-of-00001"):
      shutil.copy(path + suffix, os.path.join(out_dir, "ckpt" + suffix))
  np.save(os.path.join(out_dir, "ema_images.npy"), trainer.sample(*_fixed_inputs()))
  with open(os.path.join(out_dir, "written_by.json"), "w") as f:
    json.dump({"tensorflow": tf.__version__, "tf_keras": metadata.version("tf-keras"),
               "python": sys.version.split()[0], "numpy": np.__version__}, f, indent=1)


@pytest.fixture(scope="module")
def own_variables(tmp_path_factory):
  """(name, shape) of every variable in a checkpoint this stack writes itself."""
  _, path = _train_and_save(str(tmp_path_factory.mktemp("own")))
  return sorted((name, tuple(shape)) for name, shape in tf.train.list_variables(path))


@pytest.mark.parametrize("stack", STACKS)
def test_checkpoint_restores_across_stacks(stack, own_variables, tmp_path):
  prefix = os.path.join(FIXTURES, stack, "ckpt")
  stored = sorted((name, tuple(shape)) for name, shape in tf.train.list_variables(prefix))
  assert stored == own_variables  # same names and shapes on both stacks
  trainer = _trainer(str(tmp_path))
  # Every value in the fixture lands in a variable of this stack's trainer, and back.
  trainer.checkpoint.restore(prefix).assert_consumed()
  reader = tf.train.load_checkpoint(prefix)
  assert int(trainer.step.numpy()) == 2 == reader.get_tensor(checkpoints.STEP_KEY)
  want = np.load(os.path.join(FIXTURES, stack, "ema_images.npy"))
  got = trainer.sample(*_fixed_inputs())
  assert np.abs(want).max() > 1e-3  # real images, not zeros
  np.testing.assert_allclose(got, want, atol=2e-5)


if __name__ == "__main__":
  write_fixture(os.path.join(FIXTURES, this_stack()))
  print(f"wrote {os.path.join(FIXTURES, this_stack())}")
