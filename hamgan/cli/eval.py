"""hamgan-eval: FID / IS (and optionally KID) of a run's checkpoints.

  hamgan-eval --model_dir=runs/x                       # the latest checkpoint
  hamgan-eval --model_dir=runs/x --checkpoint=20000    # a step, ckpt-N name or path
  hamgan-eval --model_dir=runs/x --all                 # every checkpoint
  hamgan-eval --model_dir=runs/x --watch               # follow training to TRAINING_DONE

Results go to model_dir/eval/results.jsonl (one row per step, protocol, classifier
and generator variant; a repeat is skipped unless --force, which replaces it) and
model_dir/eval/samples_step_N.png. The real data set defaults to the one the run
trained on (train.dataset in operative_config.gin) and its evaluation split.

Flags live in a FlagValues of this module (not absl's global FLAGS), so this tool can
be imported beside the other hamgan tools in one process (tests, the demo).
"""
import json
import sys

from absl import flags
from absl import logging

from hamgan import cli


def define_flags(fv):
  """Defines hamgan-eval's flags on the FlagValues `fv`."""
  flags.DEFINE_string("model_dir", None, "Run directory written by hamgan-train.",
                      flag_values=fv)
  flags.DEFINE_string("checkpoint", None,
                      "Checkpoint to evaluate: a path, a ckpt-N name or a step. "
                      "Default: the latest.", flag_values=fv)
  flags.DEFINE_boolean("all", False, "Evaluate every checkpoint.", flag_values=fv)
  flags.DEFINE_boolean("watch", False,
                       "Evaluate each new checkpoint as training writes it; stop "
                       "once TRAINING_DONE exists and all are evaluated.", flag_values=fv)
  flags.DEFINE_float("poll_s", 30.0, "--watch: seconds between looks.", flag_values=fv)
  flags.DEFINE_float("watch_timeout_s", None,
                     "--watch: give up after this many seconds (default: never).",
                     flag_values=fv)
  flags.DEFINE_integer("num_samples", 50000, "Generated samples per evaluation.",
                       flag_values=fv)
  flags.DEFINE_integer("real_num_samples", None,
                       "Real images for the statistics (default: --num_samples; "
                       "fewer if the split is smaller).", flag_values=fv)
  flags.DEFINE_integer("batch_size", 200, "Global batch for generation and the "
                       "classifier.", flag_values=fv)
  flags.DEFINE_string("real_dataset", None,
                      "hamgan.data data set of the real statistics. Default: the "
                      "run's train.dataset, else imagenet2012.", flag_values=fv)
  flags.DEFINE_string("real_split", None,
                      "Split of the real statistics. Default: the data set's "
                      "evaluation split (validation / test).", flag_values=fv)
  flags.DEFINE_string("data_dir", None, "tfds data_dir. Default: the run's "
                      "train.data_dir, else tfds's default.", flag_values=fv)
  flags.DEFINE_string("classifier_path", None,
                      "Local classifier: an extracted TF-Hub module or a SavedModel "
                      "returning {'logits', 'pool_3'}. Default: TF-GAN's Inception "
                      "from TF-Hub (needs internet or TFHUB_CACHE_DIR).", flag_values=fv)
  flags.DEFINE_boolean("use_ema", None,
                       "Evaluate the EMA generator (true) or the raw one (false). "
                       "Default: the EMA one when the checkpoint has it.", flag_values=fv)
  flags.DEFINE_boolean("kid", False, "Also compute KID.", flag_values=fv)
  flags.DEFINE_boolean("force", False, "Re-evaluate and replace existing rows.",
                       flag_values=fv)
  flags.DEFINE_integer("seed", 0, "Seed of z and the labels.", flag_values=fv)
  flags.DEFINE_string("cache_dir", None, "Real-statistics cache. Default: "
                      "$HAMGAN_CACHE_DIR/real_stats or ~/.cache/hamgan/real_stats.",
                      flag_values=fv)
  flags.DEFINE_string("tpu", None, "TPU name or address (evaluation on a TPU).",
                      flag_values=fv)
  flags.DEFINE_float("progress_every_s", 10.0, "Seconds between progress lines.",
                     flag_values=fv)
  flags.mark_flag_as_required("model_dir", flag_values=fv)


def parse_flags(argv):
  """Parses argv (program name first) into a fresh FlagValues; prints help on --help."""
  return cli.parse_own_flags(argv, define_flags, __doc__)


def settings_from_flags(fv):
  """EvalSettings; the real data set, split and data_dir default to the run's."""
  from hamgan.evaluation import evaluator  # pylint: disable=g-import-not-at-top
  if sum(bool(x) for x in (fv.checkpoint, fv.all, fv.watch)) > 1:
    raise ValueError(
        f"--checkpoint={fv.checkpoint!r}, --all={fv.all} and --watch={fv.watch} exclude "
        "each other; pass at most one of them.")
  return evaluator.EvalSettings(
      num_samples=fv.num_samples, batch_size=fv.batch_size, real_dataset=fv.real_dataset,
      real_split=fv.real_split, real_num_samples=fv.real_num_samples,
      data_dir=fv.data_dir, classifier_path=fv.classifier_path, use_ema=fv.use_ema,
      kid=fv.kid, seed=fv.seed, cache_dir=fv.cache_dir, force=fv.force,
      progress_every_s=fv.progress_every_s)


def evaluate(fv, strategy=None, write=None):
  """Runs what the flags ask for; returns the new result rows."""
  from hamgan.evaluation import evaluator  # pylint: disable=g-import-not-at-top
  from hamgan import checkpoints  # pylint: disable=g-import-not-at-top
  settings = settings_from_flags(fv)
  if strategy is None:
    from hamgan.training import strategy as strategy_lib  # pylint: disable=g-import-not-at-top
    strategy = strategy_lib.resolve_strategy(fv.tpu)
  ev = evaluator.Evaluator(fv.model_dir, settings, strategy=strategy, write=write)
  if fv.watch:
    return ev.watch(poll_s=fv.poll_s, timeout_s=fv.watch_timeout_s)
  if fv.all:
    return ev.evaluate_all()
  ev.checkpoints()  # a clear error when there is none
  row = ev.evaluate(checkpoints.find_checkpoint(fv.model_dir, fv.checkpoint))
  return [row] if row is not None else []  # same steps as evaluator.evaluate_checkpoint


def main(fv):
  logging.set_verbosity(logging.INFO)
  try:
    rows = evaluate(fv)
  except ValueError as e:  # our errors say what to do: no traceback needed
    logging.error("%s", e)
    print(f"hamgan-eval: error: {e}", file=sys.stderr)
    return 1
  for row in rows:
    print(json.dumps({"step": row["step"], "generator": row["generator"],
                      "protocol": row["protocol"], **row["metrics"]}, sort_keys=True))
  if not rows:
    print("hamgan-eval: nothing new to evaluate (use --force to redo).", file=sys.stderr)
  return 0


def run():
  cli.run_with_own_flags(main, parse_flags)


if __name__ == "__main__":
  run()
