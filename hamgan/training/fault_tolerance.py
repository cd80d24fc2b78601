"""Fault tolerance for training runs: signals, divergence, damaged checkpoints.

A GAN run lives for days on machines that get preempted, killed or fed a bad
batch. This module keeps such events from losing more than the steps since the
last checkpoint, and from ever producing a checkpoint that cannot be used:

* `SignalHook`: SIGTERM (a preemption notice) or SIGINT sets a flag; after the
  current loop the trainer writes a checkpoint at that step and stops. Python
  runs signal handlers between bytecodes, i.e. once the running tf.function
  loop returns, so the save comes within (one loop + one save) of the signal;
  a loop lasts at most `train.max_loop_seconds` (10 s by default).
* `DivergenceGuard`: a non-finite loss or weight stops the run with the step
  and the metric or variable named, and vetoes any save of non-finite values;
  optionally it rolls back to the newest good checkpoint and continues with
  smaller learning rates, a bounded number of times.
* Restores go through `hamgan.training.resume.agreed_checkpoint`: the newest
  checkpoint whose every tensor reads back (and is finite) on every task.

On several hosts a signal reaches one worker, but every worker must stop and
save at the same step: after each loop the trainer gathers every task's stop
request (hamgan.training.cluster.Agreement, one small all-gather), so a SIGTERM
to any worker stops all of them at that loop's end. This is the agreement
`tf.distribute.experimental.PreemptionCheckpointHandler` makes, done with the
loop boundaries the trainer already has. See docs/reliability.md.
"""
import dataclasses
import signal

from absl import logging
import gin
import numpy as np
import tensorflow as tf

from hamgan import checkpoints
from hamgan.training import hooks as hooks_lib
from hamgan.training import resume
from hamgan.training.hooks import Action


class DivergenceError(RuntimeError):
  """Training produced non-finite values; the message names the step and the value."""


@gin.configurable("fault_tolerance", module="hamgan.training")
@dataclasses.dataclass(frozen=True)
class FaultToleranceConfig:
  """Settings of hamgan-train's fault handling (gin scope `fault_tolerance`).

  Attributes:
    handle_signals: SIGTERM/SIGINT save a checkpoint and stop after the current loop.
    check_weights: besides the losses, check every weight and optimizer slot for
      NaN/Inf after each loop (one fused reduction; cheap next to a loop).
    max_rollbacks: on divergence, restore the newest good checkpoint and continue
      with the learning rates times `rollback_lr_factor`, at most this many times
      per process (0: stop at once).
    rollback_lr_factor: learning-rate multiplier per rollback, in (0, 1).
  """
  handle_signals: bool = True
  check_weights: bool = True
  max_rollbacks: int = 0
  rollback_lr_factor: float = 0.5

  def __post_init__(self):
    if (not isinstance(self.max_rollbacks, (int, np.integer))
        or isinstance(self.max_rollbacks, bool) or self.max_rollbacks < 0):
      raise ValueError(f"fault_tolerance.max_rollbacks={self.max_rollbacks!r} is not an "
                       "integer >= 0; pass 0 to stop on divergence or e.g. 2 to roll back.")
    if (isinstance(self.rollback_lr_factor, bool)
        or not isinstance(self.rollback_lr_factor, (int, float))
        or not 0.0 < self.rollback_lr_factor < 1.0):
      raise ValueError(f"fault_tolerance.rollback_lr_factor={self.rollback_lr_factor!r} "
                       "is outside (0, 1); pass e.g. 0.5 to halve the learning rates.")


def make_hooks(config=None):
  """The hooks for `Trainer.train`, in the order they must run.

  The guard comes first: its DivergenceError ends training before any later hook
  runs, so a NaN is caught even in the loop a signal ends.
  The signal hook is returned un-installed; use it as a context manager.
  """
  config = config or FaultToleranceConfig()
  hooks = [DivergenceGuard(config.check_weights, config.max_rollbacks,
                           config.rollback_lr_factor)]
  if config.handle_signals:
    hooks.append(SignalHook())
  return hooks


# ------------------------------------------------------------------ signals


class SignalHook(hooks_lib.Hook):
  """Stops training after the current loop when SIGTERM or SIGINT arrives.

  The trainer then writes its final checkpoint at the current step (unless
  another hook vetoes it). A second signal restores its previous handler, so
  a third one acts as it would without this hook (e.g. Ctrl-C thrice kills).
  Install in the main thread (`with SignalHook() as hook:`).
  """

  def __init__(self, signals=(signal.SIGTERM, signal.SIGINT)):
    self.signals = tuple(signals)
    self.received = None  # the first signal number, once one arrived
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    # No logging here: a handler may run while the logging lock is held.
    if self.received is None:
      self.received = signum
    elif signum in self._previous:
      signal.signal(signum, self._previous.pop(signum))

  def install(self):
    for s in self.signals:
      self._previous[s] = signal.signal(s, self._handle)
    return self

  def uninstall(self):
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous = {}

  def __enter__(self):
    return self.install()

  def __exit__(self, *exc):
    self.uninstall()
    return False

  @property
  def signal_name(self):
    return signal.Signals(self.received).name if self.received else None

  def after_loop(self, trainer, step, metrics):
    del trainer, metrics
    if self.received is None:
      return Action.CONTINUE
    logging.warning("%s received: writing a checkpoint at step %d and stopping; run the "
                    "same command again to resume.", self.signal_name, step)
    return Action.STOP


