"""What a run's checkpoints weigh and how long a save takes, for the real models.

  python -m hamgan.bench.run_storage [--gin_file imagenet128_hamgan_strong ...]
      [--dir /tmp] [--repeats 3]

For each experiment: builds G, EMA G and D from the gin file (hamgan-train's parsing,
with the config's own bindings) and both Adam optimizers with their slots, as the
Trainer's `_build_state` does, then

* milestone: the bytes of G + EMA G variables (float32, BN statistics and spectral-norm
  vectors included) plus the step, and the size on disk of a real milestone written
  with tf.train.Checkpoint(generator, ema_generator, step).write(); times the run's
  train.num_steps / train.checkpoint_every milestones (what an evaluation keeps);
* full state: tf.train.CheckpointManager.save of generator, discriminator,
  ema_generator, g_optimizer, d_optimizer, step, rng (the Trainer's checkpoint) to
  local disk, best of `--repeats`, and its size.

Also prints the day's numpy 1024^3 float32 matmul speed, to put the times beside.
"""
import argparse
import os
import shutil
import tempfile
import time

import numpy as np


def matmul_gmacs(size=1024, repeats=10):
  """Best numpy float32 size^3 matmul speed, in 1e9 multiply-adds per second."""
  a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
  b = np.random.default_rng(1).standard_normal((size, size), dtype=np.float32)
  a @ b  # pylint: disable=pointless-statement
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    a @ b  # pylint: disable=pointless-statement
    best = min(best, time.perf_counter() - start)
  return size ** 3 / best / 1e9


def _disk_bytes(prefix):
  directory, base = os.path.split(prefix)
  return sum(os.path.getsize(os.path.join(directory, n)) for n in os.listdir(directory)
             if n.startswith(base + "."))


def _variable_bytes(variables):
  return sum(int(np.prod(v.shape)) * v.dtype.size for v in variables)


def measure(gin_file, directory, repeats=3):
  """One experiment's numbers (a dict); builds its models in this process."""
  import gin  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from hamgan.cli import train as train_cli  # pylint: disable=import-outside-toplevel
  from hamgan.training import trainer as trainer_lib  # pylint: disable=import-outside-toplevel

  train_cli.parse_gin([gin_file], [])
  cfg = trainer_lib.TrainConfig()
  g, ema_g, d, g_opt, d_opt = _training_state(cfg)
  step = tf.Variable(cfg.checkpoint_every, dtype=tf.int64, trainable=False, name="step")
  rng = tf.random.Generator.from_seed(cfg.seed)

  work = tempfile.mkdtemp(prefix="hamgan-run-storage-", dir=directory)
  try:
    start = time.perf_counter()
    milestone = tf.train.Checkpoint(generator=g, ema_generator=ema_g, step=step).write(
        os.path.join(work, "milestones", f"ckpt-{cfg.checkpoint_every}"))
    milestone_secs = time.perf_counter() - start
    full = tf.train.Checkpoint(generator=g, discriminator=d, ema_generator=ema_g,
                               g_optimizer=g_opt, d_optimizer=d_opt, step=step, rng=rng)
    manager = tf.train.CheckpointManager(full, os.path.join(work, "checkpoints"),
                                         max_to_keep=1)
    times, path = [], None
    for i in range(repeats):
      start = time.perf_counter()
      path = manager.save(checkpoint_number=i + 1)
      times.append(time.perf_counter() - start)
    result = {
        "gin_file": gin_file,
        "g_params": int(sum(np.prod(v.shape) for v in g.trainable_variables)),
        "d_params": int(sum(np.prod(v.shape) for v in d.trainable_variables)),
        "g_variable_bytes": _variable_bytes(g.variables),
        "milestone_variable_bytes": (_variable_bytes(g.variables)
                                     + _variable_bytes(ema_g.variables) + 8),
        "milestone_disk_bytes": _disk_bytes(milestone),
        "milestone_write_secs": milestone_secs,
        "full_variable_bytes": _variable_bytes(full_variables(g, d, ema_g, g_opt, d_opt)),
        "full_disk_bytes": _disk_bytes(path),
        "full_save_secs": times,
        "checkpoint_every": cfg.checkpoint_every,
        "num_steps": cfg.num_steps,
        "max_checkpoints": cfg.max_checkpoints,
    }
  finally:
    shutil.rmtree(work, ignore_errors=True)
    gin.clear_config()
  return result


def _training_state(cfg):
  """G, EMA G, D and both optimizers, built as the trainer builds them (all weights and
  slots exist), for the experiment parsed into gin."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from hamgan import models  # pylint: disable=import-outside-toplevel
  from hamgan.evaluation import restore  # pylint: disable=import-outside-toplevel
  tf.keras.backend.clear_session()
  tf.keras.utils.set_random_seed(cfg.seed)
  g = models.Generator(name="generator")
  ema_g = models.Generator(name="ema_generator")
  d = models.Discriminator(name="discriminator")
  for generator in (g, ema_g):
    restore.build_generator(generator)
  size = int(g.image_size)
  d((tf.zeros([1, size, size, 3]), tf.zeros([1], tf.int32)), training=False)

  def optimizer(lr, name):
    return cfg.optimizer_fn(learning_rate=lr, beta1=cfg.beta1, beta2=cfg.beta2,
                            epsilon=cfg.epsilon, name=name)
  g_opt, d_opt = optimizer(cfg.g_lr, "g_adam"), optimizer(cfg.d_lr, "d_adam")
  g_opt.build(g.trainable_variables)
  d_opt.build(d.trainable_variables)
  return g, ema_g, d, g_opt, d_opt


def full_variables(g, d, ema_g, g_opt, d_opt):
  return list(g.variables) + list(d.variables) + list(ema_g.variables) + list(
      g_opt.variables) + list(d_opt.variables)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--gin_file", action="append",
                      help="experiments (default: imagenet128_hamgan_strong, "
                           "imagenet128_sagan)")
  parser.add_argument("--dir", default=None, help="where to write (default: the temp dir)")
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args(argv)
  print(f"numpy 1024^3 float32 matmul: {matmul_gmacs():.1f} GMAC/s (best of 10)")
  mib = 2 ** 20
  for gin_file in args.gin_file or ["imagenet128_hamgan_strong", "imagenet128_sagan"]:
    r = measure(gin_file, args.dir, args.repeats)
    milestones = r["num_steps"] // r["checkpoint_every"]
    print(f"{gin_file}: G {r['g_params'] / 1e6:.2f} M params, D {r['d_params'] / 1e6:.2f} M")
    print(f"  milestone (G + EMA G + step): variables {r['milestone_variable_bytes'] / mib:.1f}"
          f" MiB, on disk {r['milestone_disk_bytes'] / mib:.1f} MiB, written in "
          f"{r['milestone_write_secs']:.2f} s; {milestones} milestones "
          f"(num_steps {r['num_steps']} / checkpoint_every {r['checkpoint_every']}) = "
          f"{milestones * r['milestone_disk_bytes'] / 2 ** 30:.2f} GiB")
    print(f"  full state (G, D, EMA G, 2 Adam, step, rng): variables "
          f"{r['full_variable_bytes'] / mib:.1f} MiB, on disk {r['full_disk_bytes'] / mib:.1f}"
          f" MiB; CheckpointManager.save {', '.join(f'{t:.2f}' for t in r['full_save_secs'])}"
          f" s (best {min(r['full_save_secs']):.2f} s); x max_checkpoints "
          f"{r['max_checkpoints']} = {r['max_checkpoints'] * r['full_disk_bytes'] / 2 ** 30:.2f}"
          " GiB")


if __name__ == "__main__":
  main()
