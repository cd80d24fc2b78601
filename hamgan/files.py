"""Local or remote (gs://, any URL tf.io.gfile knows) files, TensorFlow only for URLs.

Local paths use plain Python; URLs go through tf.io.gfile, so that TensorFlow is
imported only when a bucket has to be read or written (hamgan-compare and the run
directory's readers work without it). `write_atomic` is the one way hamgan writes a
file that another process may read at the same moment.
"""
import json
import logging
import os
import uuid

_log = logging.getLogger("hamgan")


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


def listdir(path):
  """Names in the directory `path` ([] if it does not exist)."""
  if is_remote(path):
    gfile = _gfile()
    return [n.rstrip("/") for n in gfile.listdir(path)] if gfile.isdir(path) else []
  return os.listdir(path) if os.path.isdir(path) else []


def remove(path):
  if is_remote(path):
    _gfile().remove(path)
  else:
    os.remove(path)


def write_atomic(path, data):
  """Writes `data` (str or bytes) so that readers see the old file or the whole new one.

  Local: a uniquely named temporary file beside `path`, then os.replace, so two writers
  never share a temporary file. Object stores (gs://) create an object whole on close,
  so the object is written directly.
  """
  if isinstance(data, str):
    data = data.encode("utf-8")
  if is_remote(path):
    with _gfile().GFile(path, "wb") as f:
      f.write(data)
    return
  directory = os.path.dirname(path) or "."
  os.makedirs(directory, exist_ok=True)
  tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}-"
                     f"{uuid.uuid4().hex[:12]}")
  try:
    with open(tmp, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


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
