"""The Hamburger: a global-context block built on a low-rank matrix decomposition.

    z = SN-conv1x1(x, S*D)            lower bread (exact W / sigma, no bias)
    z = relu(z)                       NMF only: the decomposition needs X >= 0
    z = ham(z)                        (B*S, N, D) -> low-rank reconstruction, float32
    z = SN-conv1x1(z, C)              upper bread (exact W / sigma, no bias)
    z = ConditionalBatchNorm(z, y)    only when `conditional` (the generator's form)
    return x + sigma * z              sigma: trainable scalar, 0 at init

(DESIGN.md 3.4; the hams are in `hamgan.layers.hams`.) The ham runs in float32 under
any mixed-precision policy because multiplicative updates are fragile in bfloat16.

State beyond the weights, updated only in training calls:
* `last_relative_error`: ||X - recon||_F / ||X||_F of the last training call over the
  global batch, for the trainer's summaries (how rough the early-stopped solution is).
* with `init="online"`, `bases` (groups, dim, rank): the initial bases of every call,
  an EMA (momentum `online_momentum`) of the batch-mean final bases, L2-normalised.
"""
import numbers

import tensorflow as tf

from hamgan.layers import hams
from hamgan.layers.normalization import ConditionalBatchNorm
from hamgan.layers.spectral_norm import SNConv2D
from hamgan.layers.utils import static_training

INITS = ("random", "online")


def _positive_int(name, value, allow_none=False, allow_zero=False):
  if allow_none and value is None:
    return None
  ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
  lowest = 0 if allow_zero else 1
  if not ok or value < lowest:
    kind = "a non-negative" if allow_zero else "a positive"
    extra = " or None" if allow_none else ""
    raise ValueError(f"Hamburger {name}={value!r}: expected {kind} integer{extra}.")
  return int(value)


def _online_initializer(kind):
  """Initial EMA bases (groups, dim, rank), drawn like the per-call random ones."""
  def init(shape, dtype=None):
    del dtype
    return hams.init_bases(kind, shape[0], shape[1], shape[2])
  return init


