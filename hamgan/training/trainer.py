"""The distributed GAN trainer: builds G, D, the EMA G and both optimizers under a
tf.distribute strategy, restores or initialises them, and trains them in loops of
compiled iterations (hamgan.training.gan_step; the host side between loops is
hamgan.training.train_loop). Batches, random draws, replicas, micro-batches, loops,
several hosts and hooks: docs/design.md, 'The train step'.
"""
import os

from absl import logging
import numpy as np
import tensorflow as tf

import gin

from hamgan import checkpoints
from hamgan import run_dir
from hamgan import tpu
from hamgan.layers import registry as context_registry
from hamgan.training import cluster
from hamgan.training import ema
from hamgan.training import gan_step
from hamgan.training import resume
from hamgan.training import summaries
from hamgan.training import train_loop
from hamgan.training import trainer_input
from hamgan.training.train_config import TrainConfig  # noqa: F401  (the gin scope `train`)

METRIC_NAMES = ("d_loss", "g_loss", "d_real", "d_fake")


def _resolve_policy(setting, strategy):
  if setting == "auto":
    return "mixed_bfloat16" if tpu.is_tpu_strategy(strategy) else "float32"
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
    dry_run: build and check everything, write nothing to model_dir.
    allow_config_change: resume even if the networks' settings changed since the
      previous launch (else a ValueError lists the changes).
  """

  def __init__(self, model_dir, config=None, strategy=None, generator_fn=None,
               discriminator_fn=None, dataset_fn=None, dry_run=False,
               allow_config_change=False):
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
    gan_step.check_batch(cfg, self.per_replica_batch)
    self._is_tpu = tpu.is_tpu_strategy(self.strategy)
    if cfg.jit_compile and replicas > 1 and not self._is_tpu:
      raise ValueError(
          f"train.jit_compile=True with {type(self.strategy).__name__} over {replicas} "
          "replicas: XLA cannot compile the cross-replica updates of a multi-device "
          "Mirrored step; set train.jit_compile=False there (TPUs compile the step anyway).")
    # Op seeds (tf.data shuffles, initialisers) follow the global seed: fix it per run.
    tf.keras.utils.set_random_seed(cfg.seed)
    self.is_chief = cluster.is_chief(self.strategy)
    self.agreement = cluster.Agreement(self.strategy)
    self.dry_run = dry_run
    run_dir.check_model_dir(model_dir, write=self.is_chief and not dry_run)
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

    self._open_input_at_agreed_checkpoint(dataset_fn, allow_config_change)

    self._build_state()
    self._restore_or_initialise()
    self._writer = None  # the chief's, made when training starts (a dry run writes nothing)
    self._loop = self._make_loop()
    self._sample = None
    self.last_step = int(self.step.numpy())
    self.stopped_by = None
    logging.info("Trainer ready: %s.", self.describe())

  def describe(self):
    """One line: where, how many replicas and tasks, the batch, the policy, the step."""
    cfg, replicas = self.config, self.strategy.num_replicas_in_sync
    tasks = self.agreement.num_tasks
    role = (f", task {cluster.task_id(self.strategy)} of {tasks}"
            f"{' (chief)' if self.is_chief else ''}" if tasks > 1 else "")
    return (f"{self.model_dir}: {replicas} replica(s){role}, global batch {cfg.batch_size} "
            f"({self.per_replica_batch} per replica), policy {self.policy}, starting at "
            f"step {int(self.step.numpy())}")

  def writer(self):
    """The run's summary/log writer; the chief's only (other tasks never write)."""
    if not self.is_chief:
      raise RuntimeError("only the chief task writes the run's files")
    if self._writer is None:
      self._writer = summaries.RunWriter(self.model_dir, resume_step=self._start_step)
    return self._writer

  # ---------------------------------------------------------------- set-up

  def _open_input_at_agreed_checkpoint(self, dataset_fn, allow_config_change):
    """Agrees on the checkpoint every task restores (damage skipped, logged), opens the
    input at its step (a missing data set fails here, before any weight), then checks a
    resumed launch's config (the pipeline's settings are in gin's record by then)."""
    cfg = self.config
    self._restore_path, self._start_step = resume.agreed_checkpoint(
        self.checkpoint_dir, self.agreement, timeout_s=cfg.save_timeout_secs)
    self._dataset_fn = dataset_fn or trainer_input.tfds_dataset_fn(
        cfg, self.image_size, self.num_classes,
        seed=trainer_input.input_seed(cfg, self._start_step))
    self._iterator = iter(self.make_distributed_dataset())
    if self._restore_path:
      self.check_config_change(allow_config_change)

  def check_config_change(self, allow):
    """A resumed launch may not change the networks unless allowed (resume module)."""
    resume.check_config_change(self.model_dir, gin.operative_config_str(),
                               context_registry.CONTEXT_NAMES, allow)

  def _check_models(self):
    d_classes = getattr(self.discriminator, "num_classes", self.num_classes)
    d_size = getattr(self.discriminator, "image_size", self.image_size)
    if d_classes != self.num_classes or d_size != self.image_size:
      raise ValueError(
          f"Generator (image_size={self.image_size}, num_classes={self.num_classes}) and "
          f"Discriminator (image_size={d_size}, num_classes={d_classes}) disagree; bind "
          "the same values to both (e.g. with gin macros IMAGE_SIZE and NUM_CLASSES).")

  def _host_dataset(self, input_context, transform=None):
    per_replica = input_context.get_per_replica_batch_size(self.config.batch_size)
    ds = trainer_input.host_dataset(self._dataset_fn, input_context, per_replica,
                                    self.config, self.image_size, self._start_step)
    return transform(ds) if transform is not None else ds

  def make_distributed_dataset(self, transform=None):
    """The distributed input; `transform(ds)` is applied to each host's checked pipeline."""
    from hamgan import data  # pylint: disable=import-outside-toplevel
    return data.distribute(self.strategy, self.config.batch_size,
                           lambda ctx, _: self._host_dataset(ctx, transform))

  def _build_state(self):
    """Creates every weight and optimizer slot up front, so a restore matches them all."""
    cfg = self.config
    b = self.per_replica_batch
    z = tf.zeros([b, self.z_dim])
    y = tf.zeros([b], tf.int32)
    x = tf.zeros([b, self.image_size, self.image_size, 3])
    # The initial weights follow train.seed: runs with one seed start alike on any
    # number of processes (MultiWorkerMirroredStrategy broadcasts the chief's values).
    tf.keras.utils.set_random_seed(cfg.seed)
    with self.strategy.scope():
      for g in (self.generator, self.ema_generator):
        g((z, y), training=False)
      self.discriminator((x, y), training=False)

      def optimizer(lr, name):
        return cfg.optimizer_fn(learning_rate=lr, beta1=cfg.beta1, beta2=cfg.beta2,
                                epsilon=cfg.epsilon, name=name)
      self.g_optimizer = optimizer(cfg.g_lr, "g_adam")
      self.d_optimizer = optimizer(cfg.d_lr, "d_adam")
      self.g_optimizer.build(self.generator.trainable_variables)
      self.d_optimizer.build(self.discriminator.trainable_variables)
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                              aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
      # The LeCam EMAs exist (and are checkpointed) only in runs that use them.
      self.lecam_ema = gan_step.lecam_variable() if cfg.lecam_weight else None
    # Outside the scope: one host-side generator; its seeds are broadcast to replicas.
    self.rng = tf.random.Generator.from_seed(cfg.seed)
    self._ema_pairs = ema.pair_variables(self.generator, self.ema_generator)
    self._gan_step = gan_step.GanStep(
        self.generator, self.discriminator, self._ema_pairs, self.g_optimizer,
        self.d_optimizer, self.step, cfg, b, self.z_dim, self.num_classes, self.image_size,
        lecam_ema=self.lecam_ema)
    extra = {} if self.lecam_ema is None else {"lecam": self.lecam_ema}
    self.checkpoint = tf.train.Checkpoint(
        generator=self.generator, discriminator=self.discriminator,
        ema_generator=self.ema_generator, g_optimizer=self.g_optimizer,
        d_optimizer=self.d_optimizer, step=self.step, rng=self.rng, **extra)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, self.checkpoint_dir, max_to_keep=cfg.max_checkpoints,
        step_counter=self.step)
    # What scoring needs, kept for every milestone: both generators (with their
    # batch-norm statistics and spectral-norm vectors) and the step.
    self.milestone = tf.train.Checkpoint(
        generator=self.generator, ema_generator=self.ema_generator, step=self.step)

  def _restore_or_initialise(self):
    latest = self._restore_path
    if latest:
      try:
        self.checkpoint.restore(latest).assert_existing_objects_matched()
      except (ValueError, AssertionError) as e:
        raise ValueError(
            f"checkpoint {latest} holds networks or optimizers of another shape than this "
            f"launch builds ({str(e).strip().splitlines()[0][:300]}). Resume with the "
            "bindings the run was trained with (its operative_config-<step>.gin), or "
            "train into a new --model_dir.") from e
      logging.info("Restored %s (step %d).", latest, int(self.step.numpy()))
    else:
      for e, g, _ in self._ema_pairs:
        e.assign(g.read_value())
    self._apply_configured_learning_rates()
    step = int(self.step.numpy())
    # From an earlier, shorter run: watchers must wait.
    if self.is_chief and not self.dry_run and run_dir.remove_stale_done(
        self.model_dir, step, self.config.num_steps):
      logging.info("Removed %s: step %d < train.num_steps=%d.", run_dir.DONE_FILE, step,
                   self.config.num_steps)

  def _apply_configured_learning_rates(self):
    """The config's learning rates win over the checkpoint's, with a line saying so."""
    for name, optimizer, want in (("g_lr", self.g_optimizer, self.config.g_lr),
                                  ("d_lr", self.d_optimizer, self.config.d_lr)):
      have = float(optimizer.learning_rate.numpy())
      if np.isclose(have, want, rtol=1e-6, atol=0.0):
        continue
      optimizer.learning_rate = want
      logging.warning(
          "train.%s = %g from the config replaces the checkpoint's %g, from step %d on "
          "(a rate lowered by a divergence rollback is not kept across launches: bind "
          "train.%s to keep it).", name, want, have, int(self.step.numpy()), name)

  # ---------------------------------------------------------------- the step

  def _g_step(self, z, y, seed=None):
    """One G update on this replica's (paired, when the mode-seeking term is on) z, y."""
    return self._gan_step.g_step(z, y, seed)

  def _replica_step(self, real_batches, seeds):
    """One iteration on one replica; returns its share of the global-mean metrics."""
    return self._gan_step.replica_step(real_batches, seeds)

  def _make_loop(self):
    strategy, d_steps = self.strategy, self.config.d_steps
    count = gan_step.seed_count(self.config)
    replica_step = self._replica_step
    if self.config.jit_compile and not self._is_tpu:
      replica_step = tf.function(replica_step, jit_compile=True)
    self.replica_step_fn = replica_step  # exposed for compiler-IR checks

    @tf.function
    def loop(iterator, num_steps):
      totals = tf.zeros([len(METRIC_NAMES)], tf.float32)
      for _ in tf.range(num_steps):
        seeds = self.rng.make_seeds(count)  # (2, count) int64
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

  def save(self, step, milestone=False):
    """Writes checkpoints/ckpt-`step` (and milestones/ckpt-`step` if `milestone`): into
    model_dir on the chief, into a removed scratch copy elsewhere.

    Every task must call it at the same step (the save may read values through
    collectives); a non-chief task's copy is deleted right away. The tasks then wait
    for one another with train.save_timeout_secs, not the shorter collective timeout.
    """
    path = None
    if self.is_chief:
      if milestone:
        self.milestone.write(os.path.join(checkpoints.milestone_dir(self.model_dir),
                                          f"ckpt-{step}"))
      path = self.manager.save(checkpoint_number=step)
      logging.info("Saved checkpoint %s%s.", path, " and its milestone" if milestone else "")
    else:
      scratch = cluster.scratch_checkpoint_dir(self.strategy)
      try:
        if milestone:
          self.milestone.write(os.path.join(scratch, "milestone"))
        tf.train.CheckpointManager(self.checkpoint, scratch, max_to_keep=1).save(
            checkpoint_number=step)
      finally:
        tf.io.gfile.rmtree(scratch)
      logging.info("Took part in the save of step %d (the chief writes it).", step)
    self.agreement.agree([float(step)], timeout_s=self.config.save_timeout_secs)
    return path

  def train(self, num_steps=None, hooks=()):
    """Trains until step `num_steps` (default config.num_steps); returns the last metrics.

    Resumes from wherever the restored step counter stands; writes logs,
    summaries and checkpoints at their intervals and a checkpoint at the end
    (see hamgan.training.train_loop).
    """
    return train_loop.run(self, num_steps, hooks)
