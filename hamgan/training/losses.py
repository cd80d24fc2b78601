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
  """Per-pair mode-seeking penalty (Mao et al., "Mode Seeking GANs", CVPR 2019).

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


def get_loss(name_or_fn):
  """Returns a loss function from a name in LOSSES or a callable (a gin reference)."""
  return validation.choose_function(
      "loss", LOSSES, name_or_fn,
      "fn(d_real, d_fake) -> (d_loss_per_example, g_loss_per_example)",
      "train.loss_fn = @hinge")
