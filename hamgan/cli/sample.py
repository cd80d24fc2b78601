"""hamgan-sample: write samples of a trained generator as PNG files or one .npz.

  hamgan-sample --model_dir=runs/x --num_samples=64 --classes=3,5 --out=samples/
  hamgan-sample --model_dir=runs/x --num_samples=1000 --truncation=1.0 --out=s.npz

Labels cycle through --classes (default: all classes). With --truncation=t, entries
of z with |z| > t are redrawn (the truncation trick). PNG names carry index and
class; an .npz holds `images` (uint8 N,S,S,3), `labels` and `z` (hamgan-eval --images
scores it). As in hamgan-eval, the EMA generator samples with its stored batch-norm
statistics and the raw one with standing statistics (recomputed over --standing_batches
batches of fresh z;
the checkpoint is not changed). Needs no TF-GAN and no classifier.
"""
import os
from absl import flags
from absl import logging
import numpy as np

from hamgan import cli
from hamgan.cli import errors


def define_flags(args):
  """Defines hamgan-sample's flags on the FlagValues `args`."""
  flags.DEFINE_string("model_dir", None, "Run directory written by hamgan-train.",
                      flag_values=args)
  flags.DEFINE_string("checkpoint", None, "A path, ckpt-N name or step; default latest.",
                      flag_values=args)
  flags.DEFINE_integer("num_samples", 64, "How many samples.", flag_values=args)
  flags.DEFINE_list("classes", None, "Comma-separated class ids, e.g. 3,5 (default: all).",
                    flag_values=args)
  flags.DEFINE_float("truncation", None, "Truncation threshold for z (default: none).",
                     flag_values=args)
  flags.DEFINE_string("out", None, "Output directory for PNGs, or a file name ending in "
                      ".npz.", flag_values=args)
  flags.DEFINE_boolean("use_ema", None, "EMA generator (default when present) or not.",
                       flag_values=args)
  flags.DEFINE_integer("seed", 0, "Seed of z.", flag_values=args)
  flags.DEFINE_integer("batch_size", 100, "Samples per generator call.", flag_values=args)
  flags.DEFINE_integer("standing_batches", None,
                       "Batches of fresh z for BN standing statistics; 0 keeps the "
                       "stored ones. Default: 0 for the EMA generator, 16 for the raw one.",
                       flag_values=args)
  flags.mark_flag_as_required("model_dir", flag_values=args)
  flags.mark_flag_as_required("out", flag_values=args)
  cli.bound_flags(args, minimums={"num_samples": 1, "batch_size": 1, "standing_batches": 0},
                  truncation="truncation")


def parse_flags(argv):
  """Parses argv (program name first) into a fresh FlagValues; prints help on --help."""
  return cli.parse_own_flags(argv, define_flags, __doc__)


def parse_classes(classes, num_classes):
  """['3', '5'] -> array([3, 5]); None -> all classes. Checks the range."""
  if not classes:
    return np.arange(num_classes, dtype=np.int32)
  try:
    ids = np.array([int(c) for c in classes], np.int32)
  except ValueError:
    raise ValueError(f"--classes={','.join(classes)!r} is not a list of integers; pass "
                     "e.g. --classes=3,5.") from None
  bad = [int(c) for c in ids if not 0 <= c < num_classes]
  if bad:
    raise ValueError(f"--classes has {bad} outside 0..{num_classes - 1} (the generator "
                     f"has {num_classes} classes); pass ids in that range.")
  return ids


