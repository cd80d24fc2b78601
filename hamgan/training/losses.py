"""GAN losses, chosen by gin reference (`train.loss_fn = @hinge`).

Each loss returns *per-example* values rather than means, so that the train
step can scale them by the global batch (`tf.nn.compute_average_loss`) and the
sum of the replicas' gradients equals the gradient of the global-batch mean,
whatever the number of replicas.

Signature: `fn(d_real, d_fake) -> (d_loss_per_example, g_loss_per_example)`,
with `d_real` and `d_fake` the discriminator's logits, shape (B,). The D step
passes both; the G step has no real batch and passes `d_real=None`, in which
case the discriminator loss comes back as None. Losses are computed in
float32 whatever the mixed-precision policy.
"""
import gin
import tensorflow as tf

from hamgan import validation


def _as_float32(x):
  return None if x is None else tf.cast(x, tf.float32)


def _at_least_float32(x):
  """float32 for bfloat16 / float16 values; float32 and float64 values unchanged."""
  return tf.cast(x, tf.float32) if x.dtype.size < 4 else x


@gin.configurable(module="hamgan.training")
def hinge(d_real, d_fake):
  """Hinge loss (SAGAN / BigGAN): D pushes real above +1 and fake below -1.

  D: relu(1 - D(x)) + relu(1 + D(G(z))); G: -D(G(z)).
  """
  d_real, d_fake = _as_float32(d_real), _as_float32(d_fake)
  g_loss = -d_fake
  if d_real is None:
    return None, g_loss
  d_loss = tf.nn.relu(1.0 - d_real) + tf.nn.relu(1.0 + d_fake)
  return d_loss, g_loss


@gin.configurable(module="hamgan.training")
def non_saturating(d_real, d_fake):
  """The original GAN loss with the non-saturating generator objective.

  D: softplus(-D(x)) + softplus(D(G(z))) (= -log sigmoid(D(x)) - log(1 - sigmoid(D(G(z)))));
  G: softplus(-D(G(z))) (= -log sigmoid(D(G(z)))), which keeps G's gradient alive
  when D rejects its samples confidently.
  """
  d_real, d_fake = _as_float32(d_real), _as_float32(d_fake)
  g_loss = tf.nn.softplus(-d_fake)
  if d_real is None:
    return None, g_loss
  d_loss = tf.nn.softplus(-d_real) + tf.nn.softplus(d_fake)
  return d_loss, g_loss


LOSSES = {"hinge": hinge, "non_saturating": non_saturating}


def paired_labels(y):
  """Labels whose second half repeats the first: rows i and i + b/2 share a class."""
  half = tf.shape(y)[0] // 2
  return tf.concat([y[:half], y[:half]], axis=0)


def mode_seeking(fake, z, eps=1e-5):
  """hamgan's per-pair variant of the mode-seeking penalty (MSGAN: Mao et al., "Mode
  Seeking GANs", CVPR 2019; MSGAN's own form is `mode_seeking_msgan`).

  Rows i and i + b/2 of `fake` are samples of one class from the latents `z[i]` and
  `z[i + b/2]` (see `paired_labels`). The penalty is 1 / (|dx| / |dz| + eps), mean
  absolute differences: it grows when two latents give nearly the same image, which
  is the within-class collapse that a class-conditional G on small data falls into.
  """
  fake_a, fake_b = tf.split(tf.cast(fake, tf.float32), 2, axis=0)
  z_a, z_b = tf.split(tf.cast(z, tf.float32), 2, axis=0)
  image_gap = tf.reduce_mean(tf.abs(fake_a - fake_b), axis=[1, 2, 3])
  latent_gap = tf.reduce_mean(tf.abs(z_a - z_b), axis=1)
  return 1.0 / (image_gap / latent_gap + eps)


MODE_SEEKING_FORMS = ("per_pair", "msgan")


def mode_seeking_sums(fake, z):
  """Sum |G(z1) - G(z2)| over every element of the pairs, and sum |z1 - z2|: the
  numerator and denominator of MSGAN's ratio before division by their counts (in
  float32, or float64 for float64 images)."""
  fake_a, fake_b = tf.split(_at_least_float32(fake), 2, axis=0)
  z_a, z_b = tf.split(tf.cast(z, fake_a.dtype), 2, axis=0)
  return tf.reduce_sum(tf.abs(fake_a - fake_b)), tf.reduce_sum(tf.abs(z_a - z_b))


def msgan_penalty(image_sum, latent_sum, image_count, latent_count, eps=1e-5):
  """MSGAN's penalty 1 / (r + eps), r = (image_sum / image_count) / (latent_sum /
  latent_count), and its derivative with respect to image_sum (the sums are global:
  every pair of the batch, on every replica)."""
  ratio = (image_sum / image_count) / (latent_sum / latent_count)
  penalty = 1.0 / (ratio + eps)
  slope = -penalty * penalty * latent_count / (image_count * latent_sum)
  return penalty, slope


def mode_seeking_msgan(fake, z, eps=1e-5):
  """The mode-seeking term as MSGAN (Mao et al., CVPR 2019) defines it: one ratio for
  the batch, mean |G(z1) - G(z2)| / mean |z1 - z2| over the halves, and 1 / (ratio + eps).

  hamgan's variant (`mode_seeking`, train.mode_seeking_form='per_pair') averages one
  such penalty per pair instead, so one collapsed pair dominates.
  """
  image_sum, latent_sum = mode_seeking_sums(fake, z)
  half = tf.cast(tf.shape(z)[0] // 2, image_sum.dtype)
  image_count = half * tf.cast(tf.reduce_prod(tf.shape(fake)[1:]), image_sum.dtype)
  latent_count = half * tf.cast(tf.shape(z)[1], image_sum.dtype)
  return msgan_penalty(image_sum, latent_sum, image_count, latent_count, eps)[0]


def lecam(d_real, d_fake, ema_real, ema_fake):
  """Per-example LeCam penalty (Tseng et al., CVPR 2021), rows of a real and a fake batch
  of one size: (D(x) - ema_fake)^2 + (D(G(z)) - ema_real)^2, whose batch mean is
  mean((D(x) - ema_fake)^2) + mean((D(G(z)) - ema_real)^2). The anchors are the EMAs of
  D's mean output on fake and real images (constants for the gradient)."""
  d_real, d_fake = _as_float32(d_real), _as_float32(d_fake)
  ema_real = tf.stop_gradient(_as_float32(ema_real))
  ema_fake = tf.stop_gradient(_as_float32(ema_fake))
  return tf.square(d_real - ema_fake) + tf.square(d_fake - ema_real)


def get_loss(name_or_fn):
  """Returns a loss function from a name in LOSSES or a callable (a gin reference)."""
  return validation.choose_function(
      "loss", LOSSES, name_or_fn,
      "fn(d_real, d_fake) -> (d_loss_per_example, g_loss_per_example)",
      "train.loss_fn = @hinge")
