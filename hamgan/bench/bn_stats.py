"""hamgan-bench bn-stats: which batch-norm statistics of G make its FID, layer by layer.

For one checkpoint of a run (default its last), the generator (EMA by default) is
scored with its stored moving statistics and with standing statistics (recomputed for
its weights, as hamgan-eval does), then with one layer at a time taken from the other
set, then with the standing variances scaled. Per layer it prints how far the two sets
are apart (median variance ratio, median mean shift in stored standard deviations).
FID, precision and recall use the evaluator's own functions on the same z and labels
for every row, so the rows differ only in the statistics.

    hamgan-bench bn-stats --model_dir=runs/contexts/context-none__seed-0 \\
        --classifier_path=DIR --real_dataset=mnist5k --num_samples=2000
"""
import argparse
import time

import numpy as np

from hamgan.bench import add_output_flags
from hamgan.bench import write_results


def layer_distances(stored, standing):
  """Per layer: (median of standing/stored variance, median |mean shift| / stored std)."""
  out = []
  for (m0, v0), (m1, v1) in zip(stored, standing):
    out.append((float(np.median(v1 / v0)), float(np.median(np.abs(m1 - m0) / np.sqrt(v0)))))
  return out


def swap_plan(num_layers, scales=(0.9, 1.1, 1.2)):
  """[(row name, per-layer source 'stored'/'standing', variance scale)] to score."""
  plan = [("all stored", ["stored"] * num_layers, 1.0),
          ("all standing", ["standing"] * num_layers, 1.0)]
  for i in range(num_layers):
    plan.append((f"standing, layer {i} stored",
                 ["stored" if j == i else "standing" for j in range(num_layers)], 1.0))
    plan.append((f"stored, layer {i} standing",
                 ["standing" if j == i else "stored" for j in range(num_layers)], 1.0))
  for s in scales:
    plan.append((f"standing, variances x{s}", ["standing"] * num_layers, s))
  return plan


def measure(args, write=print):
  """Rows of the plan for the checkpoint asked for; prints each as it is scored."""
  from hamgan.evaluation import evaluator
  from hamgan.evaluation import restore
  settings = evaluator.EvalSettings(
      num_samples=args.num_samples, batch_size=args.batch_size,
      real_dataset=args.real_dataset, classifier_path=args.classifier_path,
      data_dir=args.data_dir, cache_dir=args.cache_dir, manifold=True, standing_batches=0,
      progress_every_s=1e9)
  ev = evaluator.Evaluator(args.model_dir, settings, write=lambda _: None)
  found = dict(ev.checkpoints())
  step = max(found) if args.step is None else args.step
  if step not in found:
    raise ValueError(f"--step={args.step}: no checkpoint there; the run has "
                     f"{sorted(found)}. Pass one of those.")
  path = found[step]
  g = ev.generator_for(step)
  real = ev.real()
  layers = restore.batch_norm_layers(g)
  restore.restore_generator(g, path, not args.raw)
  sets = {"stored": _moments(layers)}
  restore.recompute(g, args.standing_batches, args.batch_size, seed=1)
  sets["standing"] = _moments(layers)
  rows = []
  for name, sources, scale in swap_plan(len(layers)):
    for i, (layer, source) in enumerate(zip(layers, sources)):
      mean, var = sets[source][i]
      layer.moving_mean.assign(mean)
      layer.moving_variance.assign(var * scale if source == "standing" else var)
    values, _ = evaluator.evaluate_generator(
        g, ev.classifier, real, args.num_samples, int(g.num_classes), int(g.z_dim),
        batch_size=args.batch_size, seed=0, manifold=True, real_asked=args.num_samples)
    row = dict(model_dir=args.model_dir, step=step, generator="raw" if args.raw else "ema",
               statistics=name, wall_time=time.time(), **_pick(values))
    rows.append(row)
    write(f"{name:30s} FID {row['fid']:7.2f}  precision {row['precision']:.3f}  "
          f"recall {row['recall']:.3f}")
  names = [l.moving_mean.name.rsplit("/moving_mean", 1)[0] for l in layers]
  return rows, names, layer_distances(sets["stored"], sets["standing"])


def _moments(layers):
  return [(l.moving_mean.numpy().copy(), l.moving_variance.numpy().copy()) for l in layers]


def _pick(values):
  """{'fid': .., 'precision': .., 'recall': ..} from the evaluator's named metrics."""
  picked = {}
  for key, value in values.items():
    for name in ("fid", "precision", "recall"):
      if key.startswith(name):
        picked[name] = value
  return picked


def format_tables(rows, layer_names, distances):
  lines = ["| layer | standing / stored variance, median | "
           "mean shift / stored std, median |", "|---|---|---|"]
  for i, (name, (ratio, shift)) in enumerate(zip(layer_names, distances)):
    lines.append(f"| {i} {name} | {ratio:.3f} | {shift:.3f} |")
  lines += ["", "| statistics | FID | precision | recall |", "|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['statistics']} | {r['fid']:.2f} | {r['precision']:.3f} | "
                 f"{r['recall']:.3f} |")
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(prog="hamgan-bench bn-stats", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model_dir", required=True, help="a hamgan-train run directory")
  parser.add_argument("--step", type=int, default=None, help="default: the last checkpoint")
  parser.add_argument("--raw", action="store_true", help="the raw G instead of the EMA G")
  parser.add_argument("--classifier_path", default=None)
  parser.add_argument("--real_dataset", default=None)
  parser.add_argument("--data_dir", default=None, help="tfds data_dir of the real side")
  parser.add_argument("--cache_dir", default=None, help="real-statistics cache")
  parser.add_argument("--num_samples", type=int, default=2000)
  parser.add_argument("--batch_size", type=int, default=200)
  parser.add_argument("--standing_batches", type=int, default=16)
  add_output_flags(parser, "bn_stats")
  args = parser.parse_args(argv)
  rows, names, distances = measure(args)
  table = format_tables(rows, names, distances)
  print(table)
  said = write_results(rows, args.out, table, args.markdown)
  if said:
    print(said)
