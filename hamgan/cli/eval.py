"""hamgan-eval: FID / IS (optionally KID, precision/recall, density/coverage, intra-FID).

  hamgan-eval --model_dir=runs/x                       # the latest checkpoint
  hamgan-eval --model_dir=runs/x --checkpoint=20000    # a step, ckpt-N name or path
  hamgan-eval --model_dir=runs/x --all --manifold      # every checkpoint, + P/R/D/C
  hamgan-eval --model_dir=runs/x --watch               # follow training to TRAINING_DONE
  hamgan-eval --images=samples.npz --real_dataset=cifar10 --real_split=test
  hamgan-eval --images=dir_of_pngs/ --real_images=real.npz --export_stats=real_stats.npz
  hamgan-eval --images=samples.npz --real_stats=real_stats.npz   # FID only

Results go to model_dir/eval/results.jsonl (a new row whenever a setting that changes a
number differs or the checkpoint's files changed; a repeat is skipped unless --force,
which replaces it) and model_dir/eval/samples_step_N.png. The real data set defaults to
the one the run trained on (train.dataset in operative_config.gin) and its evaluation
split. The EMA generator is evaluated with its stored BN statistics, the raw one with
standing statistics (BN moving statistics recomputed over --standing_batches batches;
the checkpoint is not changed); docs/evaluation.md says why.

With --images (a folder of PNG/JPEG files or an .npz with `images`, optional `labels`)
the row goes to --out (default <images>.eval.json); --export_stats writes the real
side's mu/sigma as .npz (the original FID code's layout).

Flags live in a FlagValues of this module (not absl's global FLAGS), so this tool can
be imported beside the other hamgan tools in one process (tests, the demo).
"""
import json
import sys

from absl import flags
from absl import logging

from hamgan import cli
from hamgan.cli import errors


