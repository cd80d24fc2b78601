"""Training-speed benchmark: iterations per second per context module, and input cost.

    hamgan-bench step                                   # 32x32 and 128x128, small batch
    hamgan-bench step --image_sizes=32 --contexts=none,ham_nmf --rounds=5
    hamgan-bench step --accumulation_steps=1,2,4 --batch=64 --image_sizes=32 --contexts=none

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

With --accumulation_steps=1,2,4 it compares instead one step at --batch with k
micro-batches of batch/k (train.accumulation_steps): memory from TensorFlow's allocator
statistics (the GPU's, or the CPU allocator's) and it/s, with the machine's 1024^3 float32
matmul rate of the moment.
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
             jit_compile=False, precision="float32", context_settings=None, z_dim=128,
             accumulation_steps=1):
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
                       ema_start_step=0, jit_compile=jit_compile,
                       accumulation_steps=accumulation_steps)
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


def matmul_gmacs(size=1024, reps=10):
  """The machine's rate for a float32 size^3 matmul, GMAC/s (median of `reps`)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  a = tf.random.normal([size, size])
  matmul = tf.function(lambda x: tf.matmul(x, x))
  matmul(a).numpy()
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    matmul(a).numpy()
    times.append(time.perf_counter() - start)
  return size ** 3 / float(np.median(times)) / 1e9


def _memory_device():
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return "GPU:0" if tf.config.list_physical_devices("GPU") else "CPU:0"


def _state_bytes(trainer):
  """Bytes of the trainer's variables: G, D, the EMA G and both optimizers' slots."""
  seen, total = set(), 0
  for owner in (trainer.generator, trainer.discriminator, trainer.ema_generator,
                trainer.g_optimizer, trainer.d_optimizer):
    variables = owner.variables() if callable(owner.variables) else owner.variables
    for v in variables:
      if id(v) not in seen:
        seen.add(id(v))
        total += v.shape.num_elements() * v.dtype.size
  return total


def accumulation_table(size, context, ch, batch, ks, loops, rounds, jit_compile=False):
  """Markdown and rows: one trainer per k at global batch `batch` (micro-batches of
  batch / k): its working memory (TensorFlow's allocator peak during a loop of `loops`
  steps above the bytes live before it: the GPU's allocator on a GPU, the CPU
  allocator's elsewhere), its variables' bytes (the same for every k) and its it/s."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  device, info = _memory_device(), tf.config.experimental.get_memory_info
  trainers, working = {}, {}
  for k in ks:
    print(f"  k={k}: building, batch {batch} in micro-batches of {batch // k}", flush=True)
    t = _trainer(size, context, batch, ch, loops, "memory", jit_compile=jit_compile,
                 accumulation_steps=k)
    t.run_loop(loops)  # trace and warm up
    tf.config.experimental.reset_memory_stats(device)
    live = info(device)["current"]
    t.run_loop(loops)
    working[k] = info(device)["peak"] - live
    trainers[(size, f"k={k}")] = t
  state = _state_bytes(trainers[(size, f"k={ks[0]}")])
  secs = _time_round_robin(trainers, loops, rounds, warmup={key: 1 for key in trainers})
  mb = 1024.0 ** 2
  xla = ", XLA-compiled step" if jit_compile else ""
  lines = [f"### accumulation: {context} at {size}x{size}, ch={ch}, global batch {batch}"
           f"{xla} ({device} allocator; variables {state / mb:.1f} MB for every k)", "",
           "| k | micro-batch | it/s | working MB | variables + working MB | working vs "
           f"k={ks[0]} | variables + working vs k={ks[0]} |", "|---|---|---|---|---|---|---|"]
  rows = []
  for k in ks:
    it_s = 1 / secs[(size, f"k={k}")]
    lines.append(f"| {k} | {batch // k} | {it_s:.2f} | {working[k] / mb:.1f} | "
                 f"{(state + working[k]) / mb:.1f} | {working[k] / working[ks[0]]:.2f}x | "
                 f"{(state + working[k]) / (state + working[ks[0]]):.2f}x |")
    rows.append(dict(bench="accumulation", image_size=size, context=context, ch=ch,
                     batch=batch, accumulation_steps=k, device=device, it_per_s=it_s,
                     variable_bytes=state, working_bytes=working[k],
                     jit_compile=jit_compile, time=time.time()))
  return "\n".join(lines), rows


def _accumulation_main(args, sizes, widths, contexts, ks):
  print(f"[accumulation] k = {', '.join(map(str, ks))} at global batch {args.batch} ...",
        flush=True)
  bad = [k for k in ks if k < 1 or args.batch % k]
  if bad:
    raise ValueError(f"--accumulation_steps {bad} do not divide --batch={args.batch}; "
                     "pass divisors of the batch, e.g. 1,2,4.")
  rate = matmul_gmacs()
  tables = [f"1024^3 float32 matmul on this machine now: {rate:.0f} GMAC/s"]
  rows = [dict(bench="matmul", size=1024, gmacs=rate, time=time.time())]
  for size in sizes:
    for context in contexts:
      table, new_rows = accumulation_table(size, context, widths[size], args.batch, ks,
                                           args.loops, args.rounds, args.jit_compile)
      tables.append(table)
      rows += new_rows
      print("\n" + table + "\n", flush=True)
  markdown = "\n\n".join(tables)
  print(write_results(rows, args.out, markdown, args.markdown))
  return markdown


def _parser():
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
  parser.add_argument("--accumulation_steps", default=None,
                      help="comma-separated k, e.g. 1,2,4: instead of the tables above, "
                           "compare memory and it/s of one step at --batch against k "
                           "micro-batches of batch/k (train.accumulation_steps), for each "
                           "image size and context")
  add_output_flags(parser, "step")
  return parser


def main(argv=None):
  parser = _parser()
  args = parser.parse_args(argv)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  widths = dict(tuple(int(v) for v in pair.split(":")) for pair in args.ch.split(","))
  sizes = [int(s) for s in args.image_sizes.split(",")]
  contexts = [c for c in args.contexts.split(",") if c]
  for s in sizes:
    if s not in widths:
      parser.error(f"--ch has no width for image size {s}; add '{s}:CH' to --ch.")
  if args.accumulation_steps:
    ks = [int(k) for k in args.accumulation_steps.split(",") if k]
    return _accumulation_main(args, sizes, widths, contexts, ks)
  rows, tables, all_trainers = [], [], {}
  xla = ", XLA-compiled step" if args.jit_compile else ""
  _time_contexts(args, sizes, widths, contexts, xla, rows, tables, all_trainers)
  if args.demo:
    _time_demo(args, xla, rows, tables, all_trainers)
  if args.profile:
    _profile(args, xla, rows, tables, all_trainers)
  if not args.no_pipeline:
    _time_pipeline(args, xla, rows, tables)
  markdown = "\n\n".join(tables)
  print(write_results(rows, args.out, markdown, args.markdown))
  return markdown


def _time_contexts(args, sizes, widths, contexts, xla, rows, tables, all_trainers):
  """it/s of every context at every size, round robin; one table per size."""
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


def _time_demo(args, xla, rows, tables, all_trainers):
  """it/s of the demo's model."""
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


def _profile(args, xla, rows, tables, all_trainers):
  """Traces every configuration timed so far with tf.profiler."""
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


def _time_pipeline(args, xla, rows, tables):
  """The digits tf.data pipeline against a batch held in memory."""
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


if __name__ == "__main__":
  main()
