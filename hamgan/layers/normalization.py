"""Class-conditional batch normalisation with cross-replica moments.

docs/design.md, 'Conditional batch norm'.

In training the batch mean and variance are taken over the *global* batch: each
replica sums x and x^2 (in float32) over its examples and pixels, the sums are
all-reduced across replicas, and every replica normalises with the same moments.
That keeps a model trained on 8 TPU cores identical to one trained on one device
with the whole batch. Moving averages (decay 0.999) serve inference.

With `num_classes` set, gamma and beta are looked up per example from tables of
shape (num_classes, C); gamma starts at 1 (not 0), beta at 0. With
`num_classes=None` the layer is a plain cross-replica batch norm (the
generator's last BN).
"""
import tensorflow as tf

from hamgan.layers.utils import static_training


class ConditionalBatchNorm(tf.keras.layers.Layer):
  """Batch norm with per-class scale and offset; call as `bn(x, y=None, training=None)`."""

  def __init__(self, num_classes=None, momentum=0.999, epsilon=1e-3, **kwargs):
    super().__init__(**kwargs)
    if num_classes is not None and int(num_classes) < 1:
      raise ValueError(f"ConditionalBatchNorm num_classes={num_classes!r}: expected a "
                       "positive integer, or None for an unconditional batch norm.")
    if not 0.0 <= float(momentum) < 1.0:
      raise ValueError(f"ConditionalBatchNorm momentum={momentum!r}: expected 0 <= momentum < 1.")
    self.num_classes = None if num_classes is None else int(num_classes)
    self.momentum = float(momentum)
    self.epsilon = float(epsilon)

  @property
  def conditional(self):
    return self.num_classes is not None

  def build(self, input_shape):
    if len(input_shape) != 4:
      raise ValueError(f"{self.name}: input shape {tuple(input_shape)} is not 4-D; "
                       "expected NHWC (batch, height, width, channels).")
    channels = int(input_shape[-1])
    table = (self.num_classes, channels) if self.conditional else (channels,)
    weight = dict(trainable=True, dtype=tf.float32, experimental_autocast=False)
    self.gamma = self.add_weight(name="gamma", shape=table, initializer="ones", **weight)
    self.beta = self.add_weight(name="beta", shape=table, initializer="zeros", **weight)
    stat = dict(trainable=False, dtype=tf.float32, experimental_autocast=False,
                synchronization=tf.VariableSynchronization.ON_WRITE,
                aggregation=tf.VariableAggregation.MEAN)
    self.moving_mean = self.add_weight(name="moving_mean", shape=(channels,),
                                       initializer="zeros", **stat)
    self.moving_variance = self.add_weight(name="moving_variance", shape=(channels,),
                                           initializer="ones", **stat)
    super().build(input_shape)

  def _batch_moments(self, x32):
    """Mean and (biased) variance over the global batch, per channel."""
    local = tf.stack([tf.reduce_sum(x32, axis=[0, 1, 2]),
                      tf.reduce_sum(tf.square(x32), axis=[0, 1, 2])])
    count = tf.cast(tf.reduce_prod(tf.shape(x32)[:3]), tf.float32)
    ctx = tf.distribute.get_replica_context()
    if ctx is not None and ctx.num_replicas_in_sync > 1:
      local, count = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [local, count])
    mean = local[0] / count
    variance = tf.maximum(local[1] / count - tf.square(mean), 0.0)
    return mean, variance

  def call(self, x, y=None, training=None):
    if self.conditional and y is None:
      raise ValueError(f"{self.name}: a conditional batch norm (num_classes="
                       f"{self.num_classes}) needs labels y; call it as bn(x, y, training).")
    x32 = tf.cast(x, tf.float32)
    if static_training(training):
      mean, variance = self._batch_moments(x32)
      decay = 1.0 - self.momentum
      self.moving_mean.assign_sub((self.moving_mean - mean) * decay)
      self.moving_variance.assign_sub((self.moving_variance - variance) * decay)
    else:
      mean, variance = self.moving_mean, self.moving_variance
    out = (x32 - mean) * tf.math.rsqrt(variance + self.epsilon)
    if self.conditional:
      y = tf.cast(tf.reshape(y, [-1]), tf.int32)
      gamma = tf.gather(self.gamma, y)[:, None, None, :]  # (B, 1, 1, C)
      beta = tf.gather(self.beta, y)[:, None, None, :]
    else:
      gamma, beta = self.gamma, self.beta
    return tf.cast(out * gamma + beta, x.dtype)

  def get_config(self):
    config = super().get_config()
    config.update(num_classes=self.num_classes, momentum=self.momentum, epsilon=self.epsilon)
    return config
