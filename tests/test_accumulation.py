"""Tests for gradient accumulation (train.accumulation_steps): k micro-batches, one update."""
import shutil

import numpy as np
import pytest
import tensorflow as tf

from hamgan.layers import spectral_norm
from hamgan.training import trainer as trainer_lib
import step_harness as harness
import test_training

EVERYTHING = dict(diffaugment="color,translation,cutout", lecam_weight=0.5,
                  mode_seeking_weight=0.1, mode_seeking_form="msgan")


def _sn_layers(model):
  return [layer for layer in model.submodules
          if isinstance(layer, (spectral_norm.SNConv2D, spectral_norm.SNDense,
                                spectral_norm.SNEmbedding))]


@pytest.mark.parametrize("options", [{}, EVERYTHING], ids=["plain", "everything"])
def test_two_micro_batches_update_d_and_g_like_one_batch(tmp_path, options):
  """D's and then G's update with k = 2 micro-batches of 4 equal one step at batch 8
  (G without batch norm, both from identical weights and SN vectors); the SN vectors end
  one power iteration on, as after one step; the metrics agree."""
  one = harness.trainer(tmp_path / "one", **options)
  two = harness.trainer(tmp_path / "two", accumulation_steps=2, **options)
  harness.copy_state(one, two)
  images, labels = harness.real_batch(8)
  u0 = [layer.u.numpy() for layer in _sn_layers(one.discriminator)]
  kernels = [tf.reshape(layer.kernel if hasattr(layer, "kernel") else layer.embeddings,
                        [-1, layer.u.shape[1]]).numpy()
             for layer in _sn_layers(one.discriminator)]
  d_before, g_before = harness.values(one.discriminator), harness.values(one.generator)

  count = 6 if options else 4
  metrics_one = harness.run_iteration(one, images, labels, harness.seeds(count))
  metrics_two = harness.run_iteration(two, images, labels, harness.seeds(count))
  np.testing.assert_allclose(metrics_two, metrics_one, rtol=1e-5)
  moved_d = harness.assert_same_update(one.discriminator, two.discriminator, d_before)
  moved_g = harness.assert_same_update(one.generator, two.generator, g_before)
  assert moved_d > 1e-3 and moved_g > 1e-3, "an update too small to compare"
  # D ran in training mode in D's step (weights W0) and in G's (W1, after D's update):
  # two power iterations in all, one per optimizer step, however many micro-batches.
  for layer, u, w0 in zip(_sn_layers(two.discriminator), u0, kernels):
    w1 = tf.reshape(layer.kernel if hasattr(layer, "kernel") else layer.embeddings,
                    w0.shape)
    u1, _, _ = spectral_norm.power_iteration(tf.constant(w0), tf.constant(u))
    u2, _, _ = spectral_norm.power_iteration(w1, u1)
    np.testing.assert_allclose(layer.u.numpy(), u2.numpy(), rtol=1e-5, atol=1e-6,
                               err_msg=layer.name)
  assert int(two.d_optimizer.iterations.numpy()) == 1 == int(two.step.numpy())
  if options:
    np.testing.assert_allclose(two.lecam_ema.numpy(), one.lecam_ema.numpy(), rtol=1e-5)


def test_micro_batches_on_two_replicas_match_one_device(tmp_path, two_cpu_strategy):
  """k = 2 micro-batches on each of two replicas (4 rows each, 2 per micro-batch) move G
  and D as one device does with the whole batch of 8, every option on."""
  one = harness.trainer(tmp_path / "one", **EVERYTHING)
  two = harness.trainer(tmp_path / "two", strategy=two_cpu_strategy, accumulation_steps=2,
                        **EVERYTHING)
  harness.copy_state(one, two)
  images, labels = harness.real_batch(8)
  before = [harness.values(one.discriminator), harness.values(one.generator)]
  m_one = harness.run_iteration(one, images, labels, harness.seeds(6))
  m_two = harness.run_iteration(two, images, labels, harness.seeds(6))
  np.testing.assert_allclose(m_two, m_one, rtol=1e-5)
  for (a, b), w0 in zip(((one.discriminator, two.discriminator),
                         (one.generator, two.generator)), before):
    assert harness.assert_same_update(a, b, w0) > 1e-3
  np.testing.assert_allclose(two.lecam_ema.numpy(), one.lecam_ema.numpy(), rtol=1e-5)


