"""The files of a run besides checkpoints and summaries: the configs of each launch, DONE.

Only the chief task writes them (see hamgan.training.cluster). Every launch keeps
its own `operative_config-<step>.gin` (the step it started from), so a run that
was resumed with other settings shows which steps ran under which; the newest is
also `operative_config.gin`, the file evaluation rebuilds the generator from.
"""
import json
import os
import time

import gin
import tensorflow as tf

DONE_FILE = "TRAINING_DONE"
OPERATIVE_CONFIG = "operative_config.gin"


def check_model_dir(model_dir, write=True):
  """Creates model_dir and proves it writable (`write`), or raises a ValueError.

  Non-chief tasks pass write=False: they never write to the shared model_dir.
  """
  if not model_dir:
    raise ValueError("model_dir is empty; pass --model_dir=DIR (a local path or gs://...).")
  if not write:
    return
  probe = os.path.join(model_dir, ".write_probe")
  try:
    tf.io.gfile.makedirs(model_dir)
    with tf.io.gfile.GFile(probe, "w") as f:
      f.write("ok")
    tf.io.gfile.remove(probe)
  except (OSError, tf.errors.OpError) as e:
    raise ValueError(f"model_dir {model_dir!r} is not writable ({type(e).__name__}: {e}); "
                     "pass a --model_dir you can create and write to.") from e


def launch_config_name(start_step):
  return f"operative_config-{int(start_step)}.gin"


def write_operative_config(model_dir, start_step):
  """Writes this launch's operative config as operative_config-<step>.gin and as the latest."""
  text = gin.operative_config_str()
  for name in (launch_config_name(start_step), OPERATIVE_CONFIG):
    with tf.io.gfile.GFile(os.path.join(model_dir, name), "w") as f:
      f.write(text)


def done_path(model_dir):
  return os.path.join(model_dir, DONE_FILE)


def write_done(model_dir, step):
  with tf.io.gfile.GFile(done_path(model_dir), "w") as f:
    f.write(json.dumps({"step": int(step), "wall_time": time.time()}) + "\n")


def remove_stale_done(model_dir, step, num_steps):
  """Removes TRAINING_DONE left by an earlier, shorter run; True if it did."""
  path = done_path(model_dir)
  if step < num_steps and tf.io.gfile.exists(path):
    tf.io.gfile.remove(path)
    return True
  return False
