"""hamgan-bench eval: the evaluator's overhead over bare G + classifier; k-NN metrics' time.

A second row times precision/recall/density/coverage on N x N random 2048-d features
(--manifold_n, default 10k; target at most 60 s on a CPU, 50k x 50k on a GPU).

Times N samples through the whole streaming pipeline (host z and labels, tf.data,
strategy.run, gather, copy of pool_3 and logits to preallocated host arrays) against
the bare cost of the same work in the same process: one tf.function with G and the
classifier, called N / B times on a fixed batch, outputs left on the device. Both are
warmed up first (tracing is not timed) and repeated, interleaved; the overhead is
the ratio of the fastest runs (on a shared machine the minimum is the stable
estimate: other load only ever adds time), with the medians' ratio beside it.
Target: at most 10% overhead.

Offline by default: the classifier is a stand-in CNN saved and loaded as a SavedModel
with Inception's output sizes (pool_3 2048, logits 1008), so the host copies are as
large as Inception's; pass --classifier_path for the real module (and --classifier_size
is then ignored). On a CPU keep the models small; on a GPU try --image_size=128
--ch=64 --classifier_path=/path/to/inception.
"""
import argparse
import os
import statistics
import tempfile
import time

import tensorflow as tf

from hamgan.bench import add_output_flags
from hamgan.bench import write_results


def _standin_classifier(size, path):
  """A random conv net saved as a SavedModel: (B,size,size,3) -> pool_3 2048, logits 1008."""

  class Standin(tf.Module):

    def __init__(self):
      super().__init__()
      inputs = tf.keras.Input((size, size, 3))
      h = tf.keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(inputs)
      h = tf.keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(h)
      h = tf.keras.layers.Conv2D(2048, 1, activation="relu")(h)
      pool = tf.keras.layers.GlobalAveragePooling2D()(h)
      logits = tf.keras.layers.Dense(1008)(pool)
      self.model = tf.keras.Model(inputs, [pool, logits])
      self.image_size = tf.Variable(size, trainable=False)

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
    def __call__(self, images):
      pool, logits = self.model(images, training=False)
      return {"pool_3": pool[:, None, None, :], "logits": logits}

  tf.saved_model.save(Standin(), path)
  return path


def _timed(fn):
  """(wall seconds, CPU seconds of this process, all threads)."""
  start, cpu = time.perf_counter(), time.process_time()
  fn()
  return time.perf_counter() - start, time.process_time() - cpu


