"""The host side of a run: loops, logs, summaries, checkpoints, and deciding together.

`run(trainer, ...)` drives `trainer.run_loop` until the target step. Between two
loops it asks the hooks (signals, the divergence guard), gathers what every task
knows (`cluster.Agreement`: a stop request, a time-based checkpoint due, the
measured step time) so that all tasks stop, save and size the next loop alike,
and then (chief only) writes the log row, the summaries and the sample grid.

A loop is cut at every log, summary and checkpoint step, so those happen at
exact steps, and sized by `loop_control.LoopClock` so that it lasts at most
`train.max_loop_seconds`.
"""
import dataclasses
import math
import time

from absl import logging
import gin
import numpy as np

from hamgan import run_dir
from hamgan.training import hooks as hooks_lib
from hamgan.training import loop_control

# Columns of the vector the tasks agree on after every loop.
_STOP, _CHECKPOINT_DUE, _SECONDS_PER_STEP = range(3)


def loop_size(step, target, timed_steps, config):
  """Steps of the next loop: the timed size, cut at the target and every interval."""
  n = min(timed_steps, target - step)
  for every in (config.log_every, config.summary_every, config.checkpoint_every):
    n = min(n, every - step % every)
  return n


def _start_launch(trainer, step):
  """The chief records this launch's config (every task restored `step`, agreed)."""
  if trainer.is_chief:
    run_dir.write_launch_config(trainer.model_dir, step, gin.operative_config_str())


@dataclasses.dataclass
class Decision:
  """What every task does after a loop, decided from the reports all tasks gathered."""
  stop: bool  # some task asked to stop (a signal, a hook)
  checkpoint_due: bool  # some task's clock says a time-based checkpoint is due
  seconds_per_step: float  # the slowest task's, or None when not every task measured


def decide(task_reports):
  """Decision from the gathered (tasks, 3) array: stop, checkpoint due, seconds/step."""
  reports = np.asarray(task_reports, np.float64)
  times = reports[:, _SECONDS_PER_STEP]
  return Decision(stop=bool(reports[:, _STOP].max()),
                  checkpoint_due=bool(reports[:, _CHECKPOINT_DUE].max()),
                  seconds_per_step=float(times.max()) if np.all(np.isfinite(times)) else None)


def is_milestone(step, target, checkpoint_every):
  """True where a step's checkpoint is kept for good: every checkpoint_every, the last."""
  return step % checkpoint_every == 0 or step >= target


class _Speed:
  """Steps and images per second between two log rows."""

  def __init__(self, step, config):
    self.step, self.time, self.config = step, time.time(), config
    self.rates = {"speed/steps_per_sec": 0.0, "speed/images_per_sec": 0.0}

  def measure(self, step):
    now = time.time()
    per_sec = (step - self.step) / max(now - self.time, 1e-9)
    # Images per second: real images consumed by the D steps.
    self.rates = {"speed/steps_per_sec": per_sec,
                  "speed/images_per_sec": per_sec * self.config.batch_size * self.config.d_steps}
    self.step, self.time = step, now
    return now


def run(trainer, num_steps=None, hooks=()):
  """Trains until step `num_steps` (default config.num_steps); returns the last metrics."""
  cfg = trainer.config
  target = cfg.num_steps if num_steps is None else int(num_steps)
  step = int(trainer.step.numpy())
  _start_launch(trainer, step)
  clock = loop_control.LoopClock(cfg.max_loop_seconds, cfg.steps_per_loop)
  timer = loop_control.CheckpointTimer(cfg.checkpoint_every_secs)
  speed, metrics = _Speed(step, cfg), {}
  trainer.stopped_by = None
  while step < target:
    metrics, step, measured = _run_loop(trainer, clock, step, target)
    asked = hooks_lib.should_stop(hooks, trainer, step, metrics)
    decision = _agree(trainer, clock, timer, asked, measured)
    if int(trainer.step.numpy()) != step:
      # A rollback restored an older step: this loop's results are gone; go on from there.
      step = int(trainer.step.numpy())
      if decision.stop:
        _note_stop(trainer, asked, step)
        break
      continue
    last = step >= target or decision.stop
    _log_and_summarise(trainer, speed, step, target, metrics, last)
    milestone = is_milestone(step, target, cfg.checkpoint_every)
    if milestone or last or decision.checkpoint_due:
      _save(trainer, hooks, timer, step, metrics, milestone)
    if decision.stop:
      _note_stop(trainer, asked, step)
      break
  trainer.last_step = step
  if step >= cfg.num_steps and trainer.is_chief:
    run_dir.write_done(trainer.model_dir, step)
  return metrics