# ------------------------------------------------------------------ divergence


def _float_variables(trainer):
  """(name, variable) for every float variable the checkpoint holds."""
  found, seen = [], set()
  groups = (("generator", trainer.generator), ("discriminator", trainer.discriminator),
            ("ema_generator", trainer.ema_generator), ("g_optimizer", trainer.g_optimizer),
            ("d_optimizer", trainer.d_optimizer))
  for owner, obj in groups:
    for v in obj.variables:
      if v.dtype.is_floating and id(v) not in seen:
        seen.add(id(v))
        found.append((f"{owner}:{v.name}", v))
  return found


class DivergenceGuard(hooks_lib.Hook):
  """Stops (or rolls back) a run whose losses or weights are no longer finite.

  Args:
    check_weights: also check every weight and optimizer slot, not only the losses.
    max_rollbacks: rollbacks allowed before giving up (0: raise at once).
    lr_factor: multiplies both learning rates at each rollback.
  """

  def __init__(self, check_weights=True, max_rollbacks=0, lr_factor=0.5):
    self.check_weights = check_weights
    self.max_rollbacks = int(max_rollbacks)
    self.lr_factor = float(lr_factor)
    self.rollbacks = []  # (step detected, step restored, problem)
    self._owner = None  # the trainer whose variables _finite_fn checks
    self._variables = None
    self._finite_fn = None
    self._skip_save_at = None

  def _nonfinite_variable(self, trainer):
    if self._finite_fn is None or self._owner is not trainer:
      self._owner = trainer
      self._variables = _float_variables(trainer)
      variables = [v for _, v in self._variables]

      @tf.function
      def finite_flags():
        # One flag per variable, one graph call for all of them.
        return tf.stack([tf.reduce_all(tf.math.is_finite(v)) for v in variables])
      self._finite_fn = finite_flags
    flags = self._finite_fn().numpy()
    bad = [name for (name, _), ok in zip(self._variables, flags) if not ok]
    if not bad:
      return None
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    return f"variable {bad[0]} holds NaN/Inf{more}"

  def problem(self, trainer, metrics):
    """A description of the first non-finite metric or variable, or None."""
    bad = [k for k, v in metrics.items() if not np.isfinite(v)]
    if bad:
      return ", ".join(f"{k}={metrics[k]}" for k in bad)
    if self.check_weights:
      return self._nonfinite_variable(trainer)
    return None

  def _diverged(self, trainer, step, problem):
    """Rolls back if allowed, else raises DivergenceError."""
    if len(self.rollbacks) < self.max_rollbacks and self._roll_back(trainer, step, problem):
      return
    raise DivergenceError(self._message(trainer, step, problem))

  def after_loop(self, trainer, step, metrics):
    self._skip_save_at = None  # only the save right after a rollback is skipped
    problem = self.problem(trainer, metrics)
    if problem is not None:
      self._diverged(trainer, step, problem)
    return Action.CONTINUE

  def before_save(self, trainer, step, metrics):
    if self._skip_save_at != step:
      problem = self.problem(trainer, metrics)
      if problem is None:
        return Action.SAVE
      self._diverged(trainer, step, problem)
    # Rolled back: the weights are an older step's, not worth saving under this one.
    return Action.SKIP_SAVE

  def _message(self, trainer, step, problem):
    path, good_step = checkpoints.newest_good_checkpoint(trainer.checkpoint_dir, quiet=True)
    kept = (f"the last good checkpoint {path} (step {good_step}) is kept"
            if path else "no checkpoint had been written yet")
    tried = f" after {len(self.rollbacks)} rollback(s)" if self.rollbacks else ""
    return (f"training diverged at step {step}{tried}: {problem}. Nothing non-finite was "
            f"saved; {kept}. Lower train.g_lr / train.d_lr, or set "
            "fault_tolerance.max_rollbacks = 2 to roll back and continue with the "
            "learning rates times fault_tolerance.rollback_lr_factor.")

  def _roll_back(self, trainer, step, problem):
    path, good_step = resume.agreed_checkpoint(trainer.checkpoint_dir, trainer.agreement,
                                               timeout_s=trainer.config.save_timeout_secs)
    if path is None:
      return False
    rates = {opt: float(opt.learning_rate.numpy()) * self.lr_factor
             for opt in (trainer.g_optimizer, trainer.d_optimizer)}
    trainer.checkpoint.restore(path).assert_existing_objects_matched()
    for opt, rate in rates.items():
      opt.learning_rate = rate  # after the restore, which brought back the old rates
    self.rollbacks.append((step, good_step, problem))
    self._skip_save_at = step
    logging.warning(
        "training diverged at step %d (%s); rollback %d of %d: restored %s (step %d), "
        "learning rates now G %.3g, D %.3g.", step, problem, len(self.rollbacks),
        self.max_rollbacks, path, good_step, rates[trainer.g_optimizer],
        rates[trainer.d_optimizer])
    return True