def _state_weight():
  return dict(trainable=False, dtype=tf.float32, experimental_autocast=False,
              synchronization=tf.VariableSynchronization.ON_WRITE,
              aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


@tf.keras.utils.register_keras_serializable(package="hamgan")
class Hamburger(tf.keras.layers.Layer):
  """Matrix-decomposition context module; call as `layer(x, y=None, training=None)`.

  Args:
    ham: "nmf" (default), "cd" or "vq".
    groups: S, the number of channel groups decomposed separately.
    dim: D, channels per group after the lower bread (default channels // groups).
    rank: R, the number of bases; at most min(D, H*W).
    steps: K, decomposition iterations in training.
    eval_steps: iterations in inference (default: `steps`).
    one_step: True for the one-step gradient, False to back-propagate every step.
    init: "random" (fresh bases each call) or "online" (an EMA buffer of bases).
    conditional: add a class-conditional batch norm after the upper bread.
    num_classes: classes of that batch norm (required when conditional).
    online_momentum: EMA momentum of the online bases.
  """

  def __init__(self, ham="nmf", groups=1, dim=None, rank=32, steps=6, eval_steps=None,
               one_step=True, init="random", conditional=False, num_classes=None,
               online_momentum=0.9, **kwargs):
    super().__init__(**kwargs)
    if ham not in hams.HAM_KINDS:
      raise ValueError(f"Hamburger ham={ham!r}: expected one of {hams.HAM_KINDS}; "
                       "NMF is the paper's default.")
    if init not in INITS:
      raise ValueError(f"Hamburger init={init!r}: expected one of {INITS} (fresh random "
                       "bases every call, or an EMA buffer of bases).")
    if conditional and num_classes is None:
      raise ValueError("Hamburger conditional=True with num_classes=None: expected the "
                       "number of classes of the conditional batch norm; pass "
                       "num_classes or set conditional=False.")
    if not 0.0 <= float(online_momentum) < 1.0:
      raise ValueError(f"Hamburger online_momentum={online_momentum!r}: expected a value "
                       "in [0, 1), e.g. 0.9.")
    self.ham = ham
    self.groups = _positive_int("groups", groups)
    self.dim = _positive_int("dim", dim, allow_none=True)
    self.rank = _positive_int("rank", rank)
    self.steps = _positive_int("steps", steps, allow_zero=True)
    self.eval_steps = _positive_int("eval_steps", eval_steps, allow_none=True,
                                    allow_zero=True)
    self.one_step = bool(one_step)
    self.init = init
    self.conditional = bool(conditional)
    self.num_classes = None if num_classes is None else _positive_int(
        "num_classes", num_classes)
    self.online_momentum = float(online_momentum)

  def _check_shape(self, shape):
    """Validates an NHWC shape; returns (H, W, C), H and W possibly None."""
    shape = tf.TensorShape(shape)
    if shape.rank != 4:
      raise ValueError(f"{self.name}: input shape {shape} is not 4-D; expected NHWC "
                       "(batch, height, width, channels). Reshape the feature map.")
    h, w, c = shape[1], shape[2], shape[3]
    if c is None or c % self.groups:
      raise ValueError(f"{self.name}: channels={c} is not divisible by groups="
                       f"{self.groups}; expected a known multiple of the groups. Change "
                       "groups or the width of the feature map.")
    dim = self.dim or c // self.groups
    if h is not None and w is not None and self.rank > min(dim, h * w):
      raise ValueError(f"{self.name}: rank={self.rank} exceeds min(D={dim}, N=H*W="
                       f"{h * w}); expected rank <= {min(dim, h * w)}. Lower the rank "
                       "or place the module at a larger feature map.")
    return h, w, c

  def build(self, input_shape):
    _, _, c = self._check_shape(input_shape)
    self._d = self.dim or c // self.groups
    policy = self.dtype_policy
    shape = tf.TensorShape(input_shape)
    self.lower_bread = SNConv2D(self.groups * self._d, 1, use_bias=False, exact=True,
                                name="lower_bread", dtype=policy)
    self.upper_bread = SNConv2D(c, 1, use_bias=False, exact=True, name="upper_bread",
                                dtype=policy)
    # Built here (not on first call) so that weights exist after build; the name
    # scopes keep variable names distinct (hamburger/lower_bread/kernel, ...).
    with tf.name_scope("lower_bread"):
      self.lower_bread.build(shape)
    with tf.name_scope("upper_bread"):
      self.upper_bread.build(shape[:-1].concatenate([self.groups * self._d]))
    self.norm = None
    if self.conditional:
      self.norm = ConditionalBatchNorm(self.num_classes, name="norm", dtype=policy)
      with tf.name_scope("norm"):
        self.norm.build(shape)
    # Residual scale, 0 at init so the block starts as the identity.
    self.sigma = self.add_weight(name="sigma", shape=(), initializer="zeros",
                                 trainable=True, dtype=tf.float32,
                                 experimental_autocast=False)
    self.last_relative_error = self.add_weight(
        name="last_relative_error", shape=(), initializer="zeros", **_state_weight())
    self.bases = None
    if self.init == "online":
      self.bases = self.add_weight(
          name="bases", shape=(self.groups, self._d, self.rank),
          initializer=_online_initializer(self.ham), **_state_weight())
    super().build(input_shape)

  def _initial_bases(self, batch):
    """Initial bases (B*S, D, R) in float32."""
    if self.bases is None:
      return hams.init_bases(self.ham, batch * self.groups, self._d, self.rank)
    online = tf.convert_to_tensor(self.bases)  # (S, D, R)
    tiled = tf.broadcast_to(online[None], [batch, self.groups, self._d, self.rank])
    return tf.reshape(tiled, [batch * self.groups, self._d, self.rank])

  def _update_state(self, x_ham, recon, bases, batch):
    """Training-only writes: relative error and the online bases, global over replicas."""
    x_ham, recon, bases = (tf.stop_gradient(t) for t in (x_ham, recon, bases))
    sums = tf.stack([tf.reduce_sum(tf.square(x_ham - recon)),
                     tf.reduce_sum(tf.square(x_ham))])
    mean_bases = tf.reduce_mean(
        tf.reshape(bases, [batch, self.groups, self._d, self.rank]), axis=0)  # (S, D, R)
    ctx = tf.distribute.get_replica_context()
    if ctx is not None and ctx.num_replicas_in_sync > 1:
      sums = ctx.all_reduce(tf.distribute.ReduceOp.SUM, sums)
      mean_bases = ctx.all_reduce(tf.distribute.ReduceOp.MEAN, mean_bases)
    self.last_relative_error.assign(tf.sqrt(sums[0] / tf.maximum(sums[1], 1e-12)))
    if self.bases is not None:
      m = self.online_momentum
      ema = m * tf.convert_to_tensor(self.bases) + (1.0 - m) * mean_bases
      self.bases.assign(tf.math.l2_normalize(ema, axis=1, epsilon=1e-12))

  def call(self, x, y=None, training=None):
    training = static_training(training)
    h, w, _ = self._check_shape(x.shape)
    if self.conditional and y is None:
      raise ValueError(f"{self.name}: conditional=True (num_classes={self.num_classes}) "
                       "but labels y is None; expected int labels of shape (B,). Call "
                       "layer(x, y, training=...).")
    s, d = self.groups, self._d
    z = self.lower_bread(x, training=training)  # (B, H, W, S*D)
    shape = tf.shape(z)
    b = shape[0]
    h = shape[1] if h is None else h
    w = shape[2] if w is None else w
    z = tf.cast(z, tf.float32)
    if self.ham == "nmf":
      z = tf.nn.relu(z)
    # The ham works channels-last, (B*S, N, D): for S = 1 both reshapes are free.
    if s == 1:
      x_ham = tf.reshape(z, [b, h * w, d])  # (B, N, D)
    else:
      z = tf.reshape(z, [b, h * w, s, d])  # (B, N, S, D)
      x_ham = tf.reshape(tf.transpose(z, [0, 2, 1, 3]), [b * s, h * w, d])  # (B*S, N, D)
    steps = self.steps if training or self.eval_steps is None else self.eval_steps
    recon, bases, _ = hams.HAMS[self.ham](
        x_ham, self._initial_bases(b), steps, one_step=self.one_step,
        channels_last=True)
    if training:
      self._update_state(x_ham, recon, bases, b)
    if s > 1:
      recon = tf.transpose(tf.reshape(recon, [b, s, h * w, d]), [0, 2, 1, 3])  # (B,N,S,D)
    z = tf.cast(tf.reshape(recon, [b, h, w, s * d]), self.compute_dtype)  # NHWC
    z = self.upper_bread(z, training=training)  # (B, H, W, C)
    if self.norm is not None:
      z = self.norm(z, y, training=training)
    return x + tf.cast(self.sigma, x.dtype) * z

  def compute_output_shape(self, input_shape):
    return tf.TensorShape(input_shape)

  def get_config(self):
    config = super().get_config()
    config.update(ham=self.ham, groups=self.groups, dim=self.dim, rank=self.rank,
                  steps=self.steps, eval_steps=self.eval_steps, one_step=self.one_step,
                  init=self.init, conditional=self.conditional,
                  num_classes=self.num_classes, online_momentum=self.online_momentum)
    return config