def define_flags(args):
  """Defines hamgan-eval's flags on the FlagValues `args`."""
  flags.DEFINE_string("model_dir", None, "Run directory written by hamgan-train.",
                      flag_values=args)
  flags.DEFINE_string("checkpoint", None,
                      "Checkpoint to evaluate: a path, a ckpt-N name or a step. "
                      "Default: the latest.", flag_values=args)
  flags.DEFINE_boolean("all", False, "Evaluate every checkpoint.", flag_values=args)
  flags.DEFINE_list("steps", None, "With --all: only these steps, e.g. 1200,2400,3600 "
                    "(each must have a milestone or checkpoint).", flag_values=args)
  flags.DEFINE_boolean("watch", False,
                       "Evaluate each new checkpoint as training writes it; stop "
                       "once TRAINING_DONE exists and all are evaluated.", flag_values=args)
  flags.DEFINE_float("poll_s", 30.0, "--watch: seconds between looks.", flag_values=args)
  flags.DEFINE_float("watch_timeout_s", None,
                     "--watch: give up after this many seconds (default: never).",
                     flag_values=args)
  flags.DEFINE_integer("num_samples", 50000, "Generated samples per evaluation.",
                       flag_values=args)
  flags.DEFINE_integer("real_num_samples", None,
                       "Real images for the statistics (default: --num_samples; "
                       "fewer if the split is smaller).", flag_values=args)
  flags.DEFINE_integer("batch_size", 200, "Global batch for generation and the "
                       "classifier.", flag_values=args)
  flags.DEFINE_string("real_dataset", None,
                      "hamgan.data data set of the real statistics. Default: the "
                      "run's train.dataset, else imagenet2012.", flag_values=args)
  flags.DEFINE_string("real_split", None,
                      "Split of the real statistics. Default: the data set's "
                      "evaluation split (validation / test).", flag_values=args)
  flags.DEFINE_string("data_dir", None, "tfds data_dir. Default: the run's "
                      "train.data_dir, else tfds's default.", flag_values=args)
  flags.DEFINE_string("classifier_path", None,
                      "Local classifier: an extracted TF-Hub module or a SavedModel "
                      "returning {'logits', 'pool_3'}. Default: TF-GAN's Inception "
                      "from TF-Hub (needs internet or TFHUB_CACHE_DIR).", flag_values=args)
  flags.DEFINE_boolean("use_ema", None,
                       "Evaluate the EMA generator (true) or the raw one (false). "
                       "Default: the EMA one when the checkpoint has it.", flag_values=args)
  flags.DEFINE_boolean("kid", False, "Also compute KID.", flag_values=args)
  flags.DEFINE_boolean("manifold", False,
                       "Also compute improved precision/recall (k=3) and density/"
                       "coverage (k=5) on the same features.", flag_values=args)
  flags.DEFINE_boolean("intra_fid", False,
                       "Also compute intra-class FID (mean over classes; per-class "
                       "values in the row).", flag_values=args)
  flags.DEFINE_boolean("conditional_accuracy", False,
                       "Also compute the conditional accuracy: the fraction of samples "
                       "drawn for class c that the classifier puts in class c. Needs a "
                       "classifier whose outputs are G's classes (e.g. the digits one).",
                       flag_values=args)
  flags.DEFINE_float("truncation", None, "Truncation threshold of z (default: none).",
                     flag_values=args)
  flags.DEFINE_integer("standing_batches", None,
                       "Batches of fresh z/labels for BN standing statistics; 0 keeps "
                       "the stored ones. Default: 0 for the EMA generator, 16 for the "
                       "raw one (docs/evaluation.md).", flag_values=args)
  flags.DEFINE_string("images", None, "Score these images instead of a run: a folder of "
                      "PNG/JPEG files or an .npz (`images` uint8 HWC or float in "
                      "[-1, 1], optional `labels`).", flag_values=args)
  flags.DEFINE_string("real_images", None, "--images mode: real images (folder or .npz) "
                      "as the real side.", flag_values=args)
  flags.DEFINE_string("real_stats", None, "--images mode: real statistics (.npz with mu "
                      "and sigma) as the real side; FID only.", flag_values=args)
  flags.DEFINE_string("export_stats", None, "Write the real side's statistics (mu, sigma, "
                      "key) to this .npz.", flag_values=args)
  flags.DEFINE_integer("real_resolution", None, "--export_stats of a --real_dataset "
                       "without --images: the size to read the real images at.",
                       flag_values=args)
  flags.DEFINE_string("out", None, "--images mode: the JSON row's file (default "
                      "<images>.eval.json).", flag_values=args)
  flags.DEFINE_boolean("force", False, "Re-evaluate and replace existing rows.",
                       flag_values=args)
  flags.DEFINE_integer("seed", 0, "Seed of z and the labels.", flag_values=args)
  flags.DEFINE_string("cache_dir", None, "Real-statistics cache. Default: "
                      "$HAMGAN_CACHE_DIR/real_stats or ~/.cache/hamgan/real_stats.",
                      flag_values=args)
  flags.DEFINE_string("tpu", None, "TPU name or address (evaluation on a TPU).",
                      flag_values=args)
  flags.DEFINE_float("progress_every_s", 10.0, "Seconds between progress lines.",
                     flag_values=args)
  cli.bound_flags(args, minimums={"num_samples": cli.MIN_SCORED_SAMPLES, "real_num_samples": 1,
                                "batch_size": 1,
                                "standing_batches": 0, "real_resolution": 1},
                  positive=("poll_s", "watch_timeout_s", "progress_every_s"),
                  truncation="truncation")


def parse_flags(argv):
  """Parses argv (program name first) into a fresh FlagValues; prints help on --help."""
  return cli.parse_own_flags(argv, define_flags, __doc__)


def settings_from_flags(args):
  """EvalSettings; the real data set, split and data_dir default to the run's."""
  from hamgan.evaluation import evaluator  # pylint: disable=g-import-not-at-top
  if not args.model_dir:
    raise ValueError("pass --model_dir=RUN_DIR (a hamgan-train run), or --images=PATH "
                     "(or --export_stats=FILE) to score images without a run.")
  for name in ("real_images", "real_stats", "export_stats", "out", "real_resolution"):
    if args[name].present:
      raise ValueError(f"--{name} belongs to --images / --export_stats mode; with "
                       "--model_dir use --real_dataset/--real_split.")
  if sum(bool(x) for x in (args.checkpoint, args.all, args.watch)) > 1:
    raise ValueError(
        f"--checkpoint={args.checkpoint!r}, --all={args.all} and --watch={args.watch} exclude "
        "each other; pass at most one of them.")
  return evaluator.EvalSettings(
      num_samples=args.num_samples, batch_size=args.batch_size, real_dataset=args.real_dataset,
      real_split=args.real_split, real_num_samples=args.real_num_samples,
      data_dir=args.data_dir, classifier_path=args.classifier_path, use_ema=args.use_ema,
      kid=args.kid, manifold=args.manifold, intra_fid=args.intra_fid,
      conditional_accuracy=args.conditional_accuracy, truncation=args.truncation,
      standing_batches=args.standing_batches, seed=args.seed, cache_dir=args.cache_dir,
      force=args.force,
      progress_every_s=args.progress_every_s)


