"""State that survives a restart honestly; optimizers chosen by reference."""
import logging as std_logging

from absl import logging
import numpy as np
import pytest
import tensorflow as tf

from hamgan import checkpoints
from hamgan import models
from hamgan import run_dir
from hamgan.training import fault_tolerance
from hamgan.training import optimizers
from hamgan.training import trainer as trainer_lib
import fault_injection
import test_training  # the fixed random data stream of the trainer's tests

NUM_CLASSES = 10  # the digits data set's


def _model_fns(ch=2):
  def generator_fn(name):
    return models.Generator(image_size=32, num_classes=NUM_CLASSES, ch=ch, z_dim=8,
                            context="none", name=name)

  def discriminator_fn(name):
    return models.Discriminator(image_size=32, num_classes=NUM_CLASSES, ch=ch,
                                context="none", name=name)
  return generator_fn, discriminator_fn


def _fixed_dataset_fn(num_examples=32):
  return test_training._dataset_fn(num_examples, num_classes=NUM_CLASSES)


def _config(**overrides):
  settings = dict(batch_size=4, num_steps=2, steps_per_loop=2, log_every=1000,
                  summary_every=1000, checkpoint_every=2, ema_start_step=0,
                  ema_decay=0.5, seed=3, mixed_precision="float32")
  settings.update(overrides)
  return trainer_lib.TrainConfig(**settings)


def _trainer(model_dir, config, dataset_fn="fixed"):
  g_fn, d_fn = _model_fns()
  return trainer_lib.Trainer(
      str(model_dir), config, generator_fn=g_fn, discriminator_fn=d_fn,
      dataset_fn=_fixed_dataset_fn() if dataset_fn == "fixed" else dataset_fn)


@pytest.fixture
def absl_records(caplog):
  caplog.set_level(std_logging.INFO, logger=logging.get_absl_logger().name)
  return caplog


def test_rollback_in_the_last_loop_writes_no_done_and_reports_no_success(tmp_path):
  run = tmp_path / "run"
  trainer = _trainer(run, _config(num_steps=4))
  # The last loop (steps 3-4) sees NaN images; the guard rolls back to ckpt-2 once.
  hooks = [fault_tolerance.DivergenceGuard(max_rollbacks=1), fault_injection.PoisonData(2)]
  with pytest.raises(fault_tolerance.DivergenceError, match="after 1 rollback"):
    trainer.train(hooks=hooks)
  assert not (run / run_dir.DONE_FILE).exists()
  assert [s for s, _ in checkpoints.list_checkpoints(str(run))] == [2]


def test_a_learning_rate_changed_between_launches_is_applied_with_a_log_line(
    tmp_path, absl_records):
  run = tmp_path / "run"
  _trainer(run, _config(g_lr=1e-4, d_lr=4e-4)).train()
  again = _trainer(run, _config(num_steps=4, g_lr=3e-4, d_lr=4e-4))
  assert again.g_optimizer.learning_rate.numpy() == pytest.approx(3e-4)
  assert again.d_optimizer.learning_rate.numpy() == pytest.approx(4e-4)
  lines = [r.getMessage() for r in absl_records.records if "replaces the checkpoint" in
           r.getMessage()]
  assert lines == ["train.g_lr = 0.0003 from the config replaces the checkpoint's 0.0001, "
                   "from step 2 on (a rate lowered by a divergence rollback is not kept "
                   "across launches: bind train.g_lr to keep it)."]
  again.train()  # the new rate is the one trained with and saved
  reader = tf.train.load_checkpoint(checkpoints.list_checkpoints(str(run))[-1][1])
  saved = {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
           if k.startswith("g_optimizer/") and "learning_rate" in k}
  assert list(saved.values()) and all(v == pytest.approx(3e-4) for v in saved.values())


def _first_images(trainer):
  images, _ = next(trainer._iterator)  # pylint: disable=protected-access
  return images.numpy()


def test_a_resumed_fresh_pipeline_does_not_replay_the_first_order(tmp_path):
  run = tmp_path / "run"
  config = _config(dataset="digits", resume_input="fresh")
  first = _trainer(run, config, dataset_fn=None)
  order_at_start = _first_images(first)
  first.train()
  resumed = [_first_images(_trainer(run, config, dataset_fn=None)) for _ in range(2)]
  # Not the order the run began with, and reproducible: the seed is (seed, resume step).
  assert not np.allclose(resumed[0], order_at_start)
  np.testing.assert_array_equal(resumed[0], resumed[1])
  # A run that starts at step 0 again gets the first order back (same seed, no step).
  fresh_run = _first_images(_trainer(tmp_path / "other", config, dataset_fn=None))
  np.testing.assert_array_equal(fresh_run, order_at_start)


def test_optimizer_chosen_by_reference_and_unknown_name_rejected(tmp_path):
  trainer = _trainer(tmp_path / "run", _config(optimizer_fn=optimizers.sgd_momentum,
                                               beta1=0.5))
  assert isinstance(trainer.g_optimizer, tf.keras.optimizers.SGD)
  assert trainer.g_optimizer.momentum == 0.5
  assert trainer.g_optimizer.learning_rate.numpy() == pytest.approx(1e-4)
  with pytest.raises(ValueError, match="optimizer 'rmsprop' is not known.*@adam"):
    _config(optimizer_fn="rmsprop")
