"""A run's checkpoints: which exist, which one to use, and whether one is damaged.

hamgan-train writes full training state to `checkpoints/ckpt-N` (tf.train.CheckpointManager,
the newest train.max_checkpoints; keys generator, discriminator, ema_generator,
g_optimizer, d_optimizer, step, rng) and, at every train.checkpoint_every, an evaluation
snapshot to `milestones/ckpt-N` (generator, ema_generator, step) that is never deleted.

Damaged is not the same as unreadable now. Only evidence of damage (DataLoss, a
missing or truncated file, a short read, a non-finite value) makes a checkpoint
unusable. Any other error (a storage hiccup: Unavailable, DeadlineExceeded, the
FailedPrecondition of a failed GCS request) is retried for up to `RETRY_SECONDS` and
then raised as `StorageError`: a run never falls back to an older state silently.
"""
import hashlib
import os
import re
import time

from absl import logging
import numpy as np
import tensorflow as tf

from hamgan import run_dir

STEP_KEY = "step/.ATTRIBUTES/VARIABLE_VALUE"
RETRY_SECONDS = 120.0  # how long an unreadable checkpoint is retried before giving up
_FIRST_RETRY_SECONDS = 1.0


class StorageError(RuntimeError):
  """A checkpoint could not be read for a reason that is not damage, even after retries."""


_DAMAGE_CODES = (tf.errors.DATA_LOSS, tf.errors.NOT_FOUND, tf.errors.OUT_OF_RANGE)


def is_damage(error):
  """True for errors that prove a checkpoint damaged: a bad crc or proto (DataLoss), a
  missing index or shard (NotFound, also as a bare OpError with that code), a truncated
  file (OutOfRange, or IndexError "Read less bytes than requested"), a wrong value."""
  if isinstance(error, tf.errors.OpError):
    return error.error_code in _DAMAGE_CODES
  return isinstance(error, (IndexError, ValueError))


def checkpoint_dir(model_dir):
  """model_dir/checkpoints."""
  return os.path.join(model_dir, run_dir.CHECKPOINT_DIR)


def milestone_dir(model_dir):
  """model_dir/milestones."""
  return os.path.join(model_dir, run_dir.MILESTONE_DIR)


def _number(path):
  """ckpt-N's N, or -1."""
  match = re.search(r"-(\d+)$", path)
  return int(match.group(1)) if match else -1


def with_retries(read, what, retry_seconds=None):
  """read() with retries: damage errors pass through at once, any other OpError or
  OSError is retried with backoff for up to `retry_seconds`, then StorageError."""
  budget = RETRY_SECONDS if retry_seconds is None else retry_seconds
  deadline, wait, tries = time.monotonic() + budget, _FIRST_RETRY_SECONDS, 0
  while True:
    try:
      return read()
    except (tf.errors.OpError, OSError, IndexError, ValueError) as e:
      if is_damage(e):
        raise
      tries += 1
      left = deadline - time.monotonic()
      if left <= 0:
        raise StorageError(
            f"could not read {what} after {tries} tries over {budget:.0f} s "
            f"({type(e).__name__}: {_first_line(e)}). This is no sign of damage, so no "
            "older checkpoint is used instead; check the storage (permissions, network, "
            "bucket) and run the same command again.") from e
      logging.warning("reading %s failed (%s: %s); retrying in %.0f s.", what,
                      type(e).__name__, _first_line(e), min(wait, left))
      time.sleep(min(wait, left))
      wait = min(wait * 2, 30.0)


def _first_line(error):
  text = str(error).strip()
  return text.splitlines()[0][:200] if text else ""


def checkpoint_step(path):
  """The training step stored in the checkpoint (its `step` variable), else ckpt-N's N."""
  try:
    return int(with_retries(lambda: tf.train.load_checkpoint(path).get_tensor(STEP_KEY),
                            path))
  except (tf.errors.OpError, IndexError, ValueError) as e:
    if not is_damage(e):
      raise
    return _number(path)


def _listed(directory):
  """Checkpoint prefixes in `directory` whose .index exists (a half-written one has none)."""
  pattern = os.path.join(directory, "ckpt-*.index")
  found = with_retries(lambda: tf.io.gfile.glob(pattern), pattern)
  return [p[:-len(".index")] for p in found]


