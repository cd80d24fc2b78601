"""Residual blocks of the SAGAN/BigGAN-style ResNet generator and discriminator.

docs/design.md, section 'Models'. The generator's up-block conditions its two batch norms on
the class label (that is how G is class-conditional); the discriminator's blocks
are pre-activation and label-free (D is conditioned by the projection term at
its head instead). Every convolution is spectrally normalised with
W / max(1, sigma) and has a bias, as in the TF-GAN SAGAN reference whose
parameter counts the models reproduce.
"""
import numpy as np
import tensorflow as tf

from hamgan.layers.normalization import ConditionalBatchNorm
from hamgan.layers.spectral_norm import SNConv2D
from hamgan.validation import check_int


def upsample_nearest(x):
  """Doubles height and width by repeating every pixel (nearest neighbour).

  Written with broadcast + reshape so that it works with a dynamic batch and
  compiles under XLA.
  """
  _, h, w, c = x.shape
  batch = tf.shape(x)[0]
  x = x[:, :, None, :, None, :]                     # (B, H, 1, W, 1, C)
  x = tf.broadcast_to(x, [batch, h, 2, w, 2, c])   # (B, H, 2, W, 2, C)
  return tf.reshape(x, [batch, 2 * h, 2 * w, c])   # (B, 2H, 2W, C)


def downsample_avg(x):
  """Halves height and width by 2x2 average pooling."""
  return tf.nn.avg_pool2d(x, ksize=2, strides=2, padding="VALID")


def _check_channels(name, channels):
  return check_int(name, "out_channels", channels,
                   hint="pass the number of output feature maps, e.g. 256.")


class GeneratorBlock(tf.keras.layers.Layer):
  """Up-block: cBN, ReLU, upsample, conv3x3, cBN, ReLU, conv3x3; shortcut upsample + conv1x1.

  Called as `block(x, y, training=None)` with x (B, H, W, C_in) and int labels
  y (B,); returns (B, 2H, 2W, out_channels).
  """

  def __init__(self, out_channels, num_classes, **kwargs):
    super().__init__(**kwargs)
    _check_channels(self.name, out_channels)
    self.out_channels = out_channels
    self.num_classes = num_classes
    self.bn0 = ConditionalBatchNorm(num_classes, name="cbn0")
    self.conv1 = SNConv2D(out_channels, 3, name="conv1")
    self.bn1 = ConditionalBatchNorm(num_classes, name="cbn1")
    self.conv2 = SNConv2D(out_channels, 3, name="conv2")
    self.shortcut = SNConv2D(out_channels, 1, name="shortcut")

  def call(self, x, y, training=None):
    h = tf.nn.relu(self.bn0(x, y, training=training))
    h = self.conv1(upsample_nearest(h), training=training)
    h = tf.nn.relu(self.bn1(h, y, training=training))
    h = self.conv2(h, training=training)
    # A 1x1 conv commutes with nearest upsampling; convolving first is 4x cheaper.
    s = upsample_nearest(self.shortcut(x, training=training))
    return s + h

  def get_config(self):
    config = super().get_config()
    config.update(out_channels=self.out_channels, num_classes=self.num_classes)
    return config


class DiscriminatorBlock(tf.keras.layers.Layer):
  """Pre-activation down-block: ReLU, conv3x3, ReLU, conv3x3, [avgpool 2x].

  The shortcut is the identity unless the shape changes; then it is a conv1x1
  followed by the same average pooling. With `optimized=True` it is the first
  block of D, which sees raw images: no leading ReLU, and always downsampling.
  Called as `block(x, training=None)`.
  """

  def __init__(self, out_channels, downsample=True, optimized=False, **kwargs):
    super().__init__(**kwargs)
    _check_channels(self.name, out_channels)
    if optimized and not downsample:
      raise ValueError(f"{self.name}: optimized=True with downsample=False; the optimized "
                       "(first) block always downsamples, so set downsample=True.")
    self.out_channels = out_channels
    self.downsample = bool(downsample)
    self.optimized = bool(optimized)
    self.conv1 = SNConv2D(out_channels, 3, name="conv1")
    self.conv2 = SNConv2D(out_channels, 3, name="conv2")
    self.shortcut = None  # Created in build once the input channels are known.

  def build(self, input_shape):
    in_channels = int(input_shape[-1])
    if self.downsample or in_channels != self.out_channels:
      self.shortcut = SNConv2D(self.out_channels, 1, name="shortcut")
    super().build(input_shape)

  def call(self, x, training=None):
    h = x if self.optimized else tf.nn.relu(x)
    h = self.conv1(h, training=training)
    h = self.conv2(tf.nn.relu(h), training=training)
    if self.downsample:
      h = downsample_avg(h)
    s = x
    if self.shortcut is not None:
      if self.downsample:
        # Average pooling and a 1x1 conv commute; pooling first is 4x cheaper.
        s = downsample_avg(s)
      s = self.shortcut(s, training=training)
    return s + h

  def get_config(self):
    config = super().get_config()
    config.update(out_channels=self.out_channels, downsample=self.downsample,
                  optimized=self.optimized)
    return config


