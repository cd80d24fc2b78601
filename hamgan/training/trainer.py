"""The distributed GAN trainer: one train step for every tf.distribute strategy.

One training iteration (docs/design.md, 'Training recipe') is `d_steps` discriminator updates,
each on its own real batch of the global batch size B and B fresh samples, then
one generator update on B fresh samples ("batch 256" = 256 real images for the
D step and 256 samples for the G step), then an update of the EMA generator.
Per-example losses are scaled by the global batch (`compute_average_loss`), so
the replicas' summed gradients are the gradient of the global-batch mean and a
run on 8 replicas computes what one device would with the whole batch.

Random draws. z ~ N(0, I) and G's labels ~ U{0..C-1} come from stateless ops
whose seeds a checkpointed `tf.random.Generator` (key `rng`) hands out once per
iteration, on the host. Every replica draws the *global* batch from those seeds
and keeps its own slice (replica r takes rows r*b .. (r+1)*b-1), so a run on two
replicas sees exactly the draws of a run on one, and a resumed run the draws of
an uninterrupted one.

Loops. `steps_per_loop` iterations run inside one tf.function call (a
`tf.range` loop over the distributed iterator, the TPU custom-loop pattern);
loops end at every log, summary and checkpoint boundary, so those happen at
exact steps. Host-side work between loops (logs, summaries, checkpoints,
hooks) never enters the compiled step.

Extension points. `hooks.Hook` objects passed to `train` see every loop's metrics
and may stop training or veto a checkpoint (for a signal handler or a NaN guard).
"""
import dataclasses
import json
import os
import time
from typing import Any, Callable, Optional

from absl import logging
import gin
import numpy as np
import tensorflow as tf

from hamgan import checkpoints
from hamgan.layers import hamburger
from hamgan.training import hooks as hooks_lib
from hamgan.training import losses as losses_lib
from hamgan.training import strategy as strategy_lib
from hamgan.training import summaries

METRIC_NAMES = ("d_loss", "g_loss", "d_real", "d_fake")
DONE_FILE = "TRAINING_DONE"
OPERATIVE_CONFIG = "operative_config.gin"
_POLICIES = ("auto", "float32", "mixed_bfloat16")
_RESUME_INPUT = ("skip", "fresh")


def _positive_int(owner, name, value, hint):
  if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
    raise ValueError(f"{owner}.{name}={value!r} is not a positive integer; {hint}")


