"""Where a train step's time goes: per-op-type time from a tf.profiler trace.

`profile_ops(fn, steps)` traces `fn()` (which runs `steps` iterations) with
tf.profiler and sums, per op type, the time the executor's compute threads spent in
kernels (each op event is named 'name:Type'; the executor's own nested 'Process'
events are left out, so nothing is counted twice). On a 2-core CPU both threads run
kernels in parallel, so the per-step op time can exceed the wall time.
`summarize` turns that into the share spent in matmul / convolution kernels (the
arithmetic a step cannot avoid) and the op count per step (the overhead it can).
"""
import collections
import glob
import re
import tempfile
import time

# Kernels that do the model's arithmetic: convolutions (and their gradients), matmuls.
ARITHMETIC = re.compile(r"Conv2D|MatMul|Einsum|Conv3D")

# The executor's scopes around a loop body's kernels (not kernels themselves).
EXECUTOR_SCOPES = ("Process", "ExecutorState::Process")

OpProfile = collections.namedtuple("OpProfile", ["ms", "count", "steps", "wall_s"])


def profile_ops(fn, steps):
  """OpProfile(ms: {op type: total ms}, count: {op type: calls}, steps, wall_s)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=import-outside-toplevel
  logdir = tempfile.mkdtemp(prefix="hamgan_op_profile_")
  tf.profiler.experimental.start(logdir)
  start = time.perf_counter()
  try:
    fn()
  finally:
    wall = time.perf_counter() - start
    tf.profiler.experimental.stop()
  ms, count = collections.Counter(), collections.Counter()
  for path in glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True):
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
      space.ParseFromString(f.read())
    for plane in space.planes:
      names = {k: v.name for k, v in plane.event_metadata.items()}
      for line in plane.lines:
        if not line.name.startswith(("tf_Compute", "tf_inter_op")):
          continue
        for event in line.events:
          name = names.get(event.metadata_id, "")
          op = name.rsplit(":", 1)[-1]
          if op in EXECUTOR_SCOPES:  # they enclose the kernels, which are counted
            continue
          ms[op] += event.duration_ps / 1e9
          count[op] += 1
  return OpProfile(dict(ms), dict(count), steps, wall)


def summarize(profile, top=5):
  """{'ops_per_step', 'op_ms_per_step', 'arithmetic_share', 'wall_ms_per_step', 'top'}."""
  total = sum(profile.ms.values()) or float("nan")
  arithmetic = sum(v for k, v in profile.ms.items() if ARITHMETIC.search(k))
  ranked = sorted(profile.ms.items(), key=lambda kv: -kv[1])[:top]
  return dict(
      ops_per_step=sum(profile.count.values()) / profile.steps,
      op_ms_per_step=total / profile.steps,
      arithmetic_share=arithmetic / total,
      wall_ms_per_step=1e3 * profile.wall_s / profile.steps,
      top=[(k, v / profile.steps, profile.count[k] / profile.steps) for k, v in ranked])


def format_table(rows):
  """Markdown: one row per (label, summary)."""
  lines = ["| configuration | ops/step | op ms/step (all threads) | matmul/conv share | "
           "wall ms/step | top op types (ms/step, calls/step) |", "|---|---|---|---|---|---|"]
  for label, s in rows:
    top = "; ".join(f"{k} {ms:.1f} ({n:.0f})" for k, ms, n in s["top"])
    lines.append(f"| {label} | {s['ops_per_step']:.0f} | {s['op_ms_per_step']:.1f} | "
                 f"{100 * s['arithmetic_share']:.0f}% | {s['wall_ms_per_step']:.1f} | {top} |")
  return "\n".join(lines)
