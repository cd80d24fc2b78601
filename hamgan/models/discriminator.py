"""Projection discriminator (SAGAN / BigGAN layout) with a context module.

docs/design.md, section 'Models'. An optimized first block, pre-activation down-blocks, a
last block at the lowest resolution without downsampling, ReLU, sum over
space, then SN-linear(1) plus the projection term <SN-embedding(y), h> that
makes D class-conditional. One global-context module sits after the block that
first reaches `context_resolution`; it is not class-conditional.

Layouts (channel multipliers of `ch`; the resolution each block outputs):

  image 128 (SAGAN ImageNet): opt 1ch(64) 2ch(32) 4ch(16) 8ch(8) 16ch(4) 16ch(4, no down)
  image 64  (BigGAN 64):      opt 1ch(32) 2ch(16) 4ch(8)  8ch(4) 16ch(4, no down)
  image 32  (BigGAN/SNGAN CIFAR): opt 4ch(16) 4ch(8) 4ch(8, no down) 4ch(8, no down)

The context sits at 32x32 by default (16x16 for 32x32 images). With ch=64,
1000 classes and the SAGAN context at 128x128 the model has exactly the
39,463,618 trainable parameters of the TF-GAN SAGAN reference.
"""
import gin
import tensorflow as tf

from hamgan.models import blocks
from hamgan.validation import check_int
from hamgan.layers.spectral_norm import SNDense, SNEmbedding

# image size -> (multiplier of the optimized block, ((multiplier, downsample), ...)).
_LAYOUTS = {
    128: (1, ((2, True), (4, True), (8, True), (16, True), (16, False))),
    64: (1, ((2, True), (4, True), (8, True), (16, False))),
    32: (4, ((4, True), (4, False), (4, False))),
}
_DEFAULT_CONTEXT_RESOLUTION = {128: 32, 64: 32, 32: 16}
# The HamGAN discriminator's Hamburger uses a smaller rank than G's
# (docs/design.md, 'The Hamburger layer').
_DEFAULT_HAM_RANK = 16