def image_settings_from_flags(args):
  """ImageEvalSettings of --images / --export_stats mode."""
  from hamgan.evaluation import image_eval  # pylint: disable=g-import-not-at-top
  for name in ("model_dir", "checkpoint", "all", "watch", "use_ema", "truncation",
               "standing_batches", "force"):
    if args[name].present:
      raise ValueError(f"--{name} belongs to evaluating a run (--model_dir), not to "
                       "--images / --export_stats, which score images that exist "
                       "already; drop one of them.")
  return image_eval.ImageEvalSettings(
      images=args.images, real_dataset=args.real_dataset, real_split=args.real_split,
      real_images=args.real_images, real_stats=args.real_stats,
      num_samples=args.num_samples if args["num_samples"].present else None,  # else: all
      real_num_samples=args.real_num_samples, data_dir=args.data_dir,
      classifier_path=args.classifier_path, batch_size=args.batch_size, kid=args.kid,
      manifold=args.manifold, intra_fid=args.intra_fid,
      conditional_accuracy=args.conditional_accuracy, cache_dir=args.cache_dir, out=args.out,
      export_stats=args.export_stats, progress_every_s=args.progress_every_s)


def evaluate(args, strategy=None, write=None):
  """Runs what the flags ask for; returns the new result rows."""
  if args.images or args.export_stats:
    from hamgan.evaluation import image_eval  # pylint: disable=g-import-not-at-top
    row = image_eval.evaluate_images(image_settings_from_flags(args), strategy=strategy,
                                     write=write, real_resolution=args.real_resolution)
    if args.export_stats:
      print(f"hamgan-eval: real statistics written to {args.export_stats}")
    return [row] if row is not None else []
  from hamgan.evaluation import evaluator  # pylint: disable=g-import-not-at-top
  from hamgan import checkpoints  # pylint: disable=g-import-not-at-top
  settings = settings_from_flags(args)
  if strategy is None:
    from hamgan.training import strategy as strategy_lib  # pylint: disable=g-import-not-at-top
    strategy = strategy_lib.resolve_strategy(args.tpu)
  ev = evaluator.Evaluator(args.model_dir, settings, strategy=strategy, write=write)
  if args.watch:
    return ev.watch(poll_s=args.poll_s, timeout_s=args.watch_timeout_s)
  if args.all:
    return ev.evaluate_all(steps=parse_steps(args.steps))
  if args.steps:
    raise ValueError(f"--steps={','.join(args.steps)} selects among --all's checkpoints; "
                     "add --all, or pass one step as --checkpoint=N.")
  ev.checkpoints()  # a clear error when there is none
  row = ev.evaluate(checkpoints.find_checkpoint(args.model_dir, args.checkpoint))
  return [row] if row is not None else []  # same steps as evaluator.evaluate_checkpoint


def parse_steps(values):
  """--steps as a sorted list of ints (None: every step)."""
  if not values:
    return None
  try:
    steps = sorted({int(v) for v in values})
  except ValueError:
    raise ValueError(f"--steps={','.join(values)}: expected whole numbers, e.g. "
                     "--steps=1200,2400,3600.") from None
  if steps[0] < 0:
    raise ValueError(f"--steps={','.join(values)}: steps are >= 0.")
  return steps


def main(args):
  logging.set_verbosity(logging.INFO)
  try:
    rows = evaluate(args)
  except ValueError as e:  # our errors say what to do: one line (hamgan.cli.errors)
    return TOOL.report(e, errors.traceback_wanted())
  for row in rows:
    where = ({"images": row["images"], "out": row["out"]} if "images" in row else
             {"step": row["step"], "generator": row["generator"]})
    print(json.dumps({**where, "protocol": row["protocol"], **row["metrics"]},
                     sort_keys=True))
  if not rows and not args.export_stats:
    print("hamgan-eval: nothing new to evaluate (use --force to redo).", file=sys.stderr)
  return 0


TOOL = errors.Tool("hamgan-eval", main, parse_flags)
run = TOOL.run  # the console entry point: every error becomes one line


if __name__ == "__main__":
  run()