def test_micro_batched_step_lowers_to_xla(tmp_path):
  """With jit_compile=True (as on a TPU) the replica step with k = 2 micro-batches and
  every option lowers to HLO with static shapes: G's micro-batch of 4 rows is two
  halves of 2 for the mode-seeking term (4 without micro-batches)."""
  t = harness.trainer(tmp_path, jit_compile=True, accumulation_steps=2, float64=False,
                      **EVERYTHING)
  images, labels = harness.real_batch(8)
  real = ((tf.constant(images), tf.constant(labels)),)
  hlo = t.replica_step_fn.experimental_get_compiler_ir(real, harness.seeds(6))(stage="hlo")
  assert "ENTRY" in hlo and "f32[8,32,32,3]" in hlo  # the replica's real batch
  assert "f32[2,32,32,3]" in hlo


def test_bad_accumulation_steps_are_refused_before_anything_is_built(tmp_path,
                                                                     two_cpu_strategy):
  assert trainer_lib.TrainConfig().accumulation_steps == 1  # off by default
  for bad in (0, 1.5, "2"):
    with pytest.raises(ValueError, match="accumulation_steps"):
      harness.config(accumulation_steps=bad)
  with pytest.raises(ValueError, match="accumulation_steps=3 does not divide "
                                       "train.batch_size=8"):
    harness.config(accumulation_steps=3)
  # 8 over two replicas is 4 per replica: 8 divides the global batch, not the replica's.
  with pytest.raises(ValueError, match=r"does not divide the batch per replica, 4 .*"
                                       r"\[1, 2, 4\]"):
    harness.trainer(tmp_path, strategy=two_cpu_strategy, accumulation_steps=8)
  with pytest.raises(ValueError, match="micro-batches of 1, not even"):
    harness.trainer(tmp_path, accumulation_steps=8, mode_seeking_weight=0.1)
  assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_resume_with_micro_batches_continues_like_an_uninterrupted_run(tmp_path):
  """Through the real loop (train): k = 2 with DiffAugment and LeCam on, a run restarted
  from its step-2 checkpoint ends at step 4 where the uninterrupted run does, and the
  step counter, the optimizers' iterations and the checkpoints count optimizer steps."""
  settings = dict(num_steps=4, steps_per_loop=4, checkpoint_every=2, log_every=2,
                  summary_every=4, ema_start_step=1, resume_input="skip",
                  accumulation_steps=2, diffaugment="color,translation,cutout",
                  lecam_weight=0.5, optimizer_fn="adam", g_lr=1e-3, d_lr=1e-3)
  whole = harness.trainer(tmp_path / "whole", **settings)
  whole.train(num_steps=2)
  assert int(whole.d_optimizer.iterations.numpy()) == 2  # one update per step, not k
  assert test_training._newest_step(tmp_path / "whole") == 2
  shutil.copytree(tmp_path / "whole", tmp_path / "restarted")
  whole.train()
  restarted = harness.trainer(tmp_path / "restarted", **settings)
  assert int(restarted.step.numpy()) == 2
  restarted.train()
  assert int(restarted.step.numpy()) == 4 == int(restarted.g_optimizer.iterations.numpy())
  for attr in ("generator", "discriminator", "ema_generator"):
    a, b = getattr(whole, attr), getattr(restarted, attr)
    for va, vb in zip(a.variables, b.variables):
      np.testing.assert_allclose(vb.numpy(), va.numpy(), rtol=1e-6, atol=1e-7,
                                 err_msg=va.name)
  np.testing.assert_array_equal(restarted.lecam_ema.numpy(), whole.lecam_ema.numpy())
  np.testing.assert_array_equal(restarted.rng.state.numpy(), whole.rng.state.numpy())
  assert test_training._newest_step(tmp_path / "restarted") == 4

