"""The Hamburger: a global-context block built on a low-rank matrix decomposition.

    z = SN-conv1x1(x, S*D)            lower bread (exact W / ||W||_2, no bias)
    z = relu(z)                       NMF only: the decomposition needs X >= 0
    z = ham(z)                        (B*S, N, D) -> low-rank factors, float32
    z = SN-conv1x1(z, C)              upper bread (exact W / ||W||_2, no bias), applied
                                      as coef (bases^T W): the reconstruction
                                      bases coef^T is never formed
    z = ConditionalBatchNorm(z, y)    only when `conditional` (the generator's form)
    return x + gamma * z              gamma: `residual_scale`, trainable scalar, 0 at init

(docs/design.md, 'The Hamburger layer', says why each part is so; the hams are in
`hamgan.layers.hams`.) Contract: the ham runs in float32 under any policy; training
calls update `last_relative_error` and the bases state (`bases_seed` for random
initial bases, `bases` for online ones), inference calls touch no state; the random
bases are stateless draws from the checkpointed `bases_seed`, so a resumed run and a
copy of the layer draw what the original would; every replica draws the bases of the
global batch and keeps its own rows, so N replicas compute what one device does (a
batch of several concatenated per-replica slices is declared by the call's `segments`).
"""
import zlib

import tensorflow as tf

from hamgan.layers import hams
from hamgan.layers.normalization import ConditionalBatchNorm
from hamgan.layers.spectral_norm import SNConv2D
from hamgan.layers.utils import static_training
from hamgan.validation import check_int

INITS = ("random", "online")
INFERENCE_BASES = ("fixed", "fresh")

def _positive_int(name, value, allow_none=False, allow_zero=False):
  return check_int("Hamburger", name, value, minimum=0 if allow_zero else 1,
                   allow_none=allow_none)


