"""How many steps the next compiled loop runs, and when a time-based checkpoint is due.

A signal (a preemption notice) is only seen between loops, so a loop must never
outlast the grace period, whatever the model and the machine. `LoopClock` measures
the seconds per step of every loop and sizes the next one so that it lasts at most
`max_loop_seconds`; the step count is a tensor argument of the compiled loop, so a
new size never retraces it. Until a step time is known (the first loop also traces
and compiles), loops run one step.

On several hosts the sizes must agree (every task runs the same number of steps):
the trainer feeds the slowest task's step time, as gathered by
`cluster.Agreement`, into `LoopClock.steps`.
"""
import math
import time


def loop_steps(seconds_per_step, max_loop_seconds, steps_per_loop):
  """The largest loop (<= steps_per_loop) that lasts <= max_loop_seconds, at least 1.

  `seconds_per_step` None (not measured yet) gives 1.
  """
  if seconds_per_step is None:
    return 1
  if seconds_per_step <= 0:
    return steps_per_loop
  return max(1, min(steps_per_loop, int(math.floor(max_loop_seconds / seconds_per_step))))


class LoopClock:
  """Times loops and keeps the slowest recent seconds-per-step.

  The first timed loop of a process is not used: it includes tracing and
  compiling. A later measurement replaces the estimate when slower, and pulls it
  down only halfway when faster, so one quick loop does not make the next one long.
  """

  def __init__(self, max_loop_seconds, steps_per_loop):
    self.max_loop_seconds = float(max_loop_seconds)
    self.steps_per_loop = int(steps_per_loop)
    self.seconds_per_step = None
    self._loops_timed = 0
    self._start = None

  def start(self):
    self._start = time.monotonic()

  def stop(self, steps):
    """Ends the timing of a loop of `steps` steps; returns its seconds per step."""
    elapsed = time.monotonic() - self._start
    self._loops_timed += 1
    return elapsed / max(steps, 1) if self._loops_timed > 1 else None

  def update(self, seconds_per_step):
    """Takes a (possibly agreed) measurement; None keeps the estimate."""
    if seconds_per_step is None or not math.isfinite(seconds_per_step):
      return
    if self.seconds_per_step is None or seconds_per_step > self.seconds_per_step:
      self.seconds_per_step = seconds_per_step
    else:
      self.seconds_per_step = 0.5 * (self.seconds_per_step + seconds_per_step)

  def steps(self):
    """The size of the next loop (before cutting it at log/summary/checkpoint steps)."""
    return loop_steps(self.seconds_per_step, self.max_loop_seconds, self.steps_per_loop)


class CheckpointTimer:
  """Says when `every_secs` seconds of training have passed since the last save."""

  def __init__(self, every_secs):
    self.every_secs = every_secs
    self._last = time.monotonic()

  def due(self):
    return self.every_secs is not None and time.monotonic() - self._last >= self.every_secs

  def saved(self):
    self._last = time.monotonic()
