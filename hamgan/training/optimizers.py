"""Optimizers, chosen by gin reference (`train.optimizer_fn = @adam`), like the losses.

Signature: `fn(learning_rate, beta1, beta2, epsilon, name) -> tf.keras optimizer`.
The trainer calls it twice (G with train.g_lr, D with train.d_lr) and passes the
train.beta1 / beta2 / epsilon settings; an optimizer without such moments may
ignore them. The names `g_adam` / `d_adam` the trainer gives are display names
only: checkpoints key the optimizers by role (g_optimizer, d_optimizer), so runs
written before this module restore unchanged.
"""
import gin
import tensorflow as tf

from hamgan import validation


@gin.configurable(module="hamgan.training")
def adam(learning_rate, beta1, beta2, epsilon, name):
  """Adam (the SAGAN / BigGAN setting is beta1=0, beta2=0.999)."""
  return tf.keras.optimizers.Adam(learning_rate=learning_rate, beta_1=beta1, beta_2=beta2,
                                  epsilon=epsilon, jit_compile=False, name=name)


@gin.configurable(module="hamgan.training")
def sgd_momentum(learning_rate, beta1, beta2, epsilon, name):
  """SGD with momentum beta1 (beta2 and epsilon unused): a baseline for ablations."""
  del beta2, epsilon
  return tf.keras.optimizers.SGD(learning_rate=learning_rate, momentum=beta1,
                                 jit_compile=False, name=name)


OPTIMIZERS = {"adam": adam, "sgd_momentum": sgd_momentum}


def get_optimizer_fn(name_or_fn):
  """An optimizer function from a name in OPTIMIZERS or a callable (a gin reference)."""
  return validation.choose_function(
      "optimizer", OPTIMIZERS, name_or_fn,
      "fn(learning_rate, beta1, beta2, epsilon, name) -> optimizer",
      "train.optimizer_fn = @adam")
