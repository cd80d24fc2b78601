"""Training-speed benchmark: iterations per second per context module, and input cost.

    hamgan-bench step                                   # 32x32 and 128x128, small batch
    hamgan-bench step --image_sizes=32 --contexts=none,ham_nmf --rounds=5

Like the paper's TPU figures (1.65 it/s with no context, 1.54 with Hamburger, 1.31
with YLG), but measured here in one process: every configuration is built first
(one Trainer each, the real distributed train step with a D and a G update), then
timed round-robin for several rounds, and the median per configuration is kept, so
that load on a shared machine hits them all alike. Ratios are the result; absolute
numbers mean something only on an otherwise idle accelerator.

A second table compares the real tf.data pipeline (the offline digits) with a
batch held in memory, for the same model: the input pipeline should cost < 5%.

With --profile, every configuration (and, with --demo, the demo's model: ch=8, batch
32, NMF rank 8, as gin_configs/demo_mnist.gin) is also traced with tf.profiler: op
count per step and the share of kernel time spent in matmul / convolution kernels
(hamgan.bench.op_profile); a low share means the step is overhead-bound.
"""
import argparse
import os
import tempfile
import time

import numpy as np

from hamgan.bench import op_profile
from hamgan.bench import add_output_flags
from hamgan.bench import write_results

CONTEXTS = ("none", "sagan", "ylg", "ham_nmf")


