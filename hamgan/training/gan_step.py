"""One training iteration on one replica: the D steps, the G step, their micro-batches.

`GanStep(...).replica_step(real_batches, seeds)` runs inside `strategy.run` (the
trainer's loop calls it once per iteration); `seed_count(config)` says how many
stateless seeds an iteration takes. What each part computes, and why replicas,
micro-batches and resumed runs agree, is in docs/design.md, 'The train step'.
"""
import inspect

import tensorflow as tf

from hamgan.layers.spectral_norm import SNConv2D, SNDense, SNEmbedding
from hamgan.training import diffaugment
from hamgan.training import ema
from hamgan.training import losses

_SUM = tf.distribute.ReduceOp.SUM


def seed_count(config):
  """Seeds per iteration: z and labels per D step and for the G step, then (with
  DiffAugment) one augmentation seed each; a run without it draws as it always did."""
  updates = config.d_steps + 1
  return 2 * updates + (updates if diffaugment.parse_policy(config.diffaugment) else 0)


def check_batch(config, per_replica_batch):
  """Refuses micro-batches (and mode-seeking pairs) that do not split the replica's batch."""
  b, k = per_replica_batch, config.accumulation_steps
  divisors = [d for d in range(1, b + 1) if b % d == 0]
  if b % k:
    raise ValueError(
        f"train.accumulation_steps={k} does not divide the batch per replica, {b} "
        f"(train.batch_size={config.batch_size} over {config.batch_size // b} replicas); "
        f"pass one of {divisors}.")
  if config.mode_seeking_weight and b % (2 * k):
    if k == 1:
      raise ValueError(f"train.mode_seeking_weight pairs the rows of each replica's batch, "
                       f"but {b} per replica is odd; use an even one.")
    raise ValueError(
        f"train.mode_seeking_weight pairs the two halves of each micro-batch, but {b} per "
        f"replica in train.accumulation_steps={k} micro-batches gives micro-batches of "
        f"{b // k}, not even; pass accumulation_steps from "
        f"{[d for d in divisors if b % (2 * d) == 0]}.")


