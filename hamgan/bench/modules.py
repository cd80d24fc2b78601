"""Module benchmark: time, MACs, parameters and peak memory of the context modules.

    python -m hamgan.bench.modules                 # every shape, every module
    python -m hamgan.bench.modules --shapes=g32 --reps=5 --out=runs/bench_modules.jsonl
    hamgan-bench modules --help

Each (shape, module) pair runs in a fresh Python process, so that its peak
memory is its own. A child times forward plus backward of the whole module
(breads, projections and residual included) under tf.function, and forward
alone in inference mode and in training mode (backward = the difference of the
training-mode times); the parent prints one Markdown table per shape with
ratios to SAGAN and to YLG (shared machines are noisy: compare ratios, not
absolute times). Results are appended as JSON lines.

Peak memory is the growth of the child's peak resident set from just before
the first call of the module through two training calls, taken before anything else
runs in that process (so it covers the module's activations and gradients, not
TensorFlow itself). The times of a row are then taken round-robin with SAGAN's and
YLG's in the same process, and the ratio columns compare those side by side.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

from hamgan.bench import add_output_flags
from hamgan.bench import write_results

# name -> (batch, height, width, channels, Hamburger rank)
SHAPES = {
    "g32": (16, 32, 32, 256, 32),    # the generator's 32x32 context position
    "d32": (16, 32, 32, 128, 16),    # the discriminator's
    "g64": (4, 64, 64, 256, 32),
    "paper": (1, 128, 128, 512, 64),  # the paper's Table 3 input
}
MODULES = ("none", "sagan", "ylg", "ham_nmf", "ham_cd", "ham_vq", "sa_full")
# The one-step gradient claim: backward cost independent of the number of steps.
STEP_SWEEP = (1, 6, 12)


def macs(module, shape, steps=6):
  """Multiply-adds of one forward pass, counted from the algorithms (per batch)."""
  b, h, w, c, r = shape
  n = h * w
  if module == "none":
    return 0
  if module in ("sagan", "ylg"):
    k = n // 4  # keys after 2x2 max-pooling
    proj = n * c * (c // 8) * 2 + n * c * (c // 2)
    attn = n * k * (c // 8) + n * k * (c // 2)
    return b * (proj + attn + n * (c // 2) * c)
  if module == "sa_full":
    return b * (3 * n * c * c + 2 * n * n * c + n * c * c)
  d = c
  # Lower bread N C D; the upper bread folded into the factors (D R C, then N R C):
  # the (N, D) reconstruction is never formed.
  breads = n * c * d + d * r * c + n * r * c
  if module == "ham_nmf":
    step = 2 * n * d * r + 2 * n * r * r + 2 * d * r * r
    # X^T B of the initial softmax is reused by the first coef update.
    ham = n * d * r + steps * step - (n * d * r if steps else 0) + (
        n * d * r + n * r * r + d * r * r)
  elif module == "ham_cd":
    step = n * d * r + n * d * r
    ham = steps * step + n * d * r + d * r * r + n * r * r  # X^T B, Gram, (X^T B) inverse
  elif module == "ham_vq":
    step = n * d * r + n * d * r
    ham = steps * step + n * d * r
  else:
    raise ValueError(f"unknown module {module!r}")
  return b * (breads + ham)


def _build(module, shape, steps):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  from hamgan.layers.attention import FullSelfAttention  # pylint: disable=import-outside-toplevel
  from hamgan.layers.registry import build_context  # pylint: disable=import-outside-toplevel
  c, r = shape[3], shape[4]
  if module == "sa_full":
    layer = FullSelfAttention()
  else:
    settings = dict(rank=r, steps=steps) if module.startswith("ham_") else {}
    layer = build_context(module, c, **settings)

  @tf.function
  def train_step(inputs):
    with tf.GradientTape() as tape:
      tape.watch(inputs)
      out = layer(inputs, training=True)
      loss = tf.reduce_sum(out * out)
    return tape.gradient(loss, [inputs] + layer.trainable_variables)

  @tf.function
  def forward_step(inputs):
    return layer(inputs, training=True)

  @tf.function
  def infer_step(inputs):
    return layer(inputs, training=False)

  return layer, train_step, forward_step, infer_step


def _child(spec):
  """Runs one measurement and prints it as a JSON line.

  Peak memory is taken first, with only the measured module in the process. Then the
  module is timed interleaved with the reference modules (SAGAN, YLG) in this same
  process, so that each ratio compares times taken side by side.
  """
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  b, h, w, c, _ = spec["shape"]
  module, steps = spec["module"], spec["steps"]
  x = tf.constant(np.random.RandomState(0).randn(b, h, w, c).astype(np.float32))

  def run(fn):
    for t in tf.nest.flatten(fn(x)):
      if t is not None:
        t.numpy()

  def prepare(layer, train_step):
    _warm_up(layer, lambda: run(train_step))

  rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  layer, train_step, forward_step, infer_step = _build(module, spec["shape"], steps)
  prepare(layer, train_step)
  peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024.0
  run(infer_step)
  run(forward_step)

  def once(fn):
    t0 = time.perf_counter()
    run(fn)
    return time.perf_counter() - t0

  infer_s = float(np.median([once(infer_step) for _ in range(spec["reps"])]))
  fns = {module: train_step, "forward": forward_step}
  for ref in spec.get("references", []):
    if ref != module:
      ref_layer, ref_train, _, _ = _build(ref, spec["shape"], 6)
      prepare(ref_layer, ref_train)
      fns[ref] = ref_train
  times = _round_robin(fns, module, spec, once)
  train_s = times[module]
  forward_s = times.pop("forward")
  # The references' times beside the module's, from the same round robin: the ratios
  # are computed from these, never from another process's row.
  side_by_side = {k: v * 1e3 for k, v in times.items()}
  ratios = {f"vs_{k}": train_s / v for k, v in times.items()}
  params = int(sum(np.prod(v.shape) for v in layer.trainable_variables))
  # Backward = (forward + backward) - forward in training mode, timed side by side.
  print(json.dumps(dict(spec, train_ms=train_s * 1e3, infer_ms=infer_s * 1e3,
                        backward_ms=max(train_s - forward_s, 0.0) * 1e3,
                        peak_mb=peak_mb, params=params, ratios=ratios,
                        side_by_side_ms=side_by_side,
                        gmacs=macs(module, spec["shape"], steps) / 1e9)))


def _warm_up(layer, train_once):
  """Traces the step, then makes the residual scale count (sigma starts at 0, which
  would let a clever runtime skip the branch) and runs it again."""
  train_once()
  for var in layer.trainable_variables:
    if var.shape.rank == 0:
      var.assign(0.1)
  train_once()


def _round_robin(fns, module, spec, once):
  """{name: median seconds}, timing every fn in turn so load changes hit all alike."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  times = {k: [] for k in fns}
  start = time.perf_counter()
  while (len(times[module]) < spec["reps"] or
         (time.perf_counter() - start < spec["min_seconds"] and len(times[module]) < 50)):
    for k, fn in fns.items():
      times[k].append(once(fn))
  return {k: float(np.median(v)) for k, v in times.items()}


