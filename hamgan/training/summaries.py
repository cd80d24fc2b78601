"""What a run writes besides checkpoints: TensorBoard scalars, sample grids, the train log.

Kept apart from the train step so that the step stays a pure TensorFlow
function and all host-side I/O (PNG files, JSON lines, TensorBoard) lives here.
Paths may be local or gs:// (everything goes through tf.io.gfile).
"""
import json
import os

import numpy as np
import tensorflow as tf

from hamgan import files
from hamgan import run_dir
from hamgan import images as image_io

MAX_GRID_ROWS = 10


def grid_classes(num_classes, max_rows=MAX_GRID_ROWS):
  """Class ids for the rows of a sample grid: all classes, or `max_rows` spread evenly."""
  if num_classes <= max_rows:
    return list(range(num_classes))
  return [int(c) for c in np.linspace(0, num_classes - 1, max_rows).round()]


def grid_inputs(classes, columns, z_dim, seed=0):
  """Fixed latents and labels for a grid: row r holds `columns` samples of classes[r].

  The latents depend only on the seed, so grids written at different steps are
  comparable sample by sample.
  """
  rng = np.random.RandomState(seed)
  z = rng.standard_normal((len(classes) * columns, z_dim)).astype(np.float32)
  y = np.repeat(np.asarray(classes, np.int32), columns)
  return z, y


def make_grid(images, rows, columns):
  """Tiles images (rows*columns, S, S, 3) in [-1, 1] into one uint8 (rows*S, columns*S, 3)."""
  n = len(images)
  if n != rows * columns:
    raise ValueError(f"make_grid got {n} images for a {rows}x{columns} grid; pass exactly "
                     f"{rows * columns}.")
  return image_io.grid(image_io.to_uint8(images), rows)


write_png = image_io.write_png  # uint8 (H, W, 3) -> PNG file, local or gs://


def context_scalars(models):
  """Summary scalars of the context modules: every residual scale, a Hamburger's ham error.

  `models` maps a prefix ("generator", ...) to a model with a `context_layer`
  attribute (the placed context module or None).
  """
  scalars = {}
  for prefix, model in models.items():
    layer = getattr(model, "context_layer", None)
    if layer is None:
      continue
    scale = getattr(layer, "residual_scale", None)
    if scale is not None:
      scalars[f"context/{prefix}_residual_scale"] = float(tf.convert_to_tensor(scale))
    error = getattr(layer, "last_relative_error", None)
    if error is not None:
      scalars[f"context/{prefix}_ham_relative_error"] = float(tf.convert_to_tensor(error))
  return scalars


class RunWriter:
  """Writes TensorBoard summaries, PNG sample grids and train_log.jsonl under model_dir."""

  def __init__(self, model_dir, resume_step=None):
    self.model_dir = model_dir
    self.log_path = os.path.join(model_dir, run_dir.TRAIN_LOG)
    self._writer = tf.summary.create_file_writer(os.path.join(model_dir, "summaries"))
    if resume_step is not None:
      self._forget_rows_after(resume_step)

  def _forget_rows_after(self, step):
    """Drops log rows past the restored step (a killed launch logged steps it never
    saved; this launch logs them again), so every step is logged once."""
    if not files.exists(self.log_path):
      return
    rows = files.read_jsonl(self.log_path)
    kept = [r for r in rows if not isinstance(r.get("step"), (int, float)) or r["step"] <= step]
    if len(kept) < len(rows):
      files.write_atomic(self.log_path, "".join(json.dumps(r, sort_keys=True) + "\n"
                                                for r in kept))

  def scalars(self, step, values):
    with self._writer.as_default():
      for name, value in values.items():
        tf.summary.scalar(name, value, step=step)
    self._writer.flush()

  def grid(self, step, grid):
    """Writes the grid to TensorBoard and to samples/step_N.png; returns the PNG path."""
    with self._writer.as_default():
      tf.summary.image("samples", grid[None], step=step)
    self._writer.flush()
    path = os.path.join(self.model_dir, "samples", f"step_{step}.png")
    write_png(path, grid)
    return path

  def log_row(self, row):
    """Appends one JSON row to train_log.jsonl."""
    line = json.dumps(row, sort_keys=True) + "\n"
    if "://" not in self.log_path:
      # A local append: a kill mid-write can cost this line, never the earlier ones.
      with open(self.log_path, "a") as f:
        f.write(line)
      return
    # Object stores (gs://) cannot append: write the extended file beside the old one
    # and rename it into place, so the old log is never truncated first.
    old = ""
    if tf.io.gfile.exists(self.log_path):
      with tf.io.gfile.GFile(self.log_path, "r") as f:
        old = f.read()
    tmp = self.log_path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
      f.write(old + line)
    tf.io.gfile.rename(tmp, self.log_path, overwrite=True)

  def close(self):
    self._writer.close()
