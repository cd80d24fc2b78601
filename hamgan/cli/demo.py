"""hamgan demo: train a small Hamburger GAN on the offline digits and show the result.

    make demo                                   # what a fresh user runs
    python -m hamgan.cli.demo --model_dir=runs/demo_digits [--gin_param="train.num_steps=500"]

No download: the data set is scikit-learn's 8x8 digits (prepared into tfds by
hamgan.data), and the classifier that stands in for Inception is a small CNN
trained here on the real digits. The steps:

  1. train gin_configs/demo_digits.gin (NMF Hamburger in G and D) into --model_dir,
     resuming if the directory already holds a checkpoint;
  2. train (once) the digits classifier into MODEL_DIR/digits_classifier;
  3. draw 100 samples per class from the EMA generator and report how many the
     classifier puts in the requested class (the conditional accuracy);
  4. run hamgan-eval on the last checkpoint: the Frechet distance in the digits
     classifier's feature space and the inception score, as results.jsonl rows;
  5. write MODEL_DIR/demo_grid.png (one row per digit class) and
     MODEL_DIR/demo_result.json, and print where everything is.
"""
import json
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging

from hamgan.cli import train as train_cli  # defines --model_dir, --gin_param, --tpu

FLAGS = flags.FLAGS
DEFAULT_MODEL_DIR = "runs/demo_digits"
flags.DEFINE_integer("per_class", 100, "samples per class for the conditional accuracy")
flags.DEFINE_integer("eval_samples", 2000, "generated samples for the Frechet distance")
flags.DEFINE_float("min_accuracy", 0.8, "the accuracy the demo is expected to reach; "
                   "below it the demo says so and exits with status 1")

DEMO_CONFIG = "demo_digits"


def _banner(text):
  print(f"\n=== {text}", flush=True)


def run_demo(model_dir, gin_params=(), per_class=100, eval_samples=2000):
  """Runs the whole demo; returns the result dict (also written to demo_result.json)."""
  # pylint: disable=import-outside-toplevel
  from hamgan.cli import eval as eval_cli
  from hamgan.evaluation import digits_classifier
  from hamgan.evaluation import images as images_lib
  start = time.time()

  _banner(f"1/4 training {DEMO_CONFIG} into {model_dir}")
  trainer = train_cli.build_trainer([DEMO_CONFIG], list(gin_params), model_dir)
  trainer.train()
  train_s = time.time() - start
  step = int(trainer.step.numpy())

  _banner("2/4 the digits classifier (stands in for Inception; no download)")
  classifier_dir = os.path.join(model_dir, "digits_classifier")
  if not os.path.isdir(classifier_dir):
    digits_classifier.train_and_save(classifier_dir)
  classifier_meta = os.path.join(classifier_dir, digits_classifier.METADATA)
  with open(classifier_meta) as f:
    real_accuracy = json.load(f).get("test_accuracy")

  _banner(f"3/4 conditional accuracy: {per_class} EMA samples per class")
  accuracy = digits_classifier.conditional_accuracy(
      trainer.ema_generator, classifier_dir, per_class)
  grid = images_lib.sample_grid(trainer.ema_generator, trainer.num_classes, trainer.z_dim,
                                per_class=10)
  grid_path = os.path.join(model_dir, "demo_grid.png")
  images_lib.write_png(grid_path, grid)

  _banner(f"4/4 hamgan-eval on step {step}: {eval_samples} samples vs the digits test split")
  fv = eval_cli.parse_flags([
      "hamgan-eval", f"--model_dir={model_dir}", f"--num_samples={eval_samples}",
      f"--classifier_path={classifier_dir}", "--real_dataset=digits", "--force"])
  rows = eval_cli.evaluate(fv, strategy=trainer.strategy)
  metrics = rows[0]["metrics"] if rows else {}

  result = {
      "step": step, "train_seconds": round(train_s, 1),
      "total_seconds": round(time.time() - start, 1),
      "conditional_accuracy": accuracy, "classifier_test_accuracy": real_accuracy,
      "metrics": metrics, "grid": grid_path,
  }
  with open(os.path.join(model_dir, "demo_result.json"), "w") as f:
    json.dump(result, f, indent=2)
  return result


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  if FLAGS.gin_file:
    raise app.UsageError("the demo always trains gin_configs/demo_digits.gin; change it "
                         "with --gin_param, or use hamgan-train for other experiments.")
  model_dir = FLAGS.model_dir or DEFAULT_MODEL_DIR
  try:
    result = run_demo(model_dir, FLAGS.gin_param, FLAGS.per_class, FLAGS.eval_samples)
  except Exception as e:  # pylint: disable=broad-except
    if type(e).__name__ != "SetupError" and not isinstance(e, ValueError):
      raise
    print(f"hamgan demo: error: {e}", file=sys.stderr)
    sys.exit(2)
  _banner("result")
  for name, value in sorted(result["metrics"].items()):
    print(f"  {name:45s} {value:.4f}")
  print(f"  {'conditional accuracy (samples of class c classified c)':45s} "
        f"{result['conditional_accuracy']:.3f}")
  print(f"  {'digits classifier accuracy on real test digits':45s} "
        f"{result['classifier_test_accuracy']:.3f}")
  print(f"\n  trained {result['step']} steps in {result['train_seconds']:.0f} s "
        f"(demo total {result['total_seconds']:.0f} s)")
  print(f"  sample grid (one row per digit 0-9): {result['grid']}")
  print(f"  checkpoints:      {os.path.join(model_dir, 'checkpoints')}")
  print(f"  TensorBoard logs: tensorboard --logdir {os.path.join(model_dir, 'summaries')}")
  print(f"  training grids:   {os.path.join(model_dir, 'samples')}")
  print(f"  eval results:     {os.path.join(model_dir, 'eval', 'results.jsonl')}")
  print(f"  demo summary:     {os.path.join(model_dir, 'demo_result.json')}")
  if result["conditional_accuracy"] < FLAGS.min_accuracy:
    print(f"\nhamgan demo: the conditional accuracy {result['conditional_accuracy']:.3f} is "
          f"below the expected {FLAGS.min_accuracy}; train longer "
          "(--gin_param='train.num_steps = ...') or report it.", file=sys.stderr)
    sys.exit(1)


def run():
  from hamgan.cli import run_with_help  # pylint: disable=import-outside-toplevel
  run_with_help(main, __doc__, ("model_dir", "gin_param", "per_class", "eval_samples",
                                "min_accuracy"))


if __name__ == "__main__":
  run()
