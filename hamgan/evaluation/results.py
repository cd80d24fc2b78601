"""eval/results.jsonl: one JSON row per evaluation, and the key that says "already done".

The key of a row is every setting that changes one of its numbers: the checkpoint's
step and content fingerprint, the generator variant and its standing statistics, the
classifier, the metrics asked for, the seed and truncation of z, the generated count,
the real side (data set, split, data_dir, count asked and used) and the metrics'
implementation. A row whose key matches is skipped; anything else adds a row, so `--kid`
after a plain evaluation, or a checkpoint rewritten at the same path, is evaluated.
"""
import hashlib
import json
import os

import tensorflow as tf

RESULTS = os.path.join("eval", "results.jsonl")

KEY_FIELDS = ("step", "checkpoint_sha256", "generator", "standing_batches", "classifier",
              "metric_set", "seed", "truncation", "num_samples", "real_dataset",
              "real_split", "real_data_dir", "real_num_samples",
              "real_key_sha256", "metrics_implementation")


def row_key(row):
  """The tuple of KEY_FIELDS (missing fields, e.g. in old rows, count as None)."""
  return tuple(json.dumps(row.get(k), sort_keys=True) for k in KEY_FIELDS)


def checkpoint_fingerprint(path):
  """sha256 (16 hex digits) of the checkpoint's .index file.

  The index holds every tensor's offset, size and crc32c, so a checkpoint rewritten
  with other values at the same path gets another fingerprint without reading the data.
  """
  with tf.io.gfile.GFile(path + ".index", "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()[:16]


def read_results(model_dir):
  """All rows of model_dir/eval/results.jsonl (an empty list if there is none)."""
  path = os.path.join(model_dir, RESULTS)
  if not tf.io.gfile.exists(path):
    return []
  with tf.io.gfile.GFile(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def write_result(model_dir, row, replace=False):
  """Adds `row`; with `replace`, rows with the same key go first.

  The file is rewritten whole and renamed into place: atomic on a local disk, and it
  works on gs:// too, where files cannot be appended to.
  """
  path = os.path.join(model_dir, RESULTS)
  tf.io.gfile.makedirs(os.path.dirname(path))
  rows = read_results(model_dir)
  if replace:
    rows = [r for r in rows if row_key(r) != row_key(row)]
  rows.append(row)
  tmp = path + ".tmp"
  with tf.io.gfile.GFile(tmp, "w") as f:
    f.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
  tf.io.gfile.rename(tmp, path, overwrite=True)
