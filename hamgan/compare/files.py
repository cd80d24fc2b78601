"""Local or remote (gs://, any URL tf.io.gfile knows) paths for hamgan-compare.

Local paths are read with plain Python; URLs through tf.io.gfile, so that TensorFlow
is imported only when a bucket has to be read or written.
"""
import json
import logging
import os

_log = logging.getLogger("hamgan.compare")


def is_remote(path):
  return "://" in path


def _gfile():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.io.gfile


def exists(path):
  return _gfile().exists(path) if is_remote(path) else os.path.exists(path)


def isdir(path):
  return _gfile().isdir(path) if is_remote(path) else os.path.isdir(path)


def join(*parts):
  if is_remote(parts[0]):
    return "/".join(p.rstrip("/") for p in parts)
  return os.path.join(*parts)


def makedirs(path):
  if is_remote(path):
    _gfile().makedirs(path)
  else:
    os.makedirs(path, exist_ok=True)


def read_text(path):
  if is_remote(path):
    with _gfile().GFile(path, "r") as f:
      return f.read()
  with open(path, encoding="utf-8") as f:
    return f.read()


def write_bytes(path, data):
  if is_remote(path):
    with _gfile().GFile(path, "wb") as f:
      f.write(data)
  else:
    with open(path, "wb") as f:
      f.write(data)


def read_jsonl(path):
  """Rows of a JSON-lines file; a torn last line (a writer mid-append) is skipped."""
  rows = []
  lines = read_text(path).splitlines()
  for i, line in enumerate(lines):
    line = line.strip()
    if not line:
      continue
    try:
      rows.append(json.loads(line))
    except json.JSONDecodeError as e:
      if i == len(lines) - 1:
        _log.warning("%s: ignoring an incomplete last line (%s)", path, e)
      else:
        raise ValueError(f"{path}, line {i + 1}: not valid JSON ({e}); expected one JSON "
                         "object per line; fix or remove that line.") from e
  return rows