def _seed_salt(seed, name):
  """First element of the stateless seed pair: `seed` in the high bits, CRC32(name) low."""
  return (int(seed) * (1 << 32) + zlib.crc32(name.encode("utf-8"))) % (1 << 63)


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
    init: "random" (fresh bases each training call, from a checkpointed stateless
      seed) or "online" (an EMA buffer of bases).
    conditional: add a class-conditional batch norm after the upper bread.
    num_classes: classes of that batch norm (required when conditional).
    online_momentum: EMA momentum of the online bases.
    seed: non-negative int mixed with the layer name into the random bases' seed;
      change it to get another sequence of draws from the same model.
    normalize_bases: L2-normalise the random initial bases over D (True, the
      PyTorch code's choice) or start from the raw draw (False, the official TF
      NMF); init="random" only.
    ridge: beta of CD's ridge solve, coef = X^T B (B^T B + beta I)^-1; None is
      0.1 (PyTorch), the official TF code uses 0.01; ham="cd" only.
    inference_bases: with init="random", "fixed" draws inference bases from the
      checkpointed seed without advancing it (deterministic inference), "fresh"
      draws new bases on every inference call (the official TF code).
  (docs/design.md, 'The Hamburger layer' and 'Differences from the official code'.)
  """

  def __init__(self, ham="nmf", groups=1, dim=None, rank=32, steps=6, eval_steps=None,
               one_step=True, init="random", conditional=False, num_classes=None,
               online_momentum=0.9, seed=0, normalize_bases=True, ridge=None,
               inference_bases="fixed", **kwargs):
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
    self.seed = _positive_int("seed", seed, allow_zero=True)
    self._check_fidelity_settings(normalize_bases, ridge, inference_bases)
    self.normalize_bases = bool(normalize_bases)
    self.ridge = None if ridge is None else float(ridge)
    self.inference_bases = inference_bases

  def _check_fidelity_settings(self, normalize_bases, ridge, inference_bases):
    """Rejects a setting that would do nothing for this ham or init."""
    if inference_bases not in INFERENCE_BASES:
      raise ValueError(f"Hamburger inference_bases={inference_bases!r}: expected one of "
                       f"{INFERENCE_BASES} ('fresh' draws new bases on every inference "
                       "call, as the official TF code does).")
    if self.init != "random" and (not normalize_bases or inference_bases != "fixed"):
      raise ValueError(f"Hamburger init={self.init!r} with normalize_bases="
                       f"{normalize_bases!r}, inference_bases={inference_bases!r}: these "
                       "settings shape the random draws of init='random' only; drop them "
                       "or set init='random'.")
    if ridge is not None:
      if self.ham != "cd":
        raise ValueError(f"Hamburger ridge={ridge!r} with ham={self.ham!r}: the ridge is "
                         "CD's only; drop it or set ham='cd'.")
      if isinstance(ridge, bool) or not float(ridge) > 0.0:
        raise ValueError(f"Hamburger ridge={ridge!r}: expected a positive float (0.1 by "
                         "default, 0.01 in the official TF code).")

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
    # Residual scale, 0 at init so the block starts as the identity. The variable
    # keeps its old name "sigma", so checkpoints of earlier runs restore unchanged.
    self.residual_scale = self.add_weight(name="sigma", shape=(), initializer="zeros",
                                          trainable=True, dtype=tf.float32,
                                          experimental_autocast=False)
    self.last_relative_error = self.add_weight(
        name="last_relative_error", shape=(), initializer="zeros", **_state_weight())
    self.bases = None
    self.bases_seed = None
    if self.init == "random":
      # [salt, counter]: the stateless seed of the next random bases; one copy on
      # every replica (ONLY_FIRST_REPLICA), checkpointed with the layer.
      salt = _seed_salt(self.seed, self.name)
      self.bases_seed = self.add_weight(
          name="bases_seed", shape=(2,), dtype=tf.int64, trainable=False,
          initializer=tf.constant_initializer([salt, 0]),
          synchronization=tf.VariableSynchronization.ON_WRITE,
          aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    if self.init == "online":
      self.bases = self.add_weight(
          name="bases", shape=(self.groups, self._d, self.rank),
          initializer=_online_initializer(self.ham), **_state_weight())
    super().build(input_shape)

  def _random_bases(self, batch, training, segments):
    """This replica's rows (B*S, D, R) of the global batch's stateless draw."""
    seed = self.bases_seed.read_value()  # before the increment below
    if training:
      self.bases_seed.assign_add(tf.constant([0, 1], tf.int64))
    ctx = tf.distribute.get_replica_context()
    replicas = 1 if ctx is None else ctx.num_replicas_in_sync
    static = tf.get_static_value(batch)
    if static is not None and int(static) % segments:
      raise ValueError(f"{self.name}: batch={int(static)} is not divisible by "
                       f"segments={segments}; expected {segments} equal concatenated "
                       "slices. Fix the segments count of the call.")
    rows = batch * self.groups  # this replica's rows, sample-major, group-minor
    if not training and self.inference_bases == "fresh":
      # A new stateful draw per call and replica, as the official TF code does.
      return hams.init_bases(self.ham, rows, self._d, self.rank,
                             normalize=self.normalize_bases)
    bases = hams.init_bases(self.ham, rows * replicas, self._d, self.rank, seed=seed,
                            normalize=self.normalize_bases)
    if replicas == 1:
      return bases
    # Global rows are ordered (segment, replica, row in segment): keep this replica's.
    bases = tf.reshape(bases, [segments, replicas, -1, self._d, self.rank])
    mine = tf.gather(bases, ctx.replica_id_in_sync_group, axis=1)  # (k, rows/k, D, R)
    return tf.reshape(mine, [rows, self._d, self.rank])

  def _initial_bases(self, batch, training, segments):
    """Initial bases (B*S, D, R) in float32."""
    if self.bases is None:
      return self._random_bases(batch, training, segments)
    online = tf.convert_to_tensor(self.bases)  # (S, D, R)
    tiled = tf.broadcast_to(online[None], [batch, self.groups, self._d, self.rank])
    return tf.reshape(tiled, [batch * self.groups, self._d, self.rank])

  def _upper_bread(self, bases, coef, b, h, w, training):
    """The 1x1 upper bread applied to the reconstruction, without forming it.

    For each group s, conv1x1(coef_s bases_s^T, W_s) = coef_s (bases_s^T W_s): the
    bread's (D, C) kernel is folded into the (D, R) bases first, so the (N, D)
    reconstruction never exists and the bread costs N R C + D R C multiply-adds per
    sample (backward too) instead of N D C + N D R. Equal to reconstructing and
    convolving up to float rounding (tests/test_hamburger.py checks it against that
    route). The fold runs in float32, then the product in the compute dtype.
    """
    s, d, r = self.groups, self._d, self.rank
    c = self.upper_bread.filters
    kernel = self.upper_bread.normalized_kernel(training, dtype=tf.float32)
    kernel = tf.reshape(kernel, [s, d, c])  # (S, D, C): group s reads channels s*D..
    bases = tf.reshape(bases, [b, s, d, r])
    folded = tf.einsum("bsdr,sdc->bsrc", bases, kernel)  # (B, S, R, C)
    folded = tf.cast(tf.reshape(folded, [b, s * r, c]), self.compute_dtype)
    if s > 1:  # (B*S, N, R) -> (B, N, S*R), group-major like `folded`'s rows
      coef = tf.transpose(tf.reshape(coef, [b, s, h * w, r]), [0, 2, 1, 3])
    coef = tf.cast(tf.reshape(coef, [b, h * w, s * r]), self.compute_dtype)
    return tf.reshape(tf.matmul(coef, folded), [b, h, w, c])

  def _update_state(self, x_ham, factors, batch):
    """Training-only writes: relative error and the online bases, global over replicas."""
    x_ham, bases, coef, xt_bases = (None if t is None else tf.stop_gradient(t)
                                    for t in (x_ham, *factors))
    sums = tf.stack(hams.squared_errors(x_ham, bases, coef, channels_last=True,
                                        xt_bases=xt_bases))
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

  def call(self, x, y=None, training=None, segments=1):
    """x + gamma * Hamburger(x). `segments`: the replica's batch is this many concatenated
    per-replica slices of global batches (e.g. D on [real_r, fake_r]: 2), so each slice
    takes its own rows of the global random draw and replicas match one device."""
    training = static_training(training)
    segments = _positive_int("segments", segments)
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
    extra = {} if self.ridge is None else {"beta": self.ridge}
    factors = hams.FACTORS[self.ham](
        x_ham, self._initial_bases(b, training, segments), steps, one_step=self.one_step,
        channels_last=True, **extra)  # bases (B*S, D, R), coef (B*S, N, R)
    if training:
      self._update_state(x_ham, factors, b)
    z = self._upper_bread(factors.bases, factors.coef, b, h, w, training)  # (B,H,W,C)
    if self.norm is not None:
      z = self.norm(z, y, training=training)
    return x + tf.cast(self.residual_scale, x.dtype) * z

  def compute_output_shape(self, input_shape):
    return tf.TensorShape(input_shape)

  def get_config(self):
    config = super().get_config()
    config.update(ham=self.ham, groups=self.groups, dim=self.dim, rank=self.rank,
                  steps=self.steps, eval_steps=self.eval_steps, one_step=self.one_step,
                  init=self.init, conditional=self.conditional,
                  num_classes=self.num_classes, online_momentum=self.online_momentum,
                  seed=self.seed, normalize_bases=self.normalize_bases, ridge=self.ridge,
                  inference_bases=self.inference_bases)
    return config
