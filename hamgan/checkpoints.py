"""A run's checkpoints: where they live, which one to use, and whether one is whole.

hamgan-train writes `model_dir/checkpoints/ckpt-N` with tf.train.CheckpointManager
(keys generator, discriminator, ema_generator, g_optimizer, d_optimizer, step, rng).
Training (restore, rollback) and evaluation (which checkpoints to score, whether a
failed restore was a damaged file) both read the directory through this module, so
the layout and the health check exist once.
"""
import os
import re

from absl import logging
import numpy as np
import tensorflow as tf

CHECKPOINT_DIR = "checkpoints"
STEP_KEY = "step/.ATTRIBUTES/VARIABLE_VALUE"


def checkpoint_dir(model_dir):
  """model_dir/checkpoints."""
  return os.path.join(model_dir, CHECKPOINT_DIR)


def _number(path):
  """ckpt-N's N, or -1."""
  match = re.search(r"-(\d+)$", path)
  return int(match.group(1)) if match else -1


def checkpoint_step(path):
  """The training step stored in the checkpoint (its `step` variable), else ckpt-N's N."""
  try:
    return int(tf.train.load_checkpoint(path).get_tensor(STEP_KEY))
  except (tf.errors.NotFoundError, ValueError):
    return _number(path)


def list_checkpoints(model_dir):
  """[(step, path)] of every checkpoint the state file lists and whose index exists."""
  state = tf.train.get_checkpoint_state(checkpoint_dir(model_dir))
  paths = list(state.all_model_checkpoint_paths) if state else []
  # get_checkpoint_state already joined relative entries to the directory.
  return sorted((checkpoint_step(p), p) for p in paths if tf.io.gfile.exists(p + ".index"))


def find_checkpoint(model_dir, checkpoint=None):
  """A checkpoint path: the latest, or `checkpoint` given as a path, 'ckpt-N' or a step.

  Raises:
    ValueError: no checkpoint at all, or none matching `checkpoint`.
  """
  found = list_checkpoints(model_dir)
  directory = checkpoint_dir(model_dir)
  if checkpoint is None:
    if not found:
      raise ValueError(
          f"no checkpoint in {directory}; expected ckpt-N files written by hamgan-train. "
          "Train first, or pass the right --model_dir.")
    return found[-1][1]
  text = str(checkpoint)
  for candidate in (text, os.path.join(directory, text)):
    if tf.io.gfile.exists(candidate + ".index"):
      return candidate
  for step, path in found:
    if text.isdigit() and int(text) == step:
      return path
  raise ValueError(
      f"checkpoint={text!r} is neither a checkpoint path, a name in {directory} nor a "
      f"step of one; available steps: {[s for s, _ in found] or 'none'}.")


def checkpoint_problem(path, require_finite=True):
  """Why the checkpoint at `path` (a ckpt-N prefix) cannot be used, or None.

  Reads every tensor back: a truncated data file, a missing shard or index, or
  (with `require_finite`) non-finite float values, which training never saves,
  make it unusable.
  """
  try:
    reader = tf.train.load_checkpoint(path)
    for name, dtype in sorted(reader.get_variable_to_dtype_map().items()):
      value = reader.get_tensor(name)
      if require_finite and dtype.is_floating and not np.all(np.isfinite(value)):
        return f"{name} holds NaN/Inf"
  except (tf.errors.OpError, ValueError, OSError, IndexError) as e:
    # A truncated data file surfaces as IndexError("Read less bytes than requested").
    first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {first_line[:200]}"
  return None


def _candidates(directory):
  """Checkpoint prefixes, newest first: the state file's list, or ckpt-N.index files."""
  paths = []
  try:
    state = tf.train.get_checkpoint_state(directory)
  except (tf.errors.OpError, ValueError) as e:  # a damaged `checkpoint` state file
    logging.warning("checkpoint state in %s is unreadable (%s); looking at the files.",
                    directory, e)
    state = None
  if state is not None:
    paths = list(state.all_model_checkpoint_paths)
    if state.model_checkpoint_path and state.model_checkpoint_path not in paths:
      paths.append(state.model_checkpoint_path)
  elif tf.io.gfile.isdir(directory):
    paths = [p[:-len(".index")] for p in
             tf.io.gfile.glob(os.path.join(directory, "ckpt-*.index"))]
  return sorted(set(paths), key=_number, reverse=True)


def newest_good_checkpoint(directory, quiet=False):
  """(path, step) of the newest usable checkpoint in `directory`, or (None, 0).

  Unusable ones are skipped with a warning naming each and why; nothing is
  deleted (the trainer later overwrites a damaged ckpt-N when it saves step N
  again, and CheckpointManager's retention removes old ones as usual).
  """
  skipped = []
  for path in _candidates(directory):
    problem = checkpoint_problem(path)
    if problem is not None:
      skipped.append(path)
      if not quiet:
        logging.warning("checkpoint %s is unusable (%s); skipped, left on disk.", path,
                        problem)
      continue
    step = int(tf.train.load_checkpoint(path).get_tensor(STEP_KEY))
    if skipped and not quiet:
      logging.warning("using checkpoint %s (step %d) instead of the newer %s.", path, step,
                      ", ".join(os.path.basename(p) for p in skipped))
    return path, step
  if skipped and not quiet:
    logging.warning("no usable checkpoint in %s (skipped %s); starting from step 0.",
                    directory, ", ".join(os.path.basename(p) for p in skipped))
  return None, 0
