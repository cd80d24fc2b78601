"""Tests for hamgan.training: losses, strategy choice, the distributed trainer."""
import json
import os
import shutil

import gin
import numpy as np
import pytest
import tensorflow as tf

from hamgan import checkpoints
from hamgan import models
from hamgan import run_dir
from hamgan.layers.registry import CONTEXT_NAMES
from hamgan.training import losses
from hamgan.training import strategy as strategy_lib
from hamgan.training import summaries
from hamgan.training import trainer as trainer_lib
from hamgan.training.hooks import Action, Hook

NUM_CLASSES = 3


def _newest_step(model_dir):
  """The step of the newest listed checkpoint of a run, or 0."""
  found = checkpoints.list_checkpoints(str(model_dir))
  return found[-1][0] if found else 0


def _model_fns(context="none", ch=2):
  """Tiny 32x32 G and D builders with the trainer's `fn(name=...)` signature."""
  settings = {"rank": 2} if context.startswith("ham_") else None
  if context == "ylg":  # C/8 channels split over heads: 2 heads keep the model tiny
    settings, ch = {"heads": 2}, max(ch, 8)
  def generator_fn(name):
    return models.Generator(image_size=32, num_classes=NUM_CLASSES, ch=ch, z_dim=8,
                            context=context, context_settings=settings, name=name)

  def discriminator_fn(name):
    return models.Discriminator(image_size=32, num_classes=NUM_CLASSES, ch=ch,
                                context=context, context_settings=settings, name=name)
  return generator_fn, discriminator_fn


def _dataset_fn(num_examples=48, num_classes=NUM_CLASSES):
  """A fixed, ordered stream of random images and labels, batched per replica."""
  rng = np.random.RandomState(7)
  images = rng.uniform(-1, 1, (num_examples, 32, 32, 3)).astype(np.float32)
  labels = rng.randint(0, num_classes, num_examples).astype(np.int32)

  def fn(input_context, per_replica_batch):
    del input_context
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).repeat()
    return ds.batch(per_replica_batch, drop_remainder=True)
  return fn


def _config(**overrides):
  settings = dict(batch_size=4, num_steps=2, steps_per_loop=2, log_every=1000,
                  summary_every=1000, checkpoint_every=1000, ema_start_step=0,
                  ema_decay=0.5, seed=3)
  settings.update(overrides)
  return trainer_lib.TrainConfig(**settings)


def _trainer(model_dir, config, strategy=None, context="none"):
  g_fn, d_fn = _model_fns(context)
  return trainer_lib.Trainer(str(model_dir), config, strategy=strategy, generator_fn=g_fn,
             discriminator_fn=d_fn, dataset_fn=_dataset_fn())


def _values(model):
  return [v.numpy() for v in model.variables]


# ------------------------------------------------------------------ losses


def test_losses_match_numpy_formulas_per_example():
  d_real = np.array([2.0, 0.5, -1.5, 0.0], np.float32)
  d_fake = np.array([-2.0, 0.3, 1.2, -0.7], np.float32)
  d, g = losses.hinge(tf.constant(d_real), tf.constant(d_fake))
  np.testing.assert_allclose(
      d, np.maximum(0, 1 - d_real) + np.maximum(0, 1 + d_fake), rtol=1e-6)
  np.testing.assert_allclose(g, -d_fake, rtol=1e-6)
  d, g = losses.non_saturating(tf.constant(d_real), tf.constant(d_fake))
  sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
  np.testing.assert_allclose(
      d, -np.log(sigmoid(d_real)) - np.log(1 - sigmoid(d_fake)), rtol=1e-5)
  np.testing.assert_allclose(g, -np.log(sigmoid(d_fake)), rtol=1e-5)
  # The G step has no real batch: D's loss is None, G's is unchanged.
  none_d, g_only = losses.non_saturating(None, tf.constant(d_fake))
  assert none_d is None
  np.testing.assert_allclose(g_only, g, rtol=1e-6)
  assert d.shape == (4,) and g.shape == (4,)


def test_non_saturating_generator_gradient_does_not_vanish():
  # Where D confidently rejects a fake (logit -8), the saturating log(1 - D) objective
  # has gradient sigmoid(-8) ~ 3e-4; the non-saturating one keeps it near 1.
  logit = tf.constant([-8.0])
  with tf.GradientTape() as tape:
    tape.watch(logit)
    _, g = losses.non_saturating(None, logit)
  grad = float(tape.gradient(g, logit)[0])
  assert grad == pytest.approx(-1 / (1 + np.exp(-8.0)), rel=1e-5)