def list_checkpoints(model_dir):
  """[(step, path)] of the full checkpoints, oldest first (found by listing, so a damaged
  `checkpoint` state file hides none)."""
  return sorted((_number(p), p) for p in _listed(checkpoint_dir(model_dir)))


def list_milestones(model_dir):
  """[(step, path)] of the evaluation snapshots, oldest first."""
  return sorted((_number(p), p) for p in _listed(milestone_dir(model_dir)))


def list_evaluable(model_dir):
  """[(step, path)], one per step: every milestone, plus full checkpoints at other steps
  (time-based saves, the last step of a run without milestones)."""
  by_step = dict(list_checkpoints(model_dir))
  by_step.update(dict(list_milestones(model_dir)))  # a milestone wins: it is kept for good
  return sorted(by_step.items())


def find_checkpoint(model_dir, checkpoint=None):
  """A checkpoint path: the latest, or `checkpoint` given as a path, 'ckpt-N' or a step.

  Raises:
    ValueError: no checkpoint at all, or none matching `checkpoint`.
  """
  found = list_evaluable(model_dir)
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


def fingerprint(path):
  """sha256 (16 hex digits) of the checkpoint's .index file, which holds every tensor's
  offset, size and crc32c: a checkpoint rewritten with other values gets another one."""
  def read():
    with tf.io.gfile.GFile(path + ".index", "rb") as f:
      return f.read()
  return hashlib.sha256(with_retries(read, path + ".index")).hexdigest()[:16]


def _check_files(path):
  """Raises NotFoundError (damage) unless the index and every data shard exist: a missing
  local shard otherwise surfaces as an UNKNOWN error, which is not proof of damage."""
  shards = tf.io.gfile.glob(path + ".data-?????-of-?????")
  expected = {int(name[-5:]) for name in shards}
  if not tf.io.gfile.exists(path + ".index") or not shards or len(shards) != max(expected):
    raise tf.errors.NotFoundError(
        None, None, f"{path}: index or data shards missing ({len(shards)} data file(s))")


def checkpoint_problem(path, require_finite=True, retry_seconds=None):
  """Why the checkpoint at `path` (a ckpt-N prefix) is damaged, or None if it reads back
  whole (and, with `require_finite`, finite). Raises StorageError when it cannot be read
  for another reason, after retries."""
  def read_all():
    _check_files(path)
    reader = tf.train.load_checkpoint(path)
    for name, dtype in sorted(reader.get_variable_to_dtype_map().items()):
      value = reader.get_tensor(name)
      if require_finite and dtype.is_floating and not np.all(np.isfinite(value)):
        return f"{name} holds NaN/Inf"
    return None
  try:
    return with_retries(read_all, path, retry_seconds)
  except (tf.errors.OpError, IndexError, ValueError) as e:
    if not is_damage(e):
      raise
    return f"{type(e).__name__}: {_first_line(e)}"


def newest_good_checkpoint(directory, quiet=False, at_most=None):
  """(path, step) of the newest checkpoint in `directory` (of a step <= `at_most`, when
  given) that reads back whole, or (None, 0).

  Damaged ones are skipped with a warning naming each and why; nothing is deleted.
  StorageError (from checkpoint_problem) propagates: an unreadable checkpoint is no
  reason to use an older one.
  """
  candidates = sorted(_listed(directory), key=_number, reverse=True)
  if at_most is not None:
    candidates = [p for p in candidates if _number(p) <= at_most]
  skipped = []
  for path in candidates:
    problem = checkpoint_problem(path)
    if problem is None:
      if skipped and not quiet:
        logging.warning("using checkpoint %s instead of the newer, damaged %s.", path,
                        ", ".join(os.path.basename(p) for p in skipped))
      return path, checkpoint_step(path)
    skipped.append(path)
    if not quiet:
      logging.warning("checkpoint %s is damaged (%s); skipped, left on disk.", path, problem)
  if skipped and not quiet:
    logging.warning("no usable checkpoint in %s (all damaged: %s); starting from step 0.",
                    directory, ", ".join(os.path.basename(p) for p in skipped))
  return None, 0
