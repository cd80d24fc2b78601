"""Shared by the tests of the train step's options (accumulation, DiffAugment, LeCam,
mode seeking): a G without batch norm, a small D, trainers with plain SGD, and one
iteration run directly on one device or on the replicas of a strategy (eagerly: no
loop to trace, so these tests stay fast)."""
from unittest import mock

import numpy as np
import tensorflow as tf

from hamgan import models
from hamgan.layers.spectral_norm import SNDense
from hamgan.training import trainer as trainer_lib
import test_training

NUM_CLASSES = test_training.NUM_CLASSES
EPS32 = float(np.finfo(np.float32).eps)


class LinearGenerator(tf.keras.Model):
  """G((z, y)) = tanh((z + e_y) W / sigma) as 32x32x3 images: no batch norm, so a
  micro-batch computes exactly its rows of a whole batch's forward pass. Its variables
  are float32 whatever the policy (the EMA generator's update is float32)."""

  def __init__(self, name):
    super().__init__(name=name)
    self.z_dim, self.num_classes, self.image_size = 8, NUM_CLASSES, 32
    self.table = self.add_weight(
        name="class_embedding", shape=(NUM_CLASSES, 8), dtype=tf.float32,
        initializer=tf.keras.initializers.RandomNormal(stddev=0.5),
        experimental_autocast=False)
    self.dense = SNDense(32 * 32 * 3, use_bias=False)

  def call(self, inputs, training=None):
    z, y = inputs
    # A one-hot product, not a gather: its gradient sums the rows in the compute dtype
    # before the one cast to float32 (a gather's casts each row first).
    one_hot = tf.one_hot(y, NUM_CLASSES, dtype=self.compute_dtype)
    h = tf.cast(z, self.compute_dtype) + tf.matmul(one_hot,
                                                   tf.cast(self.table, self.compute_dtype))
    h = self.dense(h, training=training)
    return tf.tanh(tf.reshape(h, [-1, 32, 32, 3]))


def small_discriminator(name):
  """hamgan's D at 32x32, ch 2, no context: spectral norm, no batch norm."""
  return models.Discriminator(image_size=32, num_classes=NUM_CLASSES, ch=2,
                              context="none", name=name)


def config(**overrides):
  """The trainer tests' config with plain SGD at rate 1: an update is minus the gradient."""
  settings = dict(batch_size=8, optimizer_fn="sgd_momentum", beta1=0.0, g_lr=1.0, d_lr=1.0)
  settings.update(overrides)
  return test_training._config(**settings)


def trainer(model_dir, strategy=None, generator_fn=LinearGenerator,
            discriminator_fn=small_discriminator, float64=True, **overrides):
  """A Trainer of these models. With `float64` its models compute under the float64
  policy: forward and backward passes sum in float64 (the SN kernels stay float32
  variables, cast where used; the losses stay float32 per example), so two orders of
  summation agree to float64 rounding and only float32 storage is left to allow for."""
  resolve = trainer_lib._resolve_policy
  policy = mock.patch.object(
      trainer_lib, "_resolve_policy",
      lambda setting, strategy: "float64" if float64 else resolve(setting, strategy))
  with policy:
    return trainer_lib.Trainer(str(model_dir), config(**overrides), strategy=strategy,
                               generator_fn=generator_fn, discriminator_fn=discriminator_fn,
                               dataset_fn=test_training._dataset_fn())


def copy_state(source, *targets):
  """Every variable of G, D and the EMA G (SN vectors included) from `source`."""
  for target in targets:
    for attr in ("generator", "discriminator", "ema_generator"):
      for a, b in zip(getattr(source, attr).variables, getattr(target, attr).variables):
        b.assign(a.numpy())


def real_batch(n, seed=0):
  rng = np.random.RandomState(seed)
  return (rng.uniform(-1, 1, (n, 32, 32, 3)).astype(np.float32),
          rng.randint(0, NUM_CLASSES, n).astype(np.int32))