# Argument checks shared by the generator and the discriminator. They run in the
# constructors, before any layer or weight exists, so a bad gin binding fails at
# once with a message that says what to change.

IMAGE_SIZES = (32, 64, 128)


def check_image_size(owner, image_size):
  if image_size not in IMAGE_SIZES:
    raise ValueError(f"{owner}: image_size={image_size!r} is not supported; expected one of "
                     f"{', '.join(map(str, IMAGE_SIZES))} (resize the data to one of them).")


def check_context(owner, context, context_resolution, reachable, context_settings):
  """Validates the context, its resolution and its settings dict; returns its name.

  `context` is a registered name or the builder a gin reference (`@ham_nmf`)
  resolves to.
  """
  # Imported here so that importing hamgan.models stays cheap and the registry
  # (and everything it pulls in) loads once a model is actually built.
  from hamgan.layers import registry  # pylint: disable=g-import-not-at-top
  try:
    name = registry.context_name(context)
  except ValueError as e:
    raise ValueError(f"{owner}: {e}") from None
  if context_resolution not in reachable:
    raise ValueError(f"{owner}: context_resolution={context_resolution!r} is never reached by "
                     f"this network; it has feature maps at {sorted(set(reachable))}, so set "
                     "context_resolution to one of those (or None for the default).")
  if context_settings is not None and not isinstance(context_settings, dict):
    raise ValueError(f"{owner}: context_settings={context_settings!r} is not a dict; pass "
                     "keyword arguments for the context layer, e.g. {'rank': 32}, or None.")
  return name


def place_context(model_name, context, channels, resolution, settings, ham_defaults=None):
  """Builds the registry's context layer, weights included, for a (res, res, C) map.

  Returns None for the `none` context. `ham_defaults` fill the settings a Hamburger
  context was not given. Models call this before Model.__init__ creates even its step
  counters, and building now (instead of at the first call) runs the layer's own
  checks on its settings and input (heads that do not divide the channels, a rank
  above min(D, H*W), ...), so a rejected setting fails where it was made and leaves
  no variable behind.
  """
  if context == "none":
    return None
  settings = dict(settings or {})
  if context.startswith("ham_"):
    settings = {**(ham_defaults or {}), **settings}
  from hamgan.layers.registry import build_context  # pylint: disable=g-import-not-at-top
  layer = build_context(context, channels, **settings)
  # The same variable names as when Keras builds it inside the model's call.
  with tf.name_scope(model_name), tf.name_scope(layer.name):
    layer.build(tf.TensorShape([None, resolution, resolution, channels]))
  return layer


# Reporting helpers shared by the generator and the discriminator.

class DescribedModel(tf.keras.Model):
  """A Keras model whose summary() prints its describe() and whose config is its kwargs."""

  def summary(self, print_fn=None, **unused_kwargs):  # pylint: disable=arguments-differ
    """Prints `describe()` (per-block shapes, the context's place, parameters)."""
    (print_fn or print)(self.describe())

  @classmethod
  def from_config(cls, config):
    return cls(**config)


def count_trainable(layer_or_model):
  """Number of trainable scalars of a built layer or model."""
  return int(sum(np.prod(v.shape) for v in layer_or_model.trainable_weights))


def context_row(model, shape):
  """The summary row of a model's context module (or of its absence) at `shape`."""
  res = f"{shape[0]}x{shape[0]}"
  if model.context_layer is None:
    return ("context: none", shape, 0, f"no context module at {res}")
  return (model.context_layer.name, shape, count_trainable(model.context_layer),
          f"<- context '{model.context}' at {res}, C={shape[-1]}")


def describe_title(model):
  """'Generator 128x128, ch=64, 1000 classes, context='sagan' at 32x32'."""
  return (f"{type(model).__name__} {model.image_size}x{model.image_size}, ch={model.ch}, "
          f"{model.num_classes} classes, context={model.context!r} at "
          f"{model.context_resolution}x{model.context_resolution}")


def describe_rows(title, rows, total):
  """Formats (name, output shape, trainable params, note) rows as a table."""
  lines = [title]
  header = f"  {'layer':<22}{'output (H, W, C)':<20}{'trainable':>12}  note"
  lines += [header, "  " + "-" * (len(header) - 2)]
  for name, shape, params, note in rows:
    lines.append(f"  {name:<22}{str(shape):<20}{params:>12,}  {note}".rstrip())
  lines.append(f"  {'total':<42}{total:>12,}")
  return "\n".join(lines)
