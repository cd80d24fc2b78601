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
import math
import time

from absl import logging
import numpy as np

import gin

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


def run(trainer, num_steps=None, hooks=()):
  """Trains until step `num_steps` (default config.num_steps); returns the last metrics."""
  cfg = trainer.config
  target = cfg.num_steps if num_steps is None else int(num_steps)
  step = int(trainer.step.numpy())
  _start_launch(trainer, step)
  clock = loop_control.LoopClock(cfg.max_loop_seconds, cfg.steps_per_loop)
  timer = loop_control.CheckpointTimer(cfg.checkpoint_every_secs)
  metrics = {}
  mark_step, mark_time = step, time.time()
  rates = {"speed/steps_per_sec": 0.0, "speed/images_per_sec": 0.0}
  trainer.stopped_by = None
  while step < target:
    n = loop_size(step, target, clock.steps(), cfg)
    clock.start()
    metrics = trainer.run_loop(n)
    measured = clock.stop(n)
    step = trainer.last_step = int(trainer.step.numpy())
    asked = hooks_lib.should_stop(hooks, trainer, step, metrics)
    facts = trainer.agreement.agree(
        [float(asked), float(timer.due()), math.nan if measured is None else measured])
    stop = bool(facts[:, _STOP].max())
    times = facts[:, _SECONDS_PER_STEP]
    clock.update(float(np.max(times)) if np.all(np.isfinite(times)) else None)
    after_hooks = int(trainer.step.numpy())
    if after_hooks != step:
      # A rollback restored an older step: this loop's results are gone; go on from there.
      step = after_hooks
      if stop:
        trainer.stopped_by = "this worker" if asked else "another worker"
        break
      continue
    if stop and not asked:
      logging.warning("Another worker asked to stop: agreed to stop at step %d.", step)
    last = step >= target or stop
    if step % cfg.log_every == 0 or last:
      now = time.time()
      steps_per_sec = (step - mark_step) / max(now - mark_time, 1e-9)
      # Images per second: real images consumed by the D steps.
      rates = {"speed/steps_per_sec": steps_per_sec,
               "speed/images_per_sec": steps_per_sec * cfg.batch_size * cfg.d_steps}
      _log(trainer, step, target, metrics, rates, now)
      mark_step, mark_time = step, now
    if trainer.is_chief and (step % cfg.summary_every == 0 or last):
      _write_summaries(trainer, step, metrics, rates)
    due = bool(facts[:, _CHECKPOINT_DUE].max())
    milestone = step % cfg.checkpoint_every == 0 or step >= target
    if milestone or last or due:
      if hooks_lib.may_save(hooks, trainer, step, metrics):
        trainer.save(step, milestone=milestone)
        timer.saved()
    if stop:
      trainer.stopped_by = "this worker" if asked else "another worker"
      logging.info("Training stopped at step %d (asked by %s).", step, trainer.stopped_by)
      break
  trainer.last_step = step
  if step >= cfg.num_steps and trainer.is_chief:
    run_dir.write_done(trainer.model_dir, step)
  return metrics


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