@gin.configurable("train", module="hamgan.training")
@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything a training run needs besides the models (gin scope `train`).

  Attributes:
    batch_size: global batch per D step and per G step (a multiple of the replicas).
    num_steps: training iterations of the whole run (TRAINING_DONE when reached).
    dataset: a hamgan.data data set name (used when no dataset_fn is given).
    data_dir: tfds data directory (local or gs://), None for tfds's default.
    split: the split to train on; None takes the data set's train split.
    loss_fn: `fn(d_real, d_fake) -> (d_loss_per_example, g_loss_per_example)`,
      in gin `@hinge` or `@non_saturating`.
    g_lr, d_lr, beta1, beta2, epsilon: Adam settings (TTUR: D learns 4x faster).
    d_steps: D updates per G update.
    ema_decay: decay of the EMA generator.
    ema_start_step: before this step the EMA generator is a copy of G.
    steps_per_loop: iterations per tf.function call.
    log_every, summary_every, checkpoint_every: intervals in steps.
    max_checkpoints: checkpoints kept (older ones are deleted).
    grid_columns: samples per class row of the sample grid.
    mixed_precision: "auto" (mixed_bfloat16 on TPU, float32 elsewhere),
      "float32" or "mixed_bfloat16".
    jit_compile: compile the replica step with XLA (implied on TPU).
    seed: seeds the random draws, the input order and the sample grid.
    resume_input: on restart, "skip" fast-forwards the (seeded) input pipeline
      past the batches already used, so a resumed run sees the data an
      uninterrupted one would (costs a read of those batches); "fresh" starts
      the pipeline anew (cheap, for very large data sets).
  """
  batch_size: int = 256
  num_steps: int = 1_000_000
  dataset: str = "digits"
  data_dir: Optional[str] = None
  split: Optional[str] = None
  loss_fn: Callable[..., Any] = losses_lib.hinge
  g_lr: float = 1e-4
  d_lr: float = 4e-4
  beta1: float = 0.0
  beta2: float = 0.999
  epsilon: float = 1e-8
  d_steps: int = 1
  ema_decay: float = 0.9999
  ema_start_step: int = 1000
  steps_per_loop: int = 100
  log_every: int = 100
  summary_every: int = 1000
  checkpoint_every: int = 5000
  max_checkpoints: int = 5
  grid_columns: int = 8
  mixed_precision: str = "auto"
  jit_compile: bool = False
  seed: int = 0
  resume_input: str = "fresh"

  def __post_init__(self):
    owner = "train"
    _positive_int(owner, "batch_size", self.batch_size, "pass the global batch, e.g. 256.")
    _positive_int(owner, "num_steps", self.num_steps, "pass the run length, e.g. 100000.")
    _positive_int(owner, "d_steps", self.d_steps, "pass 1 (one D step per G step) or more.")
    for name in ("steps_per_loop", "log_every", "summary_every", "checkpoint_every",
                 "max_checkpoints", "grid_columns"):
      _positive_int(owner, name, getattr(self, name), "pass a step count >= 1.")
    if not isinstance(self.ema_start_step, int) or self.ema_start_step < 0:
      raise ValueError(f"train.ema_start_step={self.ema_start_step!r} is not an integer "
                       ">= 0; pass the step from which the EMA averages, e.g. 1000.")
    if not 0.0 <= self.ema_decay < 1.0:
      raise ValueError(f"train.ema_decay={self.ema_decay!r} is outside [0, 1); "
                       "pass e.g. 0.9999.")
    for name in ("g_lr", "d_lr", "epsilon"):
      if not getattr(self, name) > 0:
        raise ValueError(f"train.{name}={getattr(self, name)!r} must be > 0; "
                         "e.g. g_lr=1e-4, d_lr=4e-4, epsilon=1e-8.")
    for name in ("beta1", "beta2"):
      if not 0.0 <= getattr(self, name) < 1.0:
        raise ValueError(f"train.{name}={getattr(self, name)!r} is outside [0, 1); "
                         "the SAGAN setting is beta1=0, beta2=0.999.")
    if self.mixed_precision not in _POLICIES:
      raise ValueError(f"train.mixed_precision={self.mixed_precision!r}; expected one of "
                       f"{_POLICIES}.")
    if self.resume_input not in _RESUME_INPUT:
      raise ValueError(f"train.resume_input={self.resume_input!r}; expected one of "
                       f"{_RESUME_INPUT}.")
    object.__setattr__(self, "loss_fn", losses_lib.get_loss(self.loss_fn))


def check_model_dir(model_dir):
  """Creates model_dir and proves it writable, or raises a ValueError saying what to do."""
  if not model_dir:
    raise ValueError("model_dir is empty; pass --model_dir=DIR (a local path or gs://...).")
  probe = os.path.join(model_dir, ".write_probe")
  try:
    tf.io.gfile.makedirs(model_dir)
    with tf.io.gfile.GFile(probe, "w") as f:
      f.write("ok")
    tf.io.gfile.remove(probe)
  except (OSError, tf.errors.OpError) as e:
    raise ValueError(f"model_dir {model_dir!r} is not writable ({type(e).__name__}: {e}); "
                     "pass a --model_dir you can create and write to.") from e


def _resolve_policy(setting, strategy):
  if setting == "auto":
    return "mixed_bfloat16" if strategy_lib.is_tpu_strategy(strategy) else "float32"
  return setting


def _default_models():
  # Imported here so the trainer can be used (and tested) with any Keras models.
  from hamgan import models  # pylint: disable=import-outside-toplevel
  return models.Generator, models.Discriminator


class Trainer:
  """Builds G, D, the EMA G and both optimizers under a strategy, and trains them.

  Args:
    model_dir: run directory (checkpoints, logs, samples), local or gs://.
    config: a TrainConfig; None builds one from the gin bindings of `train`.
    strategy: a tf.distribute.Strategy; None is the current (default) strategy.
    generator_fn, discriminator_fn: `fn(name=...) -> model`; None uses the
      gin-configured hamgan.models.Generator / Discriminator. G((z, y), training)
      gives images (B, S, S, 3); D((x, y), training) gives logits (B,).
    dataset_fn: `fn(input_context, per_replica_batch) -> tf.data.Dataset` of
      per-replica (images, labels) batches; None reads `config.dataset` with
      hamgan.data.make_dataset.
  """

  def __init__(self, model_dir, config=None, strategy=None, generator_fn=None,
               discriminator_fn=None, dataset_fn=None):
    self.config = config if config is not None else TrainConfig()
    self.strategy = strategy or tf.distribute.get_strategy()
    self.model_dir = model_dir
    cfg = self.config
    replicas = self.strategy.num_replicas_in_sync
    if cfg.batch_size % replicas:
      raise ValueError(
          f"train.batch_size={cfg.batch_size} is not divisible by the {replicas} replicas "
          f"in sync; use a multiple of {replicas}, e.g. "
          f"{replicas * max(1, cfg.batch_size // replicas)}.")
    self.per_replica_batch = cfg.batch_size // replicas
    self._is_tpu = strategy_lib.is_tpu_strategy(self.strategy)
    if cfg.jit_compile and replicas > 1 and not self._is_tpu:
      raise ValueError(
          f"train.jit_compile=True with {type(self.strategy).__name__} over {replicas} "
          "replicas: XLA cannot compile the cross-replica updates of a multi-device "
          "Mirrored step; set train.jit_compile=False there (TPUs compile the step anyway).")
    check_model_dir(model_dir)
    self.checkpoint_dir = checkpoints.checkpoint_dir(model_dir)
    self.policy = _resolve_policy(cfg.mixed_precision, self.strategy)
    tf.keras.mixed_precision.set_global_policy(self.policy)

    default_g, default_d = _default_models()
    generator_fn = generator_fn or default_g
    discriminator_fn = discriminator_fn or default_d
    with self.strategy.scope():
      self.generator = generator_fn(name="generator")
      self.discriminator = discriminator_fn(name="discriminator")
      self.ema_generator = generator_fn(name="ema_generator")
    self.z_dim = int(getattr(self.generator, "z_dim", 128))
    self.num_classes = int(self.generator.num_classes)
    self.image_size = int(self.generator.image_size)
    self._check_models()

    # The input pipeline comes before the weights: a missing data set fails fast.
    # The newest checkpoint that reads back whole (a damaged one is skipped, logged).
    self._restore_path, self._start_step = checkpoints.newest_good_checkpoint(
        self.checkpoint_dir)
    self._dataset_fn = dataset_fn or self._tfds_dataset_fn()
    dataset = self.strategy.distribute_datasets_from_function(self._checked_dataset_fn)
    self._iterator = iter(dataset)

    self._build_state()
    self._restore_or_initialise()
    with tf.io.gfile.GFile(os.path.join(model_dir, OPERATIVE_CONFIG), "w") as f:
      f.write(gin.operative_config_str())
    self._writer = summaries.RunWriter(model_dir)
    self._loop = self._make_loop()
    self._sample = None
    logging.info("Trainer ready in %s: %d replica(s), global batch %d (%d per replica), "
                 "policy %s, starting at step %d.", model_dir, replicas, cfg.batch_size,
                 self.per_replica_batch, self.policy, int(self.step.numpy()))

  # ---------------------------------------------------------------- set-up

  def _check_models(self):
    d_classes = getattr(self.discriminator, "num_classes", self.num_classes)
    d_size = getattr(self.discriminator, "image_size", self.image_size)
    if d_classes != self.num_classes or d_size != self.image_size:
      raise ValueError(
          f"Generator (image_size={self.image_size}, num_classes={self.num_classes}) and "
          f"Discriminator (image_size={d_size}, num_classes={d_classes}) disagree; bind "
          "the same values to both (e.g. with gin macros IMAGE_SIZE and NUM_CLASSES).")

  def _tfds_dataset_fn(self):
    """Reads config.dataset through hamgan.data, after checking it fits the models."""
    from hamgan import data  # pylint: disable=import-outside-toplevel
    cfg = self.config
    info = data.dataset_info(cfg.dataset, cfg.data_dir)
    info.check_image_size(self.image_size)
    if info.num_classes != self.num_classes:
      raise ValueError(
          f"data set {cfg.dataset!r} has {info.num_classes} classes but the models were "
          f"built for num_classes={self.num_classes}; bind Generator.num_classes and "
          f"Discriminator.num_classes to {info.num_classes}.")
    split = cfg.split or info.train_split

    def dataset_fn(input_context, per_replica_batch):
      return data.make_dataset(cfg.dataset, split, self.image_size, per_replica_batch,
                               data_dir=cfg.data_dir, seed=cfg.seed,
                               input_context=input_context)
    return dataset_fn

  def _checked_dataset_fn(self, input_context):
    """Builds one pipeline, checks its static shapes, fast-forwards it on resume."""
    per_replica = input_context.get_per_replica_batch_size(self.config.batch_size)
    ds = self._dataset_fn(input_context, per_replica)
    images, labels = ds.element_spec
    want = (per_replica, self.image_size, self.image_size, 3)
    if tuple(images.shape) != want or images.dtype != tf.float32:
      raise ValueError(
          f"the input pipeline gives images {images.dtype.name}{tuple(images.shape)}, the "
          f"trainer needs float32{want} (a static per-replica batch: batch with "
          "drop_remainder=True, at the models' image size).")
    if tuple(labels.shape) != (per_replica,) or not labels.dtype.is_integer:
      raise ValueError(f"the input pipeline gives labels {labels.dtype.name}"
                       f"{tuple(labels.shape)}; the trainer needs int labels ({per_replica},).")
    if self._start_step and self.config.resume_input == "skip":
      # Each pipeline feeds its replicas round robin, d_steps batches per iteration.
      replicas_per_pipeline = (self.strategy.num_replicas_in_sync //
                               input_context.num_input_pipelines)
      ds = ds.skip(self._start_step * self.config.d_steps * replicas_per_pipeline)
    return ds

  def _build_state(self):
    """Creates every weight and optimizer slot up front, so a restore matches them all."""
    cfg = self.config
    b = self.per_replica_batch
    z = tf.zeros([b, self.z_dim])
    y = tf.zeros([b], tf.int32)
    x = tf.zeros([b, self.image_size, self.image_size, 3])
    with self.strategy.scope():
      for g in (self.generator, self.ema_generator):
        g((z, y), training=False)
      self.discriminator((x, y), training=False)

      def adam(lr, name):
        return tf.keras.optimizers.Adam(learning_rate=lr, beta_1=cfg.beta1,
                                        beta_2=cfg.beta2, epsilon=cfg.epsilon,
                                        jit_compile=False, name=name)
      self.g_optimizer = adam(cfg.g_lr, "g_adam")
      self.d_optimizer = adam(cfg.d_lr, "d_adam")
      self.g_optimizer.build(self.generator.trainable_variables)
      self.d_optimizer.build(self.discriminator.trainable_variables)
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                              aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    # Outside the scope: one host-side generator; its seeds are broadcast to replicas.
    self.rng = tf.random.Generator.from_seed(cfg.seed)
    self._ema_pairs = self._pair_variables()
    self.checkpoint = tf.train.Checkpoint(
        generator=self.generator, discriminator=self.discriminator,
        ema_generator=self.ema_generator, g_optimizer=self.g_optimizer,
        d_optimizer=self.d_optimizer, step=self.step, rng=self.rng)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, self.checkpoint_dir, max_to_keep=cfg.max_checkpoints,
        step_counter=self.step)

  def _pair_variables(self):
    """(ema_var, g_var, averaged) for every weight of G, matched by position and shape."""
    g_vars, e_vars = self.generator.variables, self.ema_generator.variables
    trainable = {id(v) for v in self.generator.trainable_variables}
    if len(g_vars) != len(e_vars):
      raise ValueError(f"the EMA generator has {len(e_vars)} variables, G has "
                       f"{len(g_vars)}; generator_fn must build the same model each call.")
    pairs = []
    for e, g in zip(e_vars, g_vars):
      if e.shape != g.shape:
        raise ValueError(f"EMA variable {e.name} {e.shape} does not match G's {g.name} "
                         f"{g.shape}; generator_fn must build the same model each call.")
      # Trainable weights are averaged; state (SN vectors, BN statistics) is copied.
      pairs.append((e, g, id(g) in trainable))
    return pairs

  def _restore_or_initialise(self):
    latest = self._restore_path
    if latest:
      self.checkpoint.restore(latest).assert_existing_objects_matched()
      logging.info("Restored %s (step %d).", latest, int(self.step.numpy()))
    else:
      for e, g, _ in self._ema_pairs:
        e.assign(g.read_value())
    done = os.path.join(self.model_dir, DONE_FILE)
    if int(self.step.numpy()) < self.config.num_steps and tf.io.gfile.exists(done):
      # From an earlier, shorter run (or a checkpoint fallback): watchers must wait.
      logging.info("Removing %s: step %d < train.num_steps=%d.", done,
                   int(self.step.numpy()), self.config.num_steps)
      tf.io.gfile.remove(done)

  # ---------------------------------------------------------------- the step

  def _draw(self, seed_z, seed_y):
    """This replica's slice of the global batch of latents and labels."""
    ctx = tf.distribute.get_replica_context()
    b, big_b = self.per_replica_batch, self.config.batch_size
    start = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * b
    z = tf.random.stateless_normal([big_b, self.z_dim], seed=seed_z)
    y = tf.random.stateless_uniform([big_b], seed=seed_y, minval=0,
                                    maxval=self.num_classes, dtype=tf.int32)
    return tf.slice(z, [start, 0], [b, self.z_dim]), tf.slice(y, [start], [b])

  def _d_step(self, images, labels, z, y):
    big_b = self.config.batch_size
    fake = self.generator((z, y), training=True)
    # Real and fake go through D together: one pass, one SN power iteration.
    x = tf.concat([tf.cast(images, fake.dtype), fake], axis=0)
    xy = tf.concat([tf.cast(labels, tf.int32), y], axis=0)
    with tf.GradientTape() as tape:
      # D's batch is two slices (real, fake) of the global batch: a Hamburger in D then
      # takes each slice's rows of the global random draw, so replicas match one device.
      with hamburger.batch_segments(2):
        logits = tf.cast(self.discriminator((x, xy), training=True), tf.float32)
      d_real, d_fake = tf.split(logits, 2, axis=0)
      d_loss, _ = self.config.loss_fn(d_real, d_fake)
      d_loss = tf.nn.compute_average_loss(d_loss, global_batch_size=big_b)
    variables = self.discriminator.trainable_variables
    self.d_optimizer.apply_gradients(zip(tape.gradient(d_loss, variables), variables))
    return (d_loss, tf.reduce_sum(d_real) / big_b, tf.reduce_sum(d_fake) / big_b)

  def _g_step(self, z, y):
    with tf.GradientTape() as tape:
      fake = self.generator((z, y), training=True)
      d_fake = tf.cast(self.discriminator((fake, y), training=True), tf.float32)
      _, g_loss = self.config.loss_fn(None, d_fake)
      g_loss = tf.nn.compute_average_loss(g_loss, global_batch_size=self.config.batch_size)
    variables = self.generator.trainable_variables
    self.g_optimizer.apply_gradients(zip(tape.gradient(g_loss, variables), variables))
    return g_loss

  def _ema_merge(self, strategy):
    """Cross-replica EMA update: the same assignment on every replica's copy."""
    cfg = self.config
    decay = tf.where(self.step >= cfg.ema_start_step, cfg.ema_decay, 0.0)
    for e, g, averaged in self._ema_pairs:
      if averaged:
        fn = lambda ev, gv: ev.assign(gv + decay * (ev - gv))  # noqa: E731
      else:
        fn = lambda ev, gv: ev.assign(gv)  # noqa: E731
      strategy.extended.update(e, fn, args=(g,), group=False)

  def _replica_step(self, real_batches, seeds):
    """One iteration on one replica; returns its share of the global-mean metrics."""
    d_metrics = []
    for i, (images, labels) in enumerate(real_batches):
      z, y = self._draw(seeds[:, 2 * i], seeds[:, 2 * i + 1])
      d_metrics.append(self._d_step(images, labels, z, y))
    k = len(real_batches)
    z, y = self._draw(seeds[:, 2 * k], seeds[:, 2 * k + 1])
    g_loss = self._g_step(z, y)
    tf.distribute.get_replica_context().merge_call(self._ema_merge)
    self.step.assign_add(1)
    d_loss, d_real, d_fake = [tf.add_n(list(m)) / k for m in zip(*d_metrics)]
    return tf.stack([d_loss, g_loss, d_real, d_fake])

  def _make_loop(self):
    strategy, d_steps = self.strategy, self.config.d_steps
    replica_step = self._replica_step
    if self.config.jit_compile and not self._is_tpu:
      replica_step = tf.function(replica_step, jit_compile=True)
    self.replica_step_fn = replica_step  # exposed for compiler-IR checks

    @tf.function
    def loop(iterator, num_steps):
      totals = tf.zeros([len(METRIC_NAMES)], tf.float32)
      for _ in tf.range(num_steps):
        seeds = self.rng.make_seeds(2 * (d_steps + 1))  # (2, count) int64
        real = tuple(next(iterator) for _ in range(d_steps))
        per_replica = strategy.run(replica_step, args=(real, seeds))
        totals += strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
      return totals / tf.cast(num_steps, tf.float32)
    return loop

  def run_loop(self, num_steps):
    """Runs `num_steps` iterations in one call; returns the loop's mean metrics."""
    values = self._loop(self._iterator, tf.constant(num_steps, tf.int32)).numpy()
    return dict(zip(METRIC_NAMES, (float(v) for v in values)))

  # ---------------------------------------------------------------- samples

  def sample(self, z, y, ema=True):
    """Images of the (EMA) generator in inference mode, computed on the replicas."""
    if self._sample is None:
      strategy = self.strategy

      @tf.function
      def sample_fn(z, y, use_ema):
        def replica_fn(z, y):
          g = self.ema_generator if use_ema else self.generator
          return tf.cast(g((z, y), training=False), tf.float32)
        return strategy.run(replica_fn, args=(z, y))
      self._sample = sample_fn
    out = self._sample(tf.convert_to_tensor(z, tf.float32),
                       tf.convert_to_tensor(y, tf.int32), bool(ema))
    return self.strategy.experimental_local_results(out)[0].numpy()

  def sample_grid(self):
    """A uint8 grid of EMA samples: one row per class (up to 10 classes), fixed latents."""
    classes = summaries.grid_classes(self.num_classes)
    columns = self.config.grid_columns
    z, y = summaries.grid_inputs(classes, columns, self.z_dim, seed=self.config.seed)
    return summaries.make_grid(self.sample(z, y), len(classes), columns)

  # ---------------------------------------------------------------- the run

  def _loop_size(self, step, target):
    cfg = self.config
    n = min(cfg.steps_per_loop, target - step)
    for every in (cfg.log_every, cfg.summary_every, cfg.checkpoint_every):
      n = min(n, every - step % every)
    return n

  def save(self, step):
    path = self.manager.save(checkpoint_number=step)
    logging.info("Saved checkpoint %s.", path)
    return path

  def _write_summaries(self, step, metrics, rates):
    values = {f"losses/{k}": metrics[k] for k in ("d_loss", "g_loss")}
    values.update({f"discriminator/{k}": metrics[k] for k in ("d_real", "d_fake")})
    values["learning_rate/generator"] = float(self.g_optimizer.learning_rate.numpy())
    values["learning_rate/discriminator"] = float(self.d_optimizer.learning_rate.numpy())
    values.update(rates)
    values.update(summaries.context_scalars(
        {"generator": self.generator, "discriminator": self.discriminator}))
    self._writer.scalars(step, values)
    self._writer.grid(step, self.sample_grid())

  def train(self, num_steps=None, hooks=()):
    """Trains until step `num_steps` (default config.num_steps); returns the last metrics.

    Resumes from wherever the restored step counter stands; writes logs,
    summaries and checkpoints at their intervals and a checkpoint at the end.
    """
    cfg = self.config
    target = cfg.num_steps if num_steps is None else int(num_steps)
    step = int(self.step.numpy())
    metrics = {}
    mark_step, mark_time = step, time.time()
    rates = {"speed/steps_per_sec": 0.0, "speed/images_per_sec": 0.0}
    while step < target:
      metrics = self.run_loop(self._loop_size(step, target))
      step = int(self.step.numpy())
      stop = hooks_lib.should_stop(hooks, self, step, metrics)
      last = step >= target or stop
      if step % cfg.log_every == 0 or last:
        now = time.time()
        steps_per_sec = (step - mark_step) / max(now - mark_time, 1e-9)
        # Images per second: real images consumed by the D steps.
        rates = {"speed/steps_per_sec": steps_per_sec,
                 "speed/images_per_sec": steps_per_sec * cfg.batch_size * cfg.d_steps}
        self._log(step, target, metrics, rates, now)
        mark_step, mark_time = step, now
      if step % cfg.summary_every == 0 or last:
        self._write_summaries(step, metrics, rates)
      if step % cfg.checkpoint_every == 0 or last:
        if hooks_lib.may_save(hooks, self, step, metrics):
          self.save(step)
      if stop:
        logging.info("A hook stopped training at step %d.", step)
        break
    if step >= cfg.num_steps:
      with tf.io.gfile.GFile(os.path.join(self.model_dir, DONE_FILE), "w") as f:
        f.write(json.dumps({"step": step, "wall_time": time.time()}) + "\n")
    return metrics

  def _log(self, step, target, metrics, rates, now):
    row = {"step": step, "wall_time": now,
           "steps_per_sec": rates["speed/steps_per_sec"],
           "images_per_sec": rates["speed/images_per_sec"]}
    row.update(metrics)
    self._writer.log_row(row)
    sps = rates["speed/steps_per_sec"]
    eta = (target - step) / sps if sps > 0 else float("inf")
    eta_text = time.strftime("%H:%M:%S", time.gmtime(eta)) if np.isfinite(eta) else "?"
    if np.isfinite(eta) and eta >= 86400:
      eta_text = f"{int(eta // 86400)}d " + eta_text
    logging.info("step %d/%d  d_loss %.4f  g_loss %.4f  D(real) %.3f  D(fake) %.3f  "
                 "%.2f it/s  ETA %s", step, target, metrics["d_loss"], metrics["g_loss"],
                 metrics["d_real"], metrics["d_fake"], sps, eta_text)