def seeds(count, start=1):
  """A (2, count) int64 seed matrix, as the trainer's rng.make_seeds(count) gives."""
  return tf.constant(np.arange(start, start + 2 * count).reshape(2, count), tf.int64)


def run_iteration(t, images, labels, seed_matrix):
  """One iteration (d_steps=1) of trainer `t` on the global batch (images, labels):
  each replica gets its rows, as the distributed input would give them. Returns the
  metrics summed over replicas (the global means)."""
  strategy = t.strategy
  replicas = strategy.num_replicas_in_sync
  if replicas == 1:
    return t._replica_step(((tf.constant(images), tf.constant(labels)),),
                           seed_matrix).numpy()
  b = len(images) // replicas

  def rows(ctx):
    r = ctx.replica_id_in_sync_group
    return tf.constant(images[r * b:(r + 1) * b]), tf.constant(labels[r * b:(r + 1) * b])
  batch = strategy.experimental_distribute_values_from_function(rows)
  out = strategy.run(t._replica_step, args=((batch,), seed_matrix))
  return strategy.reduce(tf.distribute.ReduceOp.SUM, out, axis=None).numpy()


def values(model):
  return [v.numpy().astype(np.float64) for v in model.variables]


def assert_same_update(model_a, model_b, before):
  """The two models moved alike from `before`. Per element the updates may differ by
  8 float32 epsilons of the weight and of its update (a float32 gradient stored into a
  float32 weight) plus sqrt(n) epsilons of the variable's largest update, n its size:
  the typical rounding of the one float32 sum left in a float64 pass, the spectral
  norm's sum of gradient x kernel over the n kernel elements. Returns the largest
  update seen."""
  largest = 0.0
  for va, vb, w0 in zip(model_a.variables, model_b.variables, before):
    a, b = va.numpy().astype(np.float64), vb.numpy().astype(np.float64)
    da, db = a - w0, b - w0
    scale = float(np.max(np.abs(da))) if da.size else 0.0
    allowed = EPS32 * (np.sqrt(da.size) * scale
                       + 8 * (np.maximum(np.abs(a), np.abs(b)) + np.abs(da)))
    error = np.abs(da - db)
    worst = int(np.argmax(error - allowed)) if error.size else 0
    assert np.all(error <= allowed), (
        f"{va.name}: element {worst} moved by {da.flat[worst]:.6g} and {db.flat[worst]:.6g}"
        f" (difference {error.flat[worst]:.3g}, allowed {allowed.flat[worst]:.3g})")
    largest = max(largest, scale)
  return largest


def gradients_by_variable(model, grads):
  """{id(variable): float64 gradient} for the model's trainable variables."""
  return {id(v): None if g is None else tf.convert_to_tensor(g).numpy().astype(np.float64)
          for v, g in zip(model.trainable_variables, grads)}


def assert_update_equals(model, before, expected):
  """Every trainable variable moved from `before` by expected[id(variable)], within the
  rounding allowed by assert_same_update. Returns the largest update seen."""
  largest = 0.0
  for v, w0 in zip(model.variables, before):
    if id(v) not in expected or expected[id(v)] is None:
      continue
    after = v.numpy().astype(np.float64)
    want, moved = expected[id(v)], after - w0
    scale = float(np.max(np.abs(want)))
    allowed = EPS32 * (np.sqrt(want.size) * scale
                       + 8 * (np.abs(after) + np.abs(want)))
    error = np.abs(moved - want)
    worst = int(np.argmax(error - allowed))
    assert np.all(error <= allowed), (
        f"{v.name}: element {worst} moved by {moved.flat[worst]:.6g}, expected "
        f"{want.flat[worst]:.6g} (allowed difference {allowed.flat[worst]:.3g})")
    largest = max(largest, scale)
  return largest


def snapshot(t):
  """The values of every variable of G and D (SN vectors included)."""
  return [[v.numpy() for v in m.variables] for m in (t.generator, t.discriminator)]


def restore(t, saved):
  for model, values_ in zip((t.generator, t.discriminator), saved):
    for v, value in zip(model.variables, values_):
      v.assign(value)