def test_loss_selected_by_gin_reference_and_unknown_name_rejected():
  gin.clear_config()
  try:
    gin.parse_config(["train.loss_fn = @non_saturating", "train.batch_size = 8"])
    config = trainer_lib.TrainConfig()
    assert config.loss_fn is losses.non_saturating and config.batch_size == 8
  finally:
    gin.clear_config()
  assert trainer_lib.TrainConfig().loss_fn is losses.hinge
  with pytest.raises(ValueError, match="hinge"):
    trainer_lib.TrainConfig(loss_fn="wasserstein")


def test_config_rejects_bad_values_with_the_fix():
  with pytest.raises(ValueError, match="batch_size=0"):
    trainer_lib.TrainConfig(batch_size=0)
  with pytest.raises(ValueError, match="ema_decay=1.5"):
    trainer_lib.TrainConfig(ema_decay=1.5)
  with pytest.raises(ValueError, match="mixed_float8"):
    trainer_lib.TrainConfig(mixed_precision="mixed_float8")


# ------------------------------------------------------------------ strategy


@pytest.mark.parametrize("tpu,gpus,tf_config,kind", [
    ("local", 0, None, strategy_lib.TPU),
    ("my-tpu", 8, '{"cluster": {"worker": ["a:1", "b:1"]}}', strategy_lib.TPU),
    (None, 4, '{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", '
     '"index": 1}}', strategy_lib.MULTI_WORKER),
    (None, 0, '{"cluster": {"chief": ["a:1"], "worker": ["b:1"]}}',
     strategy_lib.MULTI_WORKER),
    (None, 2, '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}',
     strategy_lib.MIRRORED),
    (None, 1, "", strategy_lib.DEFAULT),
    (None, 0, None, strategy_lib.DEFAULT),
])
def test_choose_strategy_kind(tpu, gpus, tf_config, kind):
  assert strategy_lib.choose_strategy_kind(tpu, gpus, tf_config) == kind


def test_bad_tf_config_names_the_problem():
  with pytest.raises(ValueError, match="not valid JSON"):
    strategy_lib.choose_strategy_kind(None, 0, "{worker: [")
  with pytest.raises(ValueError, match="not a JSON object"):
    strategy_lib.choose_strategy_kind(None, 0, "[1, 2]")


def test_resolve_strategy_on_cpu_is_default_and_logged(monkeypatch):
  monkeypatch.delenv("TF_CONFIG", raising=False)
  # Capture the log call itself: whether absl records reach pytest's caplog depends on
  # how earlier tests in the process set absl logging up.
  messages = []
  monkeypatch.setattr(strategy_lib.logging, "info",
                      lambda msg, *args: messages.append(msg % args if args else msg))
  strategy = strategy_lib.resolve_strategy()
  assert strategy is tf.distribute.get_strategy()
  assert strategy.num_replicas_in_sync == 1
  assert any("1 replica" in m for m in messages)


# ------------------------------------------------------------------ helpers


def test_grid_layout_and_classes():
  assert summaries.grid_classes(3) == [0, 1, 2]
  classes = summaries.grid_classes(1000)
  assert len(classes) == 10 and classes[0] == 0 and classes[-1] == 999
  # Image k of the grid is a constant picture of value k: check where each lands.
  rows, cols, s = 2, 3, 4
  values = np.linspace(-1, 1, rows * cols)
  images = np.ones((rows * cols, s, s, 3), np.float32) * values[:, None, None, None]
  grid = summaries.make_grid(images, rows, cols)
  assert grid.shape == (rows * s, cols * s, 3) and grid.dtype == np.uint8
  for k in range(rows * cols):
    r, c = divmod(k, cols)
    assert grid[r * s, c * s, 0] == np.clip(np.rint((values[k] + 1) * 127.5), 0, 255)
  z, y = summaries.grid_inputs([4, 7], 3, z_dim=5, seed=1)
  assert z.shape == (6, 5) and list(y) == [4, 4, 4, 7, 7, 7]


def test_batch_not_divisible_by_replicas_fails_before_building(tmp_path, two_cpu_strategy):
  with pytest.raises(ValueError, match="multiple of 2"):
    _trainer(tmp_path, _config(batch_size=5), strategy=two_cpu_strategy)
  assert not (tmp_path / "checkpoints").exists()


def test_jit_compile_on_several_mirrored_devices_is_refused(tmp_path, two_cpu_strategy):
  # XLA cannot place one compiled step's variable updates on two devices ("Trying to
  # access resource ... located in device CPU:1 from device CPU:0"): say so up front.
  with pytest.raises(ValueError, match="jit_compile=False"):
    _trainer(tmp_path, _config(jit_compile=True), strategy=two_cpu_strategy)