def _trainer(image_size, context, batch, ch, steps_per_loop, dataset, num_classes=10,
             jit_compile=False, precision="float32", context_settings=None, z_dim=128):
  """A Trainer on a throw-away model_dir; dataset 'memory' holds one batch in memory."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  from hamgan.models import Discriminator, Generator  # pylint: disable=import-outside-toplevel
  from hamgan.training.trainer import Trainer, TrainConfig  # pylint: disable=import-outside-toplevel

  def g_fn(name):
    return Generator(image_size=image_size, num_classes=num_classes, ch=ch, context=context,
                     context_settings=context_settings, z_dim=z_dim, name=name)

  def d_fn(name):
    return Discriminator(image_size=image_size, num_classes=num_classes, ch=ch,
                         context=context, context_settings=context_settings, name=name)

  dataset_fn = None
  if dataset == "memory":
    rng = np.random.RandomState(0)
    images = rng.uniform(-1, 1, (batch, image_size, image_size, 3)).astype(np.float32)
    labels = rng.randint(0, num_classes, batch).astype(np.int32)

    def dataset_fn(input_context, per_replica_batch):
      del input_context
      return tf.data.Dataset.from_tensors(
          (images[:per_replica_batch], labels[:per_replica_batch])).repeat()

  config = TrainConfig(batch_size=batch, num_steps=10**9, dataset="digits",
                       steps_per_loop=steps_per_loop, mixed_precision=precision,
                       ema_start_step=0, jit_compile=jit_compile)
  model_dir = tempfile.mkdtemp(prefix=f"bench_step_{context}_{image_size}_")
  return Trainer(model_dir, config=config, generator_fn=g_fn, discriminator_fn=d_fn,
                 dataset_fn=dataset_fn)


def _time_round_robin(trainers, loops, rounds, warmup=None):
  """Median seconds per iteration of each trainer, timed in interleaved rounds."""
  for key, t in trainers.items():
    t.run_loop((warmup or {}).get(key, loops))  # trace and warm up
  times = {k: [] for k in trainers}
  for r in range(rounds):
    for key, t in trainers.items():
      start = time.perf_counter()
      t.run_loop(loops)
      times[key].append((time.perf_counter() - start) / loops)
    print(f"  round {r + 1}/{rounds}: " + ", ".join(
        f"{k[1]}@{k[0]} {1 / v[-1]:.2f} it/s" for k, v in times.items()), flush=True)
  return {k: float(np.median(v)) for k, v in times.items()}


def main(argv=None):
  parser = argparse.ArgumentParser(
      prog="hamgan-bench step",
      description="Training iterations per second for each context module on the same "
                  "architecture and batch, in one process; and the input pipeline's cost.")
  parser.add_argument("--image_sizes", default="32,128", help="comma-separated: 32, 64, 128")
  parser.add_argument("--contexts", default=",".join(CONTEXTS))
  parser.add_argument("--batch", type=int, default=8, help="global batch per D/G step")
  parser.add_argument("--ch", default="32:64,64:32,128:32",
                      help="model width per image size, size:ch pairs: the CIFAR-10 configs' "
                           "ch=64 at 32x32, narrower at 64 and 128 for the CPU (YLG's 8 heads "
                           "need 64 channels where D's context sits: ch >= 32 at 64 and 128)")
  parser.add_argument("--pipeline_ch", type=int, default=16,
                      help="model width of the input-pipeline comparison (small, so that "
                           "input costs show)")
  parser.add_argument("--loops", type=int, default=4, help="iterations per timed call")
  parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
  parser.add_argument("--jit_compile", action="store_true",
                      help="compile the replica step with XLA for every context (as a TPU "
                           "always does)")
  parser.add_argument("--profile", action="store_true",
                      help="also trace each configuration with tf.profiler: ops per step and "
                           "the matmul/conv share of kernel time")
  parser.add_argument("--demo", action="store_true",
                      help="also time (and with --profile trace) the demo's model: 32x32, "
                           "ch=8, batch 32, ham_nmf rank 8 (gin_configs/demo_mnist.gin)")
  parser.add_argument("--no_pipeline", action="store_true",
                      help="skip the input-pipeline comparison")
  add_output_flags(parser, "step")
  args = parser.parse_args(argv)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  widths = dict(tuple(int(v) for v in pair.split(":")) for pair in args.ch.split(","))
  sizes = [int(s) for s in args.image_sizes.split(",")]
  contexts = [c for c in args.contexts.split(",") if c]
  for s in sizes:
    if s not in widths:
      parser.error(f"--ch has no width for image size {s}; add '{s}:CH' to --ch.")
  rows, tables, all_trainers = [], [], {}
  xla = ", XLA-compiled step" if args.jit_compile else ""

  for size in sizes:
    print(f"[{size}x{size}] building {', '.join(contexts)} (ch={widths[size]}, "
          f"batch={args.batch}) ...", flush=True)
    trainers = {(size, c): _trainer(size, c, args.batch, widths[size], args.loops, "memory",
                                    jit_compile=args.jit_compile)
                for c in contexts}
    secs = _time_round_robin(trainers, args.loops, args.rounds)
    all_trainers.update(trainers)
    base = secs.get((size, "none"))
    ylg = secs.get((size, "ylg"))
    lines = [f"### {size}x{size}, ch={widths[size]}, batch {args.batch} (D step + G step{xla})",
             "", "| context | it/s | time vs none | time vs YLG |", "|---|---|---|---|"]
    for c in contexts:
      s = secs[(size, c)]
      lines.append(f"| {c} | {1 / s:.2f} | {s / base:.2f}x | " if base else f"| {c} | {1 / s:.2f} | - | ")
      lines[-1] += f"{s / ylg:.2f}x |" if ylg else "- |"
      rows.append(dict(bench="step", image_size=size, context=c, ch=widths[size],
                       batch=args.batch, jit_compile=args.jit_compile, it_per_s=1 / s,
                       time=time.time()))
    tables.append("\n".join(lines))
    print("\n" + tables[-1] + "\n", flush=True)

  if args.demo:
    print("[demo] the demo model (32x32, ch=8, batch 32, ham_nmf rank 8) ...", flush=True)
    demo = {(32, "demo"): _trainer(32, "ham_nmf", 32, 8, args.loops, "memory",
                                   jit_compile=args.jit_compile, z_dim=64,
                                   context_settings={"rank": 8, "steps": 6})}
    secs = _time_round_robin(demo, args.loops, args.rounds)
    tables.append(f"### the demo model (32x32, ch=8, batch 32, ham_nmf rank 8{xla})\n\n"
                  f"| model | it/s |\n|---|---|\n| demo | {1 / secs[(32, 'demo')]:.2f} |")
    rows.append(dict(bench="step", image_size=32, context="demo", ch=8, batch=32,
                     jit_compile=args.jit_compile, it_per_s=1 / secs[(32, "demo")],
                     time=time.time()))
    all_trainers[(32, "demo")] = demo[(32, "demo")]

  if args.profile:
    print("[profile] tracing every configuration ...", flush=True)
    profiled = []
    for (size, name), trainer in all_trainers.items():
      trace = op_profile.profile_ops(lambda t=trainer: t.run_loop(args.loops), args.loops)
      summary = op_profile.summarize(trace)
      profiled.append((f"{name} @ {size}x{size}", summary))
      rows.append(dict(bench="step_profile", image_size=size, context=name,
                       jit_compile=args.jit_compile, time=time.time(),
                       **{k: v for k, v in summary.items() if k != "top"}))
    tables.append(f"### where the step's time goes (tf.profiler, {args.loops} steps each{xla})"
                  "\n\n" + op_profile.format_table(profiled))
    print("\n" + tables[-1] + "\n", flush=True)

  if not args.no_pipeline:
    size = 32
    print("[pipeline] digits tf.data vs a batch in memory, ham_nmf at 32x32 ...", flush=True)
    trainers = {(size, source): _trainer(size, "ham_nmf", args.batch, args.pipeline_ch,
                                         args.loops, source, jit_compile=args.jit_compile)
                for source in ("memory", "digits")}
    # The digits pipeline caches its decoded images during the first epoch: time the
    # steady state that a long run sees, after one full epoch.
    epoch = -(-1500 // args.batch) + 1
    secs = _time_round_robin(trainers, args.loops, args.rounds, warmup={(size, "digits"): epoch})
    mem, real = secs[(size, "memory")], secs[(size, "digits")]
    tables.append("\n".join([
        f"### input pipeline (ham_nmf, 32x32, ch={args.pipeline_ch}, batch {args.batch}{xla})",
        "",
        "| input | it/s | time vs in-memory |", "|---|---|---|",
        f"| batch in memory | {1 / mem:.2f} | 1.00x |",
        f"| digits tf.data pipeline | {1 / real:.2f} | {real / mem:.3f}x |"]))
    rows.append(dict(bench="pipeline", image_size=size, ch=args.pipeline_ch,
                     batch=args.batch, jit_compile=args.jit_compile, memory_it_per_s=1 / mem,
                     pipeline_it_per_s=1 / real, ratio=real / mem, time=time.time()))
    print("\n" + tables[-1] + "\n", flush=True)

  markdown = "\n\n".join(tables)
  print(write_results(rows, args.out, markdown, args.markdown))
  return markdown


if __name__ == "__main__":
  main()
