"""Where a tool may write: checked before any work, so that no input is ever overwritten.

Every path a user names for output (hamgan-eval --out and --export_stats, hamgan-sample
--out, hamgan-compare --out) goes through `check_file` or `check_folder` first:

* never an input: an output file may not be an input file (compared as real files:
  symbolic and hard links to an input count as the input), nor lie inside an input
  folder, nor be such a folder;
* the right kind: a file where a folder exists (or the reverse) is refused, not written
  over or half-created;
* reachable: the nearest existing folder above it must be a writable folder.

Each refusal is a ValueError naming the flag, the path, what was expected and the fix.
Paths with a scheme (gs://) are compared as written and checked through tf.io.gfile.
"""
import os

from hamgan import files


def _same_file(a, b):
  if files.is_remote(a) or files.is_remote(b):
    return a.rstrip("/") == b.rstrip("/")
  try:
    return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)
  except OSError:
    return False


def _within(path, folder):
  """True when `path` is `folder` or lies inside it (real paths; URLs as written)."""
  if files.is_remote(path) or files.is_remote(folder):
    path, folder = path.rstrip("/"), folder.rstrip("/")
    return path == folder or path.startswith(folder + "/")
  real, top = os.path.realpath(path), os.path.realpath(folder)
  return real == top or os.path.commonpath([real, top]) == top


def _named(name, source):
  return f"{name}={source!r}" if name.startswith("--") else f"{name} {source!r}"


def _check_not_input(flag, path, inputs):
  for name, source in inputs.items():
    if not source:
      continue
    if files.isdir(source) and _within(path, source):
      raise ValueError(
          f"{flag}={path!r} lies in {_named(name, source)}, a folder this command reads: "
          f"writing there would change its input. Pass a {flag} outside that folder.")
    if _same_file(path, source):
      raise ValueError(
          f"{flag}={path!r} is the same file as {_named(name, source)}: writing it would "
          f"destroy the input. Pass another file name for {flag}.")


def _check_reachable(flag, path):
  """The nearest existing folder above `path` must be a writable folder (local paths)."""
  if files.is_remote(path):
    return
  above = os.path.dirname(os.path.abspath(path))
  while not os.path.exists(above):
    above = os.path.dirname(above)
  if not os.path.isdir(above):
    raise ValueError(f"{flag}={path!r} cannot be created: {above!r} is a file, not a "
                     "folder. Pass a path under a folder.")
  if not os.access(above, os.W_OK | os.X_OK):
    raise ValueError(f"{flag}={path!r} cannot be written: the folder {above!r} is not "
                     "writable. Pass a path in a folder you can write to.")


def check_file(flag, path, inputs=None, suffix=None):
  """Refuses an output file that is an input, a folder, unreachable, or lacks `suffix`.

  `inputs` maps flag names ("--images") or descriptions to the files or folders the
  same command reads.
  """
  if not path:
    raise ValueError(f"{flag} is empty; pass a file name.")
  _check_not_input(flag, path, inputs or {})
  if files.isdir(path):
    raise ValueError(f"{flag}={path!r} is a folder, but a file goes there; pass a file "
                     f"name (e.g. {files.join(path, 'out' + (suffix or ''))!r}).")
  if suffix and not path.endswith(suffix):
    raise ValueError(f"{flag}={path!r} does not end in {suffix}; pass a file name ending "
                     f"in {suffix}.")
  _check_reachable(flag, path)
  return path


def check_folder(flag, path, inputs=None, names=(), what="the output files"):
  """Refuses an output folder that is a file, inside an input folder, or unreachable.

  `names` are the files the command writes into the folder: none may be a folder.
  """
  if not path:
    raise ValueError(f"{flag} is empty; pass a folder.")
  _check_not_input(flag, path, inputs or {})
  if files.exists(path) and not files.isdir(path):
    raise ValueError(f"{flag}={path!r} is an existing file, but {what} go into a folder "
                     "there; pass a folder (created if missing), or move the file away.")
  for name in names:
    inner = files.join(path, name)
    if files.isdir(inner):
      raise ValueError(f"{flag}={path!r} holds a folder {name!r} where the file {name} "
                       "is written; pass another folder, or move that one away.")
  _check_reachable(flag, path)
  return path