@gin.configurable(module="hamgan.models")
class Discriminator(blocks.DescribedModel):
  """D((x, y), training) -> logits (B,) float32.

  Args:
    image_size: 32, 64 or 128.
    num_classes: number of classes of the projection embedding.
    ch: width; block channels are multiples of it (see the module docstring).
    context: the context module, by gin reference (`@ham_nmf`) or by its name in
      the context registry (`none`, `sagan`, `ylg`, `ham_nmf`, `ham_cd`,
      `ham_vq`, or one registered later); stored and reported as the name.
    context_resolution: feature resolution after which the context sits; None
      is 32 (16 for 32x32 images).
    context_settings: extra keyword arguments for the context layer (a
      Hamburger here defaults to rank 16 and is never class-conditional).
  """

  def __init__(self, image_size=128, num_classes=1000, ch=64, context="sagan",
               context_resolution=None, context_settings=None, name="discriminator",
               **kwargs):
    owner = "Discriminator"
    blocks.check_image_size(owner, image_size)
    check_int(owner, "num_classes", num_classes,
                              hint="pass the number of classes of the data set (1 if unlabelled).")
    check_int(owner, "ch", ch, hint="pass the base width, e.g. 64.")
    if context_resolution is None:
      context_resolution = _DEFAULT_CONTEXT_RESOLUTION[image_size]
    opt_mult, layout = _LAYOUTS[image_size]
    # Output resolution of every block, the optimized one first.
    resolutions = [image_size // 2]
    for _, down in layout:
      resolutions.append(resolutions[-1] // 2 if down else resolutions[-1])
    context = blocks.check_context(owner, context, context_resolution, resolutions,
                                   context_settings)
    if context_settings and context_settings.get("conditional"):
      raise ValueError("Discriminator: context_settings has conditional=True; D's context "
                       "module is never class-conditional (D is conditioned by its projection "
                       "term), so drop that setting.")
    mults = [opt_mult] + [m for m, _ in layout]
    # The first block that reaches the resolution (the last one repeats 4x4).
    context_index = resolutions.index(context_resolution)
    context_layer = blocks.place_context(name, context, mults[context_index] * ch,
                                         context_resolution, context_settings,
                                         {"rank": _DEFAULT_HAM_RANK})
    super().__init__(name=name, **kwargs)

    self.image_size = image_size
    self.num_classes = num_classes
    self.ch = ch
    self.context = context
    self.context_resolution = context_resolution
    self.context_settings = dict(context_settings or {})

    self._shapes = [(r, r, m * ch) for r, m in zip(resolutions, mults)]
    self.blocks = [blocks.DiscriminatorBlock(opt_mult * ch, optimized=True, name="block1")]
    self.blocks += [blocks.DiscriminatorBlock(m * ch, downsample=down, name=f"block{i + 2}")
                    for i, (m, down) in enumerate(layout)]
    self._context_index = context_index
    self.context_layer = context_layer
    self._feature_channels = mults[-1] * ch
    self.linear = SNDense(1, name="linear")
    self.embedding = SNEmbedding(num_classes, self._feature_channels, name="embedding")

  def call(self, inputs, training=None, segments=1):
    """Logits (B,) of ((x, y)); `segments` is passed to the context module (the batch is
    that many concatenated per-replica slices, e.g. [real, fake])."""
    x, y = inputs
    want = (self.image_size, self.image_size, 3)
    if x.shape.rank != 4 or tuple(x.shape[1:]) != want:
      raise ValueError(f"{self.name}: images have shape {x.shape}; expected (batch, "
                       f"{', '.join(map(str, want))}). Resize the data or build D with the "
                       "matching image_size.")
    y = tf.cast(tf.reshape(y, [-1]), tf.int32)
    h = x
    for i, block in enumerate(self.blocks):
      h = block(h, training=training)
      if i == self._context_index and self.context_layer is not None:
        h = self.context_layer(h, training=training, segments=segments)
    h = tf.reduce_sum(tf.nn.relu(h), axis=[1, 2])  # (B, H, W, C) -> (B, C)
    # The head in float32: a sum of 16ch products loses too much in bfloat16.
    h = tf.cast(h, tf.float32)
    out = tf.cast(self.linear(h, training=training), tf.float32)[:, 0]
    embed = tf.cast(self.embedding(y, training=training), tf.float32)
    return out + tf.reduce_sum(embed * h, axis=1)

  def build_for_shapes(self, batch_size=1):
    """Creates all weights by running one inference call on zeros."""
    x = tf.zeros([batch_size, self.image_size, self.image_size, 3])
    y = tf.zeros([batch_size], tf.int32)
    self((x, y), training=False)

  def describe(self):
    """A table of the blocks: output shapes, trainable parameters, the context's place."""
    if not self.embedding.built:  # Model.built alone can be set by a failed call
      self.build_for_shapes()
    rows = []
    for i, (block, shape) in enumerate(zip(self.blocks, self._shapes)):
      kind = ("optimized block" if block.optimized else
              "down-block" if block.downsample else "block, no downsampling")
      rows.append((block.name, shape, blocks.count_trainable(block), kind))
      if i == self._context_index:
        rows.append(blocks.context_row(self, shape))
    rows.append((self.linear.name, (1,), blocks.count_trainable(self.linear),
                 "ReLU, sum over space, SN-linear(1)"))
    rows.append((self.embedding.name, (self._feature_channels,),
                 blocks.count_trainable(self.embedding), "projection <embed(y), h>"))
    return blocks.describe_rows(blocks.describe_title(self), rows,
                                blocks.count_trainable(self))

  def get_config(self):
    return dict(image_size=self.image_size, num_classes=self.num_classes, ch=self.ch,
                context=self.context, context_resolution=self.context_resolution,
                context_settings=dict(self.context_settings), name=self.name)
