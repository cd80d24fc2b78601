"""Starting a launch of a run: the checkpoint every task restores, and the config check.

* `agreed_checkpoint`: each task finds the newest checkpoint that reads back whole;
  the tasks then agree on one step (the oldest of their answers, repeated until all
  hold it), so every task restores the same state, at start and after a rollback.
  A task that cannot read the checkpoints (`checkpoints.StorageError`) stops them all.
* `check_config_change`: a resumed launch whose networks' settings differ from the
  previous launch's stops with the difference, unless the user allows it; other
  differences are printed and training goes on.
"""
import math

from absl import logging
import numpy as np

from hamgan import checkpoints
from hamgan import files
from hamgan import run_dir

_MAX_ROUNDS = 16


def agreed_checkpoint(directory, agreement, quiet=False, timeout_s=None):
  """(path, step) that every task restores (None, 0 for none), the same on all tasks.

  `timeout_s` bounds the wait for the other tasks (which may be retrying a slow read of
  a large checkpoint), instead of the strategy's shorter collective timeout.

  Raises:
    checkpoints.StorageError: this or another task could not read the checkpoints.
    ValueError: the tasks found no step they all could read within _MAX_ROUNDS.
  """
  bound = None
  for _ in range(_MAX_ROUNDS):
    error, path, step = None, None, 0
    try:
      path, step = checkpoints.newest_good_checkpoint(directory, quiet=quiet, at_most=bound)
    except checkpoints.StorageError as e:
      error = e
    steps = agreement.agree([math.nan if error else float(step)], timeout_s=timeout_s)[:, 0]
    if error is not None:
      raise error
    if not np.all(np.isfinite(steps)):
      raise checkpoints.StorageError(
          f"another worker could not read the checkpoints in {directory} (its log says "
          "why); every worker stops rather than restore different states. Check the "
          "storage and restart every worker with the same command.")
    agreed = int(steps.min())
    if np.all(steps == agreed):
      if agreement.num_tasks > 1 and bound is not None:
        logging.warning("workers agreed on step %d: the newest that every worker reads "
                        "back whole.", agreed)
      return path, step
    bound = agreed
  raise ValueError(f"the workers found no checkpoint in {directory} that all of them read "
                   f"back whole within {_MAX_ROUNDS} rounds; check that every worker "
                   "reads the same --model_dir.")


def check_config_change(model_dir, config_text, network_names, allow=False):
  """Compares this launch's config with the previous launch's, before training.

  Raises:
    ValueError: a network setting changed and `allow` is False (the message lists the
      changed bindings and names --allow_config_change).
  """
  previous = run_dir.config_for_step(model_dir)
  if previous is None:
    return
  network, other = run_dir.config_changes(files.read_text(previous), config_text,
                                          network_names)
  if other:
    logging.warning("this launch's config differs from %s (not in the networks):\n  %s",
                    previous, "\n  ".join(other))
  if not network:
    return
  listing = "\n  ".join(network)
  if not allow:
    raise ValueError(
        f"this launch changes the networks' settings from {previous}:\n  {listing}\n"
        "The checkpoint's weights would be evaluated and trained as another network. "
        "Restore the old bindings, train into a new --model_dir, or pass "
        "--allow_config_change if the change is meant (each step is still evaluated "
        "under the config of the launch that trained it).")
  logging.warning("--allow_config_change: the networks' settings change from %s:\n  %s",
                  previous, listing)
