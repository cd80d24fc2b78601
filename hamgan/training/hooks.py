"""Hooks: host-side callbacks the trainer runs between loops, with explicit actions.

After every loop the trainer asks each hook what to do (`after_loop` -> CONTINUE or
STOP) and, before every checkpoint, whether the save may happen (`before_save` ->
SAVE or SKIP_SAVE). Every hook is asked every time, in order, whatever the hooks
before it answered: a NaN guard must see the loop that a preemption signal ends, and
a signal must not be lost because the guard vetoed a save. A hook that raises (the
divergence guard's DivergenceError) ends training there.
"""
import enum


class Action(enum.Enum):
  CONTINUE = "continue"  # after_loop: keep training
  STOP = "stop"  # after_loop: write the final checkpoint (unless vetoed) and stop
  SAVE = "save"  # before_save: the checkpoint may be written
  SKIP_SAVE = "skip_save"  # before_save: do not write this checkpoint


class Hook:
  """Subclass and override what you need; the defaults change nothing."""

  def after_loop(self, trainer, step, metrics):
    """Called after every loop with the loop's mean metrics; returns an Action."""
    del trainer, step, metrics
    return Action.CONTINUE

  def before_save(self, trainer, step, metrics):
    """Called before a checkpoint is written; returns Action.SAVE or Action.SKIP_SAVE."""
    del trainer, step, metrics
    return Action.SAVE


def _answers(hooks, method, allowed, trainer, step, metrics):
  answers = []
  for hook in hooks:
    action = getattr(hook, method)(trainer, step, metrics)
    if action not in allowed:
      raise TypeError(f"{type(hook).__name__}.{method} returned {action!r}; return one of "
                      f"{', '.join(f'Action.{a.name}' for a in allowed)}.")
    answers.append(action)
  return answers


def should_stop(hooks, trainer, step, metrics):
  """Asks every hook after a loop; True when any of them said STOP."""
  answers = _answers(hooks, "after_loop", (Action.CONTINUE, Action.STOP), trainer, step,
                     metrics)
  return Action.STOP in answers


def may_save(hooks, trainer, step, metrics):
  """Asks every hook before a save; True when none of them said SKIP_SAVE."""
  answers = _answers(hooks, "before_save", (Action.SAVE, Action.SKIP_SAVE), trainer, step,
                     metrics)
  return Action.SKIP_SAVE not in answers