def _measure(spec, timeout):
  cmd = [sys.executable, "-m", "hamgan.bench.modules", "--child", json.dumps(spec)]
  try:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
  except subprocess.TimeoutExpired:
    return dict(spec, error=f"timed out after {timeout}s")
  lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
  if proc.returncode != 0 or not lines:
    return dict(spec, error=(proc.stderr.strip().splitlines() or ["no output"])[-1][:200])
  return json.loads(lines[-1])


def _ratio(row, ref):
  """'1.28x (108/85 ms)': the ratio and the two times it comes from, timed side by side
  in this row's process (the `train ms` column of another row is another process's)."""
  value = row.get("ratios", {}).get(f"vs_{ref}")
  if value is None:
    return "-"
  mine = row.get("side_by_side_ms", {}).get(row["module"], row["train_ms"])
  theirs = row.get("side_by_side_ms", {}).get(ref)
  return f"{value:.2f}x" + (f" ({mine:.0f}/{theirs:.0f} ms)" if theirs else "")


def format_table(rows):
  """Markdown table of one shape's rows, with ratios to SAGAN and YLG (steps=6 rows).

  `train ms` is each row's own process; a ratio column holds the ratio and the two
  times it was computed from, measured round robin in that row's process.
  """
  by = {(r["module"], r["steps"]): r for r in rows}
  sagan = by.get(("sagan", 6))
  lines = ["| module | steps | params | GMACs | train ms | backward ms | infer ms | peak MB "
           "| train vs SAGAN (side by side) | train vs YLG (side by side) "
           "| peak vs SAGAN |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    if "error" in r:
      lines.append(f"| {r['module']} | {r['steps']} | - | - | - | - | - | - | {r['error']} | | |")
      continue
    mem = (f"{r['peak_mb'] / sagan['peak_mb']:.2f}x"
           if sagan and "error" not in sagan and sagan["peak_mb"] > 0 else "-")
    lines.append(
        f"| {r['module']} | {r['steps']} | {r['params']:,} | {r['gmacs']:.2f} | "
        f"{r['train_ms']:.1f} | {r.get('backward_ms', float('nan')):.1f} | "
        f"{r['infer_ms']:.1f} | {r['peak_mb']:.0f} | "
        f"{_ratio(r, 'sagan')} | {_ratio(r, 'ylg')} | {mem} |")
  return "\n".join(lines)


def _parser():
  parser = argparse.ArgumentParser(
      prog="hamgan-bench modules",
      description="Times forward+backward, counts MACs/params and peak memory of the "
                  "context modules, each in its own process; prints ratios to SAGAN/YLG.")
  parser.add_argument("--shapes", default=",".join(SHAPES),
                      help=f"comma-separated shape names from {list(SHAPES)}")
  parser.add_argument("--modules", default=",".join(MODULES),
                      help=f"comma-separated modules from {list(MODULES)}")
  parser.add_argument("--reps", type=int, default=5, help="timed repetitions (median)")
  parser.add_argument("--min_seconds", type=float, default=2.0,
                      help="keep timing until this many seconds have passed (max 50 reps)")
  parser.add_argument("--timeout", type=int, default=900, help="seconds per measurement")
  parser.add_argument("--no_sweep", action="store_true",
                      help="skip the ham_nmf steps sweep (1, 6, 12 steps)")
  parser.add_argument("--skip_ylg_on", default="paper",
                      help="shapes on which YLG is left out (its dense masked attention "
                           "at 128x128 is as costly as SAGAN's)")
  add_output_flags(parser, "modules")
  parser.add_argument("--child", help=argparse.SUPPRESS)
  return parser


def main(argv=None):
  parser = _parser()
  args = parser.parse_args(argv)
  if args.child:
    _child(json.loads(args.child))
    return
  shapes = [s for s in args.shapes.split(",") if s]
  modules = [m for m in args.modules.split(",") if m]
  for s in shapes:
    if s not in SHAPES:
      parser.error(f"--shapes: unknown shape {s!r}; expected names from {list(SHAPES)}")
  for m in modules:
    if m not in MODULES:
      parser.error(f"--modules: unknown module {m!r}; expected names from {list(MODULES)}")
  skip_ylg = set(args.skip_ylg_on.split(","))
  tables = [_measure_shape(name, modules, skip_ylg, args) for name in shapes]
  markdown = "\n\n".join(tables)
  said = [f"rows appended to {args.out}"] if args.out else []
  said.append(write_results([], "", markdown, args.markdown))
  print("; ".join(part for part in said if part))
  return markdown


def _measure_shape(shape_name, modules, skip_ylg, args):
  """Measures every planned module at one shape, row by row; returns its table."""
  shape = SHAPES[shape_name]
  plan = [(m, 6) for m in modules if not (m == "ylg" and shape_name in skip_ylg)]
  if not args.no_sweep and "ham_nmf" in modules:
    plan += [("ham_nmf", s) for s in STEP_SWEEP if s != 6]
  rows = []
  for module, steps in plan:
    references = ["sagan"] + ([] if shape_name in skip_ylg else ["ylg"])
    spec = dict(shape_name=shape_name, shape=list(shape), module=module, steps=steps,
                reps=args.reps, min_seconds=args.min_seconds,
                references=[r for r in references if r in modules])
    print(f"[{shape_name} {'x'.join(map(str, shape[:4]))}] {module} steps={steps} ...",
          flush=True)
    row = _measure(spec, args.timeout)
    row["time"] = time.time()
    rows.append(row)
    write_results([row], args.out, "", "")  # row by row: a crash keeps the rows so far
    if "error" in row:
      print(f"  failed: {row['error']}", flush=True)
    else:
      print(f"  train {row['train_ms']:.1f} ms  infer {row['infer_ms']:.1f} ms  "
            f"peak {row['peak_mb']:.0f} MB", flush=True)
  b, h, w, c, r = shape
  table = f"### {shape_name}: {b}x{h}x{w}x{c}, Hamburger R={r}\n\n" + format_table(rows)
  print("\n" + table + "\n", flush=True)
  return table


if __name__ == "__main__":
  main()