def generate(generator, num_samples, classes, truncation=None, seed=0, batch_size=100):
  """(images uint8 (N, S, S, 3), labels (N,), z (N, z_dim)); labels cycle `classes`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from hamgan.evaluation import features  # pylint: disable=g-import-not-at-top
  from hamgan import images as images_lib  # pylint: disable=g-import-not-at-top
  z, _ = features.latent_inputs(num_samples, 1, int(generator.z_dim), seed, truncation)
  labels = np.resize(np.asarray(classes, np.int32), num_samples)
  out = [images_lib.to_uint8(generator((tf.constant(z[i:i + batch_size]),
                                        tf.constant(labels[i:i + batch_size])),
                                       training=False).numpy())
         for i in range(0, num_samples, batch_size)]
  return np.concatenate(out), labels, z


def check_out(out, model_dir):
  """--out before any work: an .npz file or a folder for PNGs, never inside the run's
  checkpoints, never a file where the folder goes (or the reverse)."""
  from hamgan import output_paths  # pylint: disable=g-import-not-at-top
  from hamgan import run_dir  # pylint: disable=g-import-not-at-top
  inputs = {f"the {name} of --model_dir": run_dir.path(model_dir, name)
            for name in (run_dir.CHECKPOINT_DIR, run_dir.MILESTONE_DIR)}
  if out.endswith(".npz"):
    return output_paths.check_file("--out", out, inputs, suffix=".npz")
  if out.lower().endswith((".png", ".jpg", ".jpeg", ".npy", ".json")):
    raise ValueError(f"--out={out!r} names one file, but hamgan-sample writes one PNG per "
                     "sample into a folder, or all of them into one .npz; pass a folder "
                     "(e.g. --out=samples/) or a file name ending in .npz.")
  return output_paths.check_folder("--out", out, inputs, what="the PNG samples")


def write_samples(out, images, labels, z):
  """PNG files into directory `out`, or one .npz when `out` ends with .npz."""
  from hamgan import images as images_lib  # pylint: disable=g-import-not-at-top
  if out.endswith(".npz"):
    if os.path.dirname(out):
      os.makedirs(os.path.dirname(out), exist_ok=True)
    np.savez_compressed(out, images=images, labels=labels, z=z)
    return [out]
  paths = []
  for i, (image, label) in enumerate(zip(images, labels)):
    path = os.path.join(out, f"sample_{i:05d}_class{int(label)}.png")
    images_lib.write_png(path, image)
    paths.append(path)
  return paths


def sample(args):
  """Restores G as the flags say and writes the samples; returns the written paths."""
  from hamgan import checkpoints  # pylint: disable=g-import-not-at-top
  from hamgan import run_dir  # pylint: disable=g-import-not-at-top
  from hamgan.evaluation import restore  # pylint: disable=g-import-not-at-top
  if args.num_samples <= 0:
    raise ValueError(f"--num_samples={args.num_samples} must be >= 1.")
  restore.batches_for("ema_generator", args.standing_batches)  # checked before any work
  check_out(args.out, args.model_dir)
  path = checkpoints.find_checkpoint(args.model_dir, args.checkpoint)
  config = run_dir.config_for_step(args.model_dir, checkpoints.checkpoint_step(path))
  generator = restore.build_generator_from_config(config)
  classes = parse_classes(args.classes, int(generator.num_classes))  # before the restore
  key = restore.restore_generator(generator, path, args.use_ema)
  batches = restore.batches_for(key, args.standing_batches)
  if batches:
    restore.recompute(generator, batches, args.batch_size, seed=args.seed + 1,
                      truncation=args.truncation)
  images, labels, z = generate(generator, args.num_samples, classes, args.truncation, args.seed,
                               args.batch_size)
  written = write_samples(args.out, images, labels, z)
  logging.info("%d samples of %s (%s) written to %s", len(images), path, key, args.out)
  return written


def main(args):
  logging.set_verbosity(logging.INFO)
  try:
    written = sample(args)
  except ValueError as e:  # our errors say what to do: one line (hamgan.cli.errors)
    return TOOL.report(e, errors.traceback_wanted())
  print(f"wrote {len(written)} file(s) under {args.out}")
  return 0


TOOL = errors.Tool("hamgan-sample", main, parse_flags)
run = TOOL.run  # the console entry point: every error becomes one line


if __name__ == "__main__":
  run()