def _run_loop(trainer, clock, step, target):
  """One compiled loop, sized by the clock and cut at every interval;
  (metrics, the step reached, its seconds per step or None)."""
  n = loop_size(step, target, clock.steps(), trainer.config)
  clock.start()
  metrics = trainer.run_loop(n)
  measured = clock.stop(n)
  trainer.last_step = int(trainer.step.numpy())
  return metrics, trainer.last_step, measured


def _agree(trainer, clock, timer, asked, measured):
  """Gathers every task's stop request, checkpoint clock and step time; one Decision."""
  decision = decide(trainer.agreement.agree(
      [float(asked), float(timer.due()), math.nan if measured is None else measured]))
  clock.update(decision.seconds_per_step)
  return decision


def _note_stop(trainer, asked, step):
  trainer.stopped_by = "this worker" if asked else "another worker"
  if not asked:
    logging.warning("Another worker asked to stop: agreed to stop at step %d.", step)
  logging.info("Training stopped at step %d (asked by %s).", step, trainer.stopped_by)


def _log_and_summarise(trainer, speed, step, target, metrics, last):
  cfg = trainer.config
  if step % cfg.log_every == 0 or last:
    now = speed.measure(step)
    _log(trainer, step, target, metrics, speed.rates, now)
  if trainer.is_chief and (step % cfg.summary_every == 0 or last):
    _write_summaries(trainer, step, metrics, speed.rates)


def _save(trainer, hooks, timer, step, metrics, milestone):
  if hooks_lib.may_save(hooks, trainer, step, metrics):
    trainer.save(step, milestone=milestone)
    timer.saved()


def _write_summaries(trainer, step, metrics, rates):
  from hamgan.training import summaries  # pylint: disable=import-outside-toplevel
  values = {f"losses/{k}": metrics[k] for k in ("d_loss", "g_loss")}
  values.update({f"discriminator/{k}": metrics[k] for k in ("d_real", "d_fake")})
  values["learning_rate/generator"] = float(trainer.g_optimizer.learning_rate.numpy())
  values["learning_rate/discriminator"] = float(trainer.d_optimizer.learning_rate.numpy())
  values.update(rates)
  values.update(summaries.context_scalars(
      {"generator": trainer.generator, "discriminator": trainer.discriminator}))
  writer = trainer.writer()
  writer.scalars(step, values)
  writer.grid(step, trainer.sample_grid())


def _log(trainer, step, target, metrics, rates, now):
  if trainer.is_chief:
    row = {"step": step, "wall_time": now,
           "steps_per_sec": rates["speed/steps_per_sec"],
           "images_per_sec": rates["speed/images_per_sec"]}
    row.update(metrics)
    trainer.writer().log_row(row)
  sps = rates["speed/steps_per_sec"]
  eta = (target - step) / sps if sps > 0 else float("inf")
  eta_text = time.strftime("%H:%M:%S", time.gmtime(eta)) if np.isfinite(eta) else "?"
  if np.isfinite(eta) and eta >= 86400:
    eta_text = f"{int(eta // 86400)}d " + eta_text
  logging.info("step %d/%d  d_loss %.4f  g_loss %.4f  D(real) %.3f  D(fake) %.3f  "
               "%.2f it/s  ETA %s", step, target, metrics["d_loss"], metrics["g_loss"],
               metrics["d_real"], metrics["d_fake"], sps, eta_text)