# ------------------------------------------------------------------ the step


@pytest.mark.parametrize("context", ["sagan", "ham_nmf"])
def test_two_replicas_match_one_device(tmp_path, two_cpu_strategy, context):
  """Acceptance 1: 2 steps on 2 logical CPUs == 2 steps on one, from the same state.

  Adam's step is lr * g / (|g| + eps): with the default eps=1e-8 the float noise in
  gradients that are mathematically zero (conv biases in front of batch norm) is
  scaled up to full +-lr steps, which no change of summation order can reproduce.
  With eps=1 and lr=1 the step is ~g itself, so float noise stays float noise and
  the comparison is about the distributed computation: global-batch scaling, the
  split of data and draws over replicas, synchronised SN vectors and BN moments;
  with ham_nmf also the Hamburgers' random bases, sliced from the global batch's
  draw (the trainer declares D's concatenated real+fake batch with segments=2 in the D call).
  """
  config = _config(batch_size=8, g_lr=1.0, d_lr=1.0, epsilon=1.0)
  one = _trainer(tmp_path / "one", config, context=context)
  two = _trainer(tmp_path / "two", config, strategy=two_cpu_strategy, context=context)
  models_one = (one.generator, one.discriminator, one.ema_generator)
  models_two = (two.generator, two.discriminator, two.ema_generator)
  for a, b in zip(models_one, models_two):
    for va, vb in zip(a.variables, b.variables):
      vb.assign(va.numpy())
  before = [_values(m) for m in models_one]
  metrics_one = one.run_loop(2)
  metrics_two = two.run_loop(2)
  for name in trainer_lib.METRIC_NAMES:
    assert metrics_two[name] == pytest.approx(metrics_one[name], rel=1e-5, abs=1e-6)
  atol = 1e-6
  if context.startswith("ham_"):
    # The bases themselves: same seed state, and the reconstruction error of the
    # last call (a direct function of the bases drawn; 2% apart when D's two
    # segments are not declared, about 2e-5 when they are: the summary comes from a
    # float32 expansion that never forms the reconstruction, hams.squared_errors).
    for a, b in zip(models_one, models_two):
      ham_a, ham_b = a.context_layer, b.context_layer
      assert ham_a.bases_seed.numpy()[1] == 4  # D step + G step, twice
      np.testing.assert_array_equal(ham_b.bases_seed.numpy(), ham_a.bases_seed.numpy())
      np.testing.assert_allclose(ham_b.last_relative_error.numpy(),
                                 ham_a.last_relative_error.numpy(), rtol=1e-4)
    # NMF's multiplicative updates divide by small denominators: with lr=1 some
    # weights (Hamburger sigma, D's blocks) end up apart by float noise, as much with
    # deterministic init="online" bases as with random ones: 6e-6 measured on TF 2.21,
    # 5.9e-5 on TF 2.15 (36 of 576 elements of one D kernel, 1.2e-3 relative). A
    # replica that drew or scaled its share wrongly is off by the weights' own size.
    atol = 1e-4
  for a, b, w0 in zip(models_one, models_two, before):
    wa, wb = _values(a), _values(b)
    update = np.sqrt(sum(np.sum((x - y) ** 2) for x, y in zip(wa, w0)))
    assert update > 1e-3, f"{a.name} barely moved; the comparison would be vacuous"
    for va, x, y in zip(a.variables, wa, wb):
      np.testing.assert_allclose(y, x, rtol=1e-5, atol=atol, err_msg=va.name)
  assert int(two.step.numpy()) == 2


@pytest.mark.parametrize("context", CONTEXT_NAMES)
def test_replica_step_lowers_to_xla_for_every_context(tmp_path, context):
  """Acceptance 2: the whole jit_compile=True replica step (D step, G step, EMA merge,
  step counter) lowers to XLA HLO with static shapes for every context module.

  Lowering (tf2xla) is where unsupported ops and non-constant shapes fail; the
  slow test below also runs the machine-code compile and a step.
  """
  trainer = _trainer(tmp_path, _config(jit_compile=True), context=context)
  b = trainer.per_replica_batch
  real = ((tf.random.uniform([b, 32, 32, 3], -1, 1), tf.zeros([b], tf.int32)),)
  seeds = tf.constant([[1, 2, 3, 4], [5, 6, 7, 8]], tf.int64)
  hlo = trainer.replica_step_fn.experimental_get_compiler_ir(real, seeds)(stage="hlo")
  assert "ENTRY" in hlo
  # Static per-replica shapes: the real batch enters as f32[b,32,32,3].
  assert f"f32[{b},32,32,3]" in hlo


