"""Class-conditional ResNet generator (SAGAN / BigGAN layout) with a context module.

docs/design.md, section 'Models'. z -> SN-linear -> 4x4 feature map -> up-blocks (each
doubling the resolution, with class-conditional batch norms) -> unconditional
BN, ReLU, SN-conv3x3 to RGB, tanh. One global-context module (self-attention,
YLG, a Hamburger, or none) sits after the up-block that reaches
`context_resolution`.

Layouts (channel multipliers of `ch`; the resolution each block outputs):

  image 128 (SAGAN ImageNet):  linear 16ch(4)  16ch(8) 8ch(16) 4ch(32) 2ch(64) 1ch(128)
  image 64  (BigGAN 64):       linear 16ch(4)  16ch(8) 8ch(16) 4ch(32) 2ch(64)
  image 32  (BigGAN/SNGAN CIFAR): linear 4ch(4) 4ch(8) 4ch(16) 4ch(32)

The context sits at 32x32 by default (16x16 for 32x32 images). With ch=64,
1000 classes and the SAGAN context at 128x128 the model has exactly the
42,078,852 trainable parameters of the TF-GAN SAGAN reference.
"""
import gin
import tensorflow as tf

from hamgan.models import blocks
from hamgan.validation import check_int
from hamgan.layers.normalization import ConditionalBatchNorm
from hamgan.layers.spectral_norm import SNConv2D, SNDense

# image size -> (multiplier of the 4x4 map, multipliers of the up-blocks).
_LAYOUTS = {
    128: (16, (16, 8, 4, 2, 1)),
    64: (16, (16, 8, 4, 2)),
    32: (4, (4, 4, 4)),
}
_DEFAULT_CONTEXT_RESOLUTION = {128: 32, 64: 32, 32: 16}


@gin.configurable(module="hamgan.models")
class Generator(blocks.DescribedModel):
  """G((z, y), training) -> images (B, S, S, 3) float32 in [-1, 1].

  Args:
    image_size: 32, 64 or 128.
    num_classes: number of classes of the conditional batch norms.
    ch: width; block channels are multiples of it (see the module docstring).
    z_dim: length of the latent vector z.
    context: the context module, by gin reference (`@ham_nmf`) or by its name in
      the context registry (`none`, `sagan`, `ylg`, `ham_nmf`, `ham_cd`,
      `ham_vq`, or one registered later); stored and reported as the name.
    context_resolution: feature resolution after which the context sits; None
      is 32 (16 for 32x32 images).
    context_settings: extra keyword arguments for the context layer. A
      Hamburger here is class-conditional (conditional BN in its upper bread,
      fed with G's labels) unless the settings say otherwise.
  """

  def __init__(self, image_size=128, num_classes=1000, ch=64, z_dim=128, context="sagan",
               context_resolution=None, context_settings=None, name="generator", **kwargs):
    owner = "Generator"
    blocks.check_image_size(owner, image_size)
    check_int(owner, "num_classes", num_classes,
                              hint="pass the number of classes of the data set (1 if unlabelled).")
    check_int(owner, "ch", ch, hint="pass the base width, e.g. 64.")
    check_int(owner, "z_dim", z_dim, hint="pass the latent size, e.g. 128.")
    if context_resolution is None:
      context_resolution = _DEFAULT_CONTEXT_RESOLUTION[image_size]
    init_mult, mults = _LAYOUTS[image_size]
    resolutions = [4 * 2 ** (i + 1) for i in range(len(mults))]
    context = blocks.check_context(owner, context, context_resolution, resolutions,
                                   context_settings)
    context_index = resolutions.index(context_resolution)
    # G's Hamburger is class-conditional unless told otherwise.
    ham_defaults = {"conditional": True}
    if (context_settings or {}).get("conditional", True):
      ham_defaults["num_classes"] = num_classes
    context_layer = blocks.place_context(name, context, mults[context_index] * ch,
                                         context_resolution, context_settings, ham_defaults)
    super().__init__(name=name, **kwargs)

    self.image_size = image_size
    self.num_classes = num_classes
    self.ch = ch
    self.z_dim = z_dim
    self.context = context
    self.context_resolution = context_resolution
    self.context_settings = dict(context_settings or {})

    self._init_channels = init_mult * ch
    self._shapes = [(r, r, m * ch) for r, m in zip(resolutions, mults)]
    self.linear = SNDense(4 * 4 * self._init_channels, name="linear")
    self.blocks = [blocks.GeneratorBlock(m * ch, num_classes, name=f"block{i + 1}")
                   for i, m in enumerate(mults)]
    self._context_index = context_index
    self.context_layer = context_layer
    self.bn_out = ConditionalBatchNorm(None, name="bn_out")
    self.conv_out = SNConv2D(3, 3, name="conv_out")

  def call(self, inputs, training=None, segments=1):
    """Images (B, S, S, 3) of ((z, y)); `segments` is passed to the context module."""
    z, y = inputs
    if z.shape.rank != 2 or z.shape[-1] not in (None, self.z_dim):
      raise ValueError(f"{self.name}: z has shape {z.shape}; expected (batch, {self.z_dim}). "
                       f"Draw z with z_dim={self.z_dim} or build G with z_dim={z.shape[-1]}.")
    y = tf.cast(tf.reshape(y, [-1]), tf.int32)
    h = self.linear(z, training=training)
    h = tf.reshape(h, [-1, 4, 4, self._init_channels])  # (B, 16ch*16) -> (B, 4, 4, 16ch)
    for i, block in enumerate(self.blocks):
      h = block(h, y, training=training)
      if i == self._context_index and self.context_layer is not None:
        h = self.context_layer(h, y=y, training=training, segments=segments)
    h = tf.nn.relu(self.bn_out(h, training=training))
    h = self.conv_out(h, training=training)
    # tanh in float32: the loss and the evaluator read float32 images.
    return tf.tanh(tf.cast(h, tf.float32))

  def build_for_shapes(self, batch_size=1):
    """Creates all weights by running one inference call on zeros."""
    z = tf.zeros([batch_size, self.z_dim])
    y = tf.zeros([batch_size], tf.int32)
    self((z, y), training=False)

  def describe(self):
    """A table of the blocks: output shapes, trainable parameters, the context's place."""
    if not self.conv_out.built:  # Model.built alone can be set by a failed call
      self.build_for_shapes()
    rows = [("linear + reshape", (4, 4, self._init_channels),
             blocks.count_trainable(self.linear), f"SN-linear z({self.z_dim}) -> 4x4")]
    for i, (block, shape) in enumerate(zip(self.blocks, self._shapes)):
      rows.append((block.name, shape, blocks.count_trainable(block),
                   "up-block, conditional BN"))
      if i == self._context_index:
        rows.append(blocks.context_row(self, shape))
    rows.append((self.bn_out.name, self._shapes[-1], blocks.count_trainable(self.bn_out),
                 "unconditional BN, ReLU"))
    rows.append((self.conv_out.name, (self.image_size, self.image_size, 3),
                 blocks.count_trainable(self.conv_out), "SN-conv3x3, tanh"))
    return blocks.describe_rows(blocks.describe_title(self), rows,
                                blocks.count_trainable(self))

  def get_config(self):
    return dict(image_size=self.image_size, num_classes=self.num_classes, ch=self.ch,
                z_dim=self.z_dim, context=self.context,
                context_resolution=self.context_resolution,
                context_settings=dict(self.context_settings), name=self.name)