def lecam_variable():
  """The LeCam EMAs [of D's mean output on real, on fake]: one copy on every replica."""
  return tf.Variable([0.0, 0.0], trainable=False, name="lecam_ema", dtype=tf.float32,
                     synchronization=tf.VariableSynchronization.ON_WRITE,
                     aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


def call_model(model, inputs, segments):
  """model(inputs, training=True), telling it the batch is `segments` concatenated
  per-replica slices when it takes that argument (hamgan's G and D do; any Keras model
  with the (inputs, training) contract works, its context then draws per replica)."""
  if segments != 1 and "segments" in inspect.signature(model.call).parameters:
    return model(inputs, training=True, segments=segments)
  return model(inputs, training=True)


def replica_rows(x, per_replica, segments=1):
  """This replica's rows of a global batch `x` made of `segments` equal concatenated
  segments: rows r*s .. (r+1)*s - 1 of each segment, s = per_replica / segments."""
  ctx = tf.distribute.get_replica_context()
  if ctx.num_replicas_in_sync == 1:
    return x
  seg, rest = per_replica // segments, list(x.shape[1:])
  start = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * seg
  view = tf.reshape(x, [segments, -1] + rest)
  mine = tf.slice(view, [0, start] + [0] * len(rest), [segments, seg] + rest)
  return tf.reshape(mine, [per_replica] + rest)


def micro_rows(x, m, k, segments=1):
  """Micro-batch m of k of a replica's batch of `segments` segments (each split in k)."""
  if k == 1:
    return x
  rest = list(x.shape[1:])
  view = tf.reshape(x, [segments, -1] + rest)
  size = view.shape[1] // k
  return tf.reshape(view[:, m * size:(m + 1) * size], [segments * size] + rest)


def _dense(g):
  return tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g


def _add(a, b):
  if a is None or b is None:
    return b if a is None else a
  return _dense(a) + _dense(b)


def _sn_variables(*models):
  """The spectral-norm vectors and estimates of the models' SN layers."""
  found = []
  for model in models:
    for layer in model.submodules:
      if isinstance(layer, (SNConv2D, SNDense, SNEmbedding)):
        found += [layer.u, layer.spectral_norm]
  return found


class GanStep:
  """The step functions over the trainer's models, optimizers and state.

  Args: generator, discriminator, ema_pairs (ema.pair_variables of G and the EMA G),
    g_optimizer, d_optimizer, step (the iteration counter), config (a TrainConfig),
    per_replica_batch, z_dim, num_classes, image_size, lecam_ema (lecam_variable(),
    or None when train.lecam_weight is 0).
  """

  def __init__(self, generator, discriminator, ema_pairs, g_optimizer, d_optimizer, step,
               config, per_replica_batch, z_dim, num_classes, image_size, lecam_ema=None):
    self.generator, self.discriminator = generator, discriminator
    self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
    self.ema_pairs, self.step, self.config = ema_pairs, step, config
    self.per_replica_batch, self.z_dim = per_replica_batch, z_dim
    self.num_classes, self.image_size = num_classes, image_size
    self.lecam_ema = lecam_ema
    self.k = config.accumulation_steps
    self.policies = diffaugment.parse_policy(config.diffaugment)
    self.paired = bool(config.mode_seeking_weight)
    self.msgan = self.paired and config.mode_seeking_form == "msgan"
    # Restored before every micro-batch after the first: one power iteration per step.
    self._sn = _sn_variables(generator, discriminator) if self.k > 1 else []

  # ------------------------------------------------------------ draws

  def draw(self, seed_z, seed_y, paired=False):
    """This replica's rows of the global latents and labels; `paired`: rows i and
    i + B/2 of the global batch share a class, and each replica (and micro-batch)
    holds matching rows of both halves, so every pair is one device's pair."""
    global_b, b = self.config.batch_size, self.per_replica_batch
    z = tf.random.stateless_normal([global_b, self.z_dim], seed=seed_z)
    y = tf.random.stateless_uniform([global_b], seed=seed_y, minval=0,
                                    maxval=self.num_classes, dtype=tf.int32)
    segments = 1
    if paired:
      y, segments = losses.paired_labels(y), 2
    return replica_rows(z, b, segments), replica_rows(y, b, segments)

  def _augment_draws(self, seed, batches, segments):
    """This replica's DiffAugment draws for `batches` global batches in `segments`
    segments, rows ordered as the images D sees (None when off)."""
    if not self.policies or seed is None:
      return None
    rows = batches * self.config.batch_size
    return replica_rows(diffaugment.draw(seed, rows), batches * self.per_replica_batch,
                        segments)

  # ------------------------------------------------------------ accumulation

  def _accumulate(self, micro_fn):
    """Sums micro_fn(m, gate)'s (gradients, values) over the k micro-batches.

    Before micro-batch m > 0 the SN vectors go back to their values at the start of
    the step (every micro-batch then normalises by the same sigma and the step ends
    with one power iteration done), and `gate` holds its inputs until micro-batch
    m - 1's gradients exist, so one micro-batch's activations are live at a time.
    """
    if self.k == 1:
      return micro_fn(0, lambda t: t)
    saved = [v.read_value() for v in self._sn]
    total = None
    for m in range(self.k):
      deps = []
      if m:
        deps = [g.values if isinstance(g, tf.IndexedSlices) else g
                for g in tf.nest.flatten(total) if g is not None]
        with tf.control_dependencies(deps):
          for v, value in zip(self._sn, saved):
            v.assign(value)

      def gate(t, deps=deps):
        with tf.control_dependencies(deps):
          return tf.identity(t)
      out = micro_fn(m, gate)
      total = out if total is None else tf.nest.map_structure(_add, total, out)
    return total

  # ------------------------------------------------------------ D

  def d_step(self, images, labels, z, y, seed=None):
    """One D update on the real batch and G((z, y)); returns (d_loss, d_real, d_fake),
    this replica's shares of the global means (the adversarial loss only)."""
    cfg, k, global_b = self.config, self.k, self.config.batch_size
    draws = self._augment_draws(seed, 2, 2)  # real rows, then fake rows
    anchors = None if self.lecam_ema is None else tf.convert_to_tensor(self.lecam_ema)
    variables = self.discriminator.trainable_variables

    def micro(m, gate):
      def take(t, segments=1):
        return gate(micro_rows(t, m, k, segments))
      z_m, y_m = take(z), take(y)
      fake = self.generator((z_m, y_m), training=True)
      # Real and fake go through D together: one pass, one SN power iteration.
      x = tf.concat([tf.cast(take(images), fake.dtype), fake], axis=0)
      xy = tf.concat([tf.cast(take(labels), tf.int32), y_m], axis=0)
      if draws is not None:
        x = diffaugment.augment(x, take(draws, 2), self.policies)
      with tf.GradientTape() as tape:
        # D's batch is two slices (real, fake) of the global batch: a Hamburger in D
        # takes each slice's rows of the global random draw, so replicas match one device.
        logits = tf.cast(call_model(self.discriminator, (x, xy), 2), tf.float32)
        d_real, d_fake = tf.split(logits, 2, axis=0)
        d_loss, _ = cfg.loss_fn(d_real, d_fake)
        d_loss = tf.nn.compute_average_loss(d_loss, global_batch_size=global_b)
        total = d_loss
        if anchors is not None:
          total += cfg.lecam_weight * tf.nn.compute_average_loss(
              losses.lecam(d_real, d_fake, anchors[0], anchors[1]), global_batch_size=global_b)
      metrics = (d_loss, tf.reduce_sum(d_real) / global_b, tf.reduce_sum(d_fake) / global_b)
      return tape.gradient(total, variables), metrics

    grads, metrics = self._accumulate(micro)
    self.d_optimizer.apply_gradients(zip(grads, variables))
    if self.lecam_ema is not None:
      self._update_lecam(metrics[1], metrics[2])
    return metrics

  def _update_lecam(self, real_share, fake_share):
    """EMA <- decay EMA + (1 - decay) global mean, once per D update (after it: the
    penalty of this update used the EMAs of the updates before)."""
    means = tf.distribute.get_replica_context().all_reduce(
        _SUM, tf.stack([real_share, fake_share]))
    decay = self.config.lecam_decay
    self.lecam_ema.assign(means + decay * (tf.convert_to_tensor(self.lecam_ema) - means))

  # ------------------------------------------------------------ G

  def g_step(self, z, y, seed=None):
    """One G update on G((z, y)) (rows paired when the mode-seeking term is on);
    returns this replica's share of the adversarial G loss."""
    cfg, k, global_b = self.config, self.k, self.config.batch_size
    weight, segments = cfg.mode_seeking_weight, 2 if self.paired else 1
    draws = self._augment_draws(seed, 1, segments)
    variables = self.generator.trainable_variables

    def micro(m, gate):
      def take(t):
        return gate(micro_rows(t, m, k, segments))
      z_m, y_m = take(z), take(y)
      with tf.GradientTape(persistent=self.msgan) as tape:
        fake = call_model(self.generator, (z_m, y_m), segments)
        seen = fake if draws is None else diffaugment.augment(fake, take(draws),
                                                              self.policies)
        d_fake = tf.cast(call_model(self.discriminator, (seen, y_m), segments), tf.float32)
        _, g_loss = cfg.loss_fn(None, d_fake)
        g_loss = tf.nn.compute_average_loss(g_loss, global_batch_size=global_b)
        total = g_loss
        if self.paired and not self.msgan:
          total += weight * tf.nn.compute_average_loss(
              losses.mode_seeking(fake, z_m), global_batch_size=global_b // 2)
        if self.msgan:
          image_sum, latent_sum = losses.mode_seeking_sums(fake, z_m)
      grads = tape.gradient(total, variables)
      if not self.msgan:
        return grads, g_loss
      # MSGAN's penalty is a function of sums over the whole batch: its gradient is
      # (d penalty / d image_sum) * grad(image_sum), the slope known once all are summed.
      image_grads = tape.gradient(image_sum, variables)
      return (grads, image_grads), (g_loss, tf.stack([image_sum, latent_sum]))

    grads, g_loss = self._accumulate(micro)
    if self.msgan:
      (grads, image_grads), (g_loss, sums) = grads, g_loss
      sums = tf.distribute.get_replica_context().all_reduce(_SUM, sums)
      half = global_b // 2
      _, slope = losses.msgan_penalty(sums[0], sums[1], half * self.image_size ** 2 * 3,
                                      half * self.z_dim)
      grads = [_add(g, None if gi is None else
                    tf.cast(weight * slope, gi.dtype) * _dense(gi))
               for g, gi in zip(grads, image_grads)]
    self.g_optimizer.apply_gradients(zip(grads, variables))
    return g_loss  # the adversarial part: comparable across settings

  # ------------------------------------------------------------ the iteration

  def replica_step(self, real_batches, seeds):
    """One iteration on one replica (d_steps D updates, one G update, the EMA G, the
    step counter); returns its share of the global-mean metrics."""
    updates = len(real_batches) + 1
    aug = (lambda i: seeds[:, 2 * updates + i]) if self.policies else (lambda i: None)
    d_metrics = []
    for i, (images, labels) in enumerate(real_batches):
      z, y = self.draw(seeds[:, 2 * i], seeds[:, 2 * i + 1])
      d_metrics.append(self.d_step(images, labels, z, y, aug(i)))
    n = len(real_batches)
    z, y = self.draw(seeds[:, 2 * n], seeds[:, 2 * n + 1], paired=self.paired)
    g_loss = self.g_step(z, y, aug(n))
    cfg = self.config
    tf.distribute.get_replica_context().merge_call(ema.update, args=(
        self.ema_pairs, self.step, cfg.ema_start_step, cfg.ema_decay))
    self.step.assign_add(1)
    d_loss, d_real, d_fake = [tf.add_n(list(m)) / n for m in zip(*d_metrics)]
    return tf.stack([d_loss, g_loss, d_real, d_fake])