@pytest.mark.slow
def test_xla_compiled_step_trains_hamburger_models(tmp_path):
  trainer = _trainer(tmp_path, _config(jit_compile=True), context="ham_nmf")
  g0, d0 = _values(trainer.generator), _values(trainer.discriminator)
  metrics = trainer.run_loop(1)
  assert all(np.isfinite(v) for v in metrics.values())
  for w0, model in ((g0, trainer.generator), (d0, trainer.discriminator)):
    moved = sum(not np.array_equal(a, b) for a, b in zip(w0, _values(model)))
    assert moved > len(w0) // 3
  for model in (trainer.generator, trainer.discriminator):
    # The Hamburger's residual scale starts at 0 and receives a gradient.
    assert float(model.context_layer.residual_scale.numpy()) != 0.0


def _read_events(model_dir):
  tags = set()
  for path in tf.io.gfile.glob(os.path.join(model_dir, "summaries", "events.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      tags.update(v.tag for v in event.summary.value)
  return tags


@pytest.mark.parametrize("context", ["sagan", "ham_nmf"])
def test_ema_then_restart_continues_like_an_uninterrupted_run(tmp_path, context):
  """EMA semantics, then acceptance 3: a run restarted from its step-2 checkpoint
  ends at step 4 where the uninterrupted run does (weights, EMA, RNG state)."""
  config = _config(num_steps=4, steps_per_loop=4, checkpoint_every=2, log_every=2,
                   summary_every=4, ema_start_step=1, ema_decay=0.75, resume_input="skip")
  whole = _trainer(tmp_path / "whole", config, context=context)
  trainable = {id(v) for v in whole.generator.trainable_variables}
  averaged = [id(v) in trainable for v in whole.generator.variables]
  whole.run_loop(1)  # step 0 < ema_start_step: the EMA is a copy of G
  g1 = _values(whole.generator)
  for e, g in zip(_values(whole.ema_generator), g1):
    np.testing.assert_array_equal(e, g)
  whole.train(num_steps=2)  # step 1: EMA = 0.75 EMA + 0.25 G; state copied; ckpt-2
  g2 = _values(whole.generator)
  moved = 0
  for e, a, b, avg in zip(_values(whole.ema_generator), g1, g2, averaged):
    np.testing.assert_allclose(e, 0.75 * a + 0.25 * b if avg else b, rtol=1e-5, atol=1e-7)
    moved += int(avg and not np.allclose(a, b))
  assert moved > 5
  assert _newest_step(str(tmp_path / "whole")) == 2
  assert not (tmp_path / "whole" / run_dir.DONE_FILE).exists()

  # The "killed" run: only what is on disk at step 2 survives.
  shutil.copytree(tmp_path / "whole", tmp_path / "restarted")
  whole.train()
  restarted = _trainer(tmp_path / "restarted", config, context=context)
  assert int(restarted.step.numpy()) == 2
  restarted.train()

  for a, b in ((whole.generator, restarted.generator),
               (whole.discriminator, restarted.discriminator),
               (whole.ema_generator, restarted.ema_generator)):
    for va, x, y in zip(a.variables, _values(a), _values(b)):
      np.testing.assert_allclose(y, x, rtol=1e-6, atol=1e-7, err_msg=va.name)
  np.testing.assert_array_equal(whole.rng.state.numpy(), restarted.rng.state.numpy())

  run = tmp_path / "restarted"
  assert _newest_step(str(run)) == 4
  assert json.loads((run / run_dir.DONE_FILE).read_text())["step"] == 4
  rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows] == [2, 4]
  assert {"d_loss", "g_loss", "d_real", "d_fake", "steps_per_sec", "images_per_sec",
          "wall_time"} <= set(rows[-1])
  reader = tf.train.load_checkpoint(str(run / "checkpoints" / "ckpt-4"))
  keys = {k.split("/")[0] for k in reader.get_variable_to_shape_map()}
  assert {"generator", "discriminator", "ema_generator", "g_optimizer", "d_optimizer",
          "step", "rng"} <= keys
  assert (run / run_dir.OPERATIVE_CONFIG).exists()
  png = tf.io.decode_png((run / "samples" / "step_4.png").read_bytes()).numpy()
  assert png.shape == (NUM_CLASSES * 32, config.grid_columns * 32, 3)
  tags = _read_events(str(run))
  assert {"losses/d_loss", "losses/g_loss", "discriminator/d_real", "discriminator/d_fake",
          "learning_rate/generator", "learning_rate/discriminator", "speed/steps_per_sec",
          "speed/images_per_sec", "context/generator_residual_scale",
          "context/discriminator_residual_scale",
          "samples"} <= tags


class _StopAfterFirstLoop(Hook):

  def __init__(self):
    self.seen = []

  def after_loop(self, trainer, step, metrics):
    self.seen.append((step, sorted(metrics)))
    return Action.STOP

  def before_save(self, trainer, step, metrics):
    return Action.SKIP_SAVE  # e.g. a NaN guard refusing to save


def test_hooks_stop_and_veto_saves_and_hamburger_summaries(tmp_path):
  trainer = _trainer(tmp_path, _config(num_steps=6, steps_per_loop=2, summary_every=1000,
                                       d_steps=2), context="ham_nmf")
  hook = _StopAfterFirstLoop()
  trainer.train(hooks=[hook])
  # The first loop runs one step: it traces the loop and times it (loop_control).
  assert hook.seen == [(1, sorted(trainer_lib.METRIC_NAMES))]
  assert int(trainer.step.numpy()) == 1
  # d_steps=2: two D updates per G update.
  assert int(trainer.d_optimizer.iterations.numpy()) == 2
  assert int(trainer.g_optimizer.iterations.numpy()) == 1
  assert _newest_step(str(tmp_path)) == 0
  assert not (tmp_path / run_dir.DONE_FILE).exists()
  # The summaries written at the stop include the Hamburgers' ham reconstruction error.
  tags = _read_events(str(tmp_path))
  assert {"context/generator_ham_relative_error",
          "context/discriminator_ham_relative_error"} <= tags
  error = float(trainer.generator.context_layer.last_relative_error.numpy())
  assert 0.0 < error < 1.0


@pytest.mark.slow
def test_mixed_bfloat16_policy_trains_with_float32_weights(tmp_path):
  trainer = _trainer(tmp_path, _config(mixed_precision="mixed_bfloat16"), context="sagan")
  assert trainer.policy == "mixed_bfloat16"
  assert trainer.generator.compute_dtype == "bfloat16"
  assert all(v.dtype == tf.float32 for v in trainer.generator.trainable_variables)
  g0 = _values(trainer.generator)
  metrics = trainer.run_loop(2)
  assert all(np.isfinite(v) for v in metrics.values())
  assert sum(not np.array_equal(a, b) for a, b in zip(g0, _values(trainer.generator))) > 5
  images = trainer.sample(np.zeros((2, 8), np.float32), np.array([0, 2], np.int32))
  assert images.dtype == np.float32 and np.all(np.abs(images) <= 1.0)


@pytest.mark.slow
def test_mixed_bfloat16_step_matches_float32_from_the_same_state(tmp_path):
  """The TPU default policy: one step from identical state (every variable, the SN
  vectors and BN statistics included) gives the float32 step's losses and updates.

  Bounds, measured here on this model (ch 8, NMF Hamburger): losses within 5% of
  max(1, |loss|) (measured 0.3% for D, 3.7% for G); the Adam updates (+-lr per element
  on the first step) agree in sign for >= 90% of the elements (measured 97.6%; the
  rest had gradients too small for bfloat16) and differ by at most 35% in norm
  (measured 17%).
  """
  def make(name, policy):
    g_fn, d_fn = _model_fns("ham_nmf", ch=8)
    return trainer_lib.Trainer(str(tmp_path / name), _config(mixed_precision=policy),
                               generator_fn=g_fn, discriminator_fn=d_fn,
                               dataset_fn=_dataset_fn())
  full, mixed = make("float32", "float32"), make("bf16", "mixed_bfloat16")
  assert mixed.discriminator.compute_dtype == "bfloat16"
  for attr in ("generator", "discriminator", "ema_generator"):
    for a, b in zip(getattr(full, attr).variables, getattr(mixed, attr).variables):
      b.assign(a)
  weights = lambda t: t.generator.trainable_variables + t.discriminator.trainable_variables  # noqa: E731
  before = [v.numpy() for v in weights(full)]
  m_full, m_mixed = full.run_loop(1), mixed.run_loop(1)
  for key in ("d_loss", "g_loss", "d_real", "d_fake"):
    assert abs(m_mixed[key] - m_full[key]) <= 0.05 * max(1.0, abs(m_full[key])), (
        key, m_full[key], m_mixed[key])
  step = lambda t: np.concatenate([(v.numpy() - b).ravel() for v, b in zip(weights(t), before)])  # noqa: E731
  u_full, u_mixed = step(full), step(mixed)
  assert np.mean(np.sign(u_mixed) == np.sign(u_full)) >= 0.9
  assert np.linalg.norm(u_mixed - u_full) <= 0.35 * np.linalg.norm(u_full)