def measure(num_samples=1000, batch_size=100, image_size=32, ch=16, context="none",
            classifier_path=None, classifier_size=64, repeats=5, num_classes=10):
  """Returns a dict of timings (seconds) and images per second for both paths."""
  from hamgan.evaluation import classifier as classifier_lib  # pylint: disable=g-import-not-at-top
  from hamgan.evaluation import features  # pylint: disable=g-import-not-at-top
  from hamgan.evaluation import restore  # pylint: disable=g-import-not-at-top
  from hamgan.models import Generator  # pylint: disable=g-import-not-at-top

  if num_samples % batch_size:
    raise ValueError(f"num_samples={num_samples} is not a multiple of batch_size="
                     f"{batch_size}; pass multiples so both paths do the same batches.")
  strategy = tf.distribute.get_strategy()
  generator = Generator(image_size=image_size, num_classes=num_classes, ch=ch, z_dim=128,
                        context=context)
  restore.build_generator(generator)
  tmp = None
  if classifier_path is None:
    tmp = tempfile.mkdtemp(prefix="hamgan_bench_clf_")
    classifier_path = _standin_classifier(classifier_size, os.path.join(tmp, "standin"))
  clf = classifier_lib.load_classifier(classifier_path)

  z, y = features.latent_inputs(batch_size, num_classes, 128, seed=0)
  z, y = tf.constant(z), tf.constant(y)

  @tf.function
  def bare_step(z, y):
    out = clf(generator((z, y), training=False))
    return out["pool_3"], out["logits"]

  def bare():
    for _ in range(num_samples // batch_size):
      pool, _ = bare_step(z, y)
    pool.numpy()  # wait for the device once, at the end

  def pipeline():
    features.generated_features(generator, clf, num_samples, num_classes, 128,
                                batch_size=batch_size, strategy=strategy,
                                progress_every_s=1e9, write=lambda _: None)

  bare_step(z, y)[0].numpy()  # trace
  features.generated_features(generator, clf, batch_size, num_classes, 128,
                              batch_size=batch_size, write=lambda _: None)
  # Interleave the repeats so that drifting machine load hits both paths alike.
  bare_runs, pipe_runs = [], []
  for _ in range(repeats):
    bare_runs.append(_timed(bare))
    pipe_runs.append(_timed(pipeline))
  result = dict(
      device=(tf.config.list_physical_devices("GPU") or ["CPU"])[0],
      num_samples=num_samples, batch_size=batch_size, image_size=image_size, ch=ch,
      classifier=classifier_path if tmp is None else f"stand-in CNN at {classifier_size}px")
  result.update(_summary(bare_runs, pipe_runs))
  return result


def _summary(bare_runs, pipe_runs):
  """Best and median times of both paths, their CPU times, and the pipeline's overhead."""
  bare_times, pipe_times = [w for w, _ in bare_runs], [w for w, _ in pipe_runs]
  bare_cpu, pipe_cpu = [c for _, c in bare_runs], [c for _, c in pipe_runs]
  result = dict(
      bare_s=min(bare_times), pipeline_s=min(pipe_times),
      bare_median_s=statistics.median(bare_times),
      pipeline_median_s=statistics.median(pipe_times),
      bare_all=bare_times, pipeline_all=pipe_times,
      bare_cpu_s=min(bare_cpu), pipeline_cpu_s=min(pipe_cpu))
  result["overhead"] = result["pipeline_s"] / result["bare_s"] - 1.0
  result["overhead_median"] = result["pipeline_median_s"] / result["bare_median_s"] - 1.0
  result["overhead_cpu"] = result["pipeline_cpu_s"] / result["bare_cpu_s"] - 1.0
  return result


def format_table(r):
  """A markdown table of the two paths and the overhead."""
  n = r["num_samples"]
  lines = [
      f"eval overhead: {n} samples, batch {r['batch_size']}, G {r['image_size']}px "
      f"ch={r['ch']}, classifier {r['classifier']}, device {r['device']}",
      "",
      "| path | best wall s | img/s (best) | median wall s | best CPU s | all runs, wall s |",
      "|---|---|---|---|---|---|",
      f"| bare G + classifier (one tf.function, no host copies) | {r['bare_s']:.3f} | "
      f"{n / r['bare_s']:.1f} | {r['bare_median_s']:.3f} | {r['bare_cpu_s']:.3f} | "
      f"{', '.join(f'{t:.3f}' for t in r['bare_all'])} |",
      f"| hamgan pipeline (generated_features) | {r['pipeline_s']:.3f} | "
      f"{n / r['pipeline_s']:.1f} | {r['pipeline_median_s']:.3f} | "
      f"{r['pipeline_cpu_s']:.3f} | {', '.join(f'{t:.3f}' for t in r['pipeline_all'])} |",
      "",
      f"overhead (target <= +10%): wall {100 * r['overhead']:+.1f}% best-to-best, "
      f"{100 * r['overhead_median']:+.1f}% median-to-median; process CPU time "
      f"{100 * r['overhead_cpu']:+.1f}% (the steadiest on a shared CPU)",
  ]
  return "\n".join(lines)


def measure_manifold(num_real=10000, num_fake=10000, dim=2048, repeats=1, seed=0):
  """Seconds of precision/recall/density/coverage on random (N, dim) float32 features.

  The features are Inception-like (non-negative, ReLU'd Gaussians); the time covers the
  whole blocked computation (both sets' k-NN radii and the cross pass).
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  from hamgan.evaluation import manifold  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  real = np.maximum(rng.standard_normal((num_real, dim), np.float32), 0)
  fake = np.maximum(rng.standard_normal((num_fake, dim), np.float32), 0)  # same law
  manifold.manifold_metrics(real[:500], fake[:500])  # trace the block functions
  times, values = [], None
  for _ in range(repeats):
    start = time.perf_counter()
    values = manifold.manifold_metrics(real, fake)
    times.append(time.perf_counter() - start)
  return dict(num_real=num_real, num_fake=num_fake, dim=dim, seconds=min(times),
              all_seconds=times, values=values,
              device=str((tf.config.list_physical_devices("GPU") or ["CPU"])[0]))


def format_manifold_table(r):
  v = r["values"]
  return "\n".join([
      f"precision/recall (k=3) + density/coverage (k=5), {r['num_real']} real vs "
      f"{r['num_fake']} generated {r['dim']}-d features, device {r['device']}",
      "",
      "| features | best wall s | all runs, s | target | values (random features) |",
      "|---|---|---|---|---|",
      f"| {r['num_real']} x {r['num_fake']} x {r['dim']} | {r['seconds']:.1f} | "
      f"{', '.join(f'{t:.1f}' for t in r['all_seconds'])} | <= 60 s at 10k x 10k on a "
      f"CPU | P {v['precision']:.3f}, R {v['recall']:.3f}, D {v['density']:.3f}, "
      f"C {v['coverage']:.3f} |"])


def main(argv=None):
  parser = argparse.ArgumentParser(prog="hamgan-bench eval", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--num_samples", type=int, default=2000)
  parser.add_argument("--batch_size", type=int, default=100)
  parser.add_argument("--image_size", type=int, default=32, choices=(32, 64, 128))
  parser.add_argument("--ch", type=int, default=16)
  parser.add_argument("--context", default="none")
  parser.add_argument("--classifier_path", default=None)
  parser.add_argument("--classifier_size", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--manifold_n", type=int, default=10000,
                      help="real and generated feature count of the precision/recall/"
                      "density/coverage row (0 skips it)")
  parser.add_argument("--manifold_dim", type=int, default=2048)
  parser.add_argument("--manifold_repeats", type=int, default=1)
  parser.add_argument("--skip_overhead", action="store_true",
                      help="only the precision/recall/density/coverage row")
  add_output_flags(parser, "eval")
  args = parser.parse_args(argv)
  tables, rows = [], []
  if not args.skip_overhead:
    result = measure(args.num_samples, args.batch_size, args.image_size, args.ch,
                     args.context, args.classifier_path, args.classifier_size, args.repeats)
    tables.append(format_table(result))
    print(tables[-1])
    rows.append(dict(result, device=str(result["device"]), wall_time=time.time()))
  if args.manifold_n:
    print(f"precision/recall/density/coverage on {args.manifold_n} x {args.manifold_n} "
          f"{args.manifold_dim}-d features ...", flush=True)
    result = measure_manifold(args.manifold_n, args.manifold_n, args.manifold_dim,
                              args.manifold_repeats)
    tables.append(format_manifold_table(result))
    print(tables[-1])
    rows.append(dict(result, what="manifold", wall_time=time.time()))
  table = "\n\n".join(tables)
  print(write_results(rows, args.out, table, args.markdown))
  return table


if __name__ == "__main__":
  main()
