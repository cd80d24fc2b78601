"""A training run's directory: its layout, its configs, its done mark and its result rows.

  model_dir/
    operative_config-<S>.gin   the config of the launch that started at step S (one per launch)
    operative_config.gin       a copy of the newest launch's, for people
    checkpoints/ckpt-N         full training state, the newest train.max_checkpoints
    milestones/ckpt-N          what scoring needs (G, EMA G, step) at every checkpoint_every
    train_log.jsonl            one row per logged step
    TRAINING_DONE              written when train.num_steps is reached
    eval/rows/*.json           one object per evaluation row (the record)
    eval/results.jsonl         every row, remade from eval/rows for people

Training, evaluation, sampling and hamgan-compare all read and write the run through
this module. Every file another process reads is written whole (`files.write_atomic`).
Nothing here imports TensorFlow; URLs (gs://) are read through tf.io.gfile.
"""
import hashlib
import json
import logging
import os
import re
import time

from hamgan import files
from hamgan import run_config

CHECKPOINT_DIR = "checkpoints"
MILESTONE_DIR = "milestones"
OPERATIVE_CONFIG = run_config.OPERATIVE_CONFIG
DONE_FILE = "TRAINING_DONE"
TRAIN_LOG = "train_log.jsonl"
EVAL_DIR = "eval"
ROWS_DIR = os.path.join(EVAL_DIR, "rows")
RESULTS = os.path.join(EVAL_DIR, "results.jsonl")
# Any one of these makes a directory a run directory.
RUN_MARKERS = (TRAIN_LOG, OPERATIVE_CONFIG, RESULTS, ROWS_DIR, CHECKPOINT_DIR, DONE_FILE)

# The settings that change a result row's numbers; equal keys mean "already evaluated".
KEY_FIELDS = ("step", "checkpoint_sha256", "config_sha256", "generator", "standing_batches",
              "batch_size", "classifier", "metric_set", "seed", "truncation", "num_samples",
              "real_dataset", "real_split", "real_data_dir", "real_num_samples",
              "real_key_sha256", "metrics_implementation")
# Configurables whose settings define the networks (plus every registered context module).
NETWORK_CONFIGURABLES = ("Generator", "Discriminator")

_LAUNCH_CONFIG = re.compile(r"^operative_config-(\d+)\.gin$")
_log = logging.getLogger("hamgan")


def path(model_dir, *names):
  return files.join(model_dir, *names)


# ---------------------------------------------------------------- the directory itself


def check_model_dir(model_dir, write=True):
  """Creates model_dir and proves it writable (`write`), or raises a ValueError.

  With write=False (non-chief tasks, dry runs) nothing is created: an existing
  model_dir must be a directory.
  """
  if not model_dir:
    raise ValueError("model_dir is empty; pass --model_dir=DIR (a local path or gs://...).")
  if files.exists(model_dir) and not files.isdir(model_dir):
    raise ValueError(f"model_dir {model_dir!r} is a file; pass a directory (it is created "
                     "if missing).")
  checkpoints = path(model_dir, CHECKPOINT_DIR)
  if files.exists(checkpoints) and not files.isdir(checkpoints):
    raise ValueError(f"{checkpoints} is a file, but hamgan-train keeps its checkpoints in a "
                     "directory of that name; move the file away or pass another --model_dir.")
  if not write:
    return
  probe = path(model_dir, f".write_probe-{os.getpid()}")
  try:
    files.makedirs(model_dir)
    files.write_bytes(probe, b"ok")
    files.remove(probe)
  except Exception as e:  # pylint: disable=broad-except  # OSError locally, OpError on URLs
    raise ValueError(f"model_dir {model_dir!r} is not writable ({type(e).__name__}: {e}); "
                     "pass a --model_dir you can create and write to.") from e


def is_done(model_dir):
  return files.exists(path(model_dir, DONE_FILE))


def write_done(model_dir, step):
  files.write_atomic(path(model_dir, DONE_FILE),
                     json.dumps({"step": int(step), "wall_time": time.time()}) + "\n")


def remove_stale_done(model_dir, step, num_steps):
  """Removes TRAINING_DONE left by an earlier, shorter run; True if it did."""
  done = path(model_dir, DONE_FILE)
  if step < num_steps and files.exists(done):
    files.remove(done)
    return True
  return False


# ---------------------------------------------------------------- configs, one per launch


def launch_config_name(start_step):
  return f"operative_config-{int(start_step)}.gin"


def write_launch_config(model_dir, start_step, text):
  """This launch's config as operative_config-<start_step>.gin and as the newest copy."""
  for name in (launch_config_name(start_step), OPERATIVE_CONFIG):
    files.write_atomic(path(model_dir, name), text)


def launch_configs(model_dir):
  """[(start step, path)] of every launch's config, oldest first."""
  found = []
  for name in files.listdir(model_dir):
    match = _LAUNCH_CONFIG.match(name)
    if match:
      found.append((int(match.group(1)), path(model_dir, name)))
  return sorted(found)


def config_for_step(model_dir, step=None):
  """The config that trained `step` (None: the newest launch's): the launch with the
  largest start step < step. A launch that starts at step S restores the checkpoint of
  step S that the launch before it wrote, so step S belongs to that earlier launch.

  A run written before per-launch configs were read has only operative_config.gin;
  that file is used then. None when the run has no config at all.
  """
  launches = launch_configs(model_dir)
  before = [p for start, p in launches if step is None or start < int(step)]
  if before:
    return before[-1]
  if launches:  # a checkpoint older than every launch config: the first launch trained it
    return launches[0][1]
  newest = path(model_dir, OPERATIVE_CONFIG)
  return newest if files.exists(newest) else None


def file_sha256(file_path):
  """sha256 (hex) of a file's bytes, or None if it does not exist."""
  if file_path is None or not files.exists(file_path):
    return None
  return hashlib.sha256(files.read_text(file_path).encode("utf-8")).hexdigest()


def config_value(model_dir, binding, step=None):
  """The literal string or number bound to `binding` (e.g. 'train.dataset') in the config
  that trained `step` (default: the newest), or None."""
  config = config_for_step(model_dir, step)
  if config is None:
    return None
  value = run_config.lookup(run_config.parse_bindings(files.read_text(config)), binding)
  if isinstance(value, (run_config.Reference, bool)):
    return None
  return value if isinstance(value, (str, int)) else None


def config_changes(old_text, new_text, network_names=()):
  """(network changes, other changes) between two configs, each a sorted list of
  'binding: old -> new' lines. Network bindings are those of Generator, Discriminator
  and the configurables named in `network_names` (the context modules)."""
  old, new = run_config.parse_bindings(old_text), run_config.parse_bindings(new_text)
  network = set(NETWORK_CONFIGURABLES) | set(network_names)
  changes = ([], [])
  for name in sorted(set(old) | set(new)):
    if old.get(name, "<unset>") == new.get(name, "<unset>"):
      continue
    configurable = name.split("/")[-1].rsplit(".", 1)[0].split(".")[-1]
    line = f"{name}: {old.get(name, '<unset>')!r} -> {new.get(name, '<unset>')!r}"
    changes[0 if configurable in network else 1].append(line)
  return changes


# ---------------------------------------------------------------- result rows


def row_key(row):
  """The tuple of KEY_FIELDS (missing fields, e.g. in old rows, count as None)."""
  return tuple(json.dumps(row.get(k), sort_keys=True) for k in KEY_FIELDS)


def _row_name(row):
  digest = hashlib.sha256(json.dumps(row_key(row)).encode()).hexdigest()[:24]
  return f"step-{int(row.get('step') or 0):010d}-{digest}.json"


def write_result(model_dir, row, replace=False):
  """Records `row` as its own object eval/rows/<step>-<key hash>.json; True if written.

  Any number of evaluators may write to one run at once (locally or on gs://, which
  cannot append or lock): each row is created whole under a name made from its key,
  so rows never overwrite one another; a row whose key is already there is kept unless
  `replace`. eval/results.jsonl is then remade from the rows.
  """
  target = path(model_dir, ROWS_DIR, _row_name(row))
  if files.exists(target) and not replace:
    return False
  files.makedirs(path(model_dir, ROWS_DIR))
  files.write_atomic(target, json.dumps(row, sort_keys=True) + "\n")
  _remake_results_jsonl(model_dir, full=replace)
  return True


def read_results(model_dir):
  """Every result row of the run, oldest first: eval/rows, plus rows of an older
  eval/results.jsonl that no row object holds (runs evaluated before eval/rows)."""
  rows = []
  for name in sorted(files.listdir(path(model_dir, ROWS_DIR))):
    if not name.endswith(".json"):
      continue
    try:
      rows.append(json.loads(files.read_text(path(model_dir, ROWS_DIR, name))))
    except (ValueError, OSError) as e:
      _log.warning("result row %s is unreadable (%s); skipped.", name, e)
  keys = {row_key(r) for r in rows}
  legacy = path(model_dir, RESULTS)
  if files.exists(legacy):
    rows += [r for r in files.read_jsonl(legacy) if row_key(r) not in keys]
  return sorted(rows, key=lambda r: (r.get("wall_time") or 0, r.get("step") or 0))


def _remake_results_jsonl(model_dir, full=False, attempts=3):
  """Rewrites eval/results.jsonl: its rows plus the row objects it lacks (all rows, when
  `full`: a replaced row); again if a row arrived meanwhile. Each write reads only the
  new row objects, so a run with many rows stays cheap to evaluate."""
  results = path(model_dir, RESULTS)
  for _ in range(attempts):
    names = {n for n in files.listdir(path(model_dir, ROWS_DIR)) if n.endswith(".json")}
    if full or not files.exists(results):
      rows = read_results(model_dir)
    else:
      rows = files.read_jsonl(results)
      present = {_row_name(r) for r in rows}
      for name in sorted(names - present):
        try:
          rows.append(json.loads(files.read_text(path(model_dir, ROWS_DIR, name))))
        except (ValueError, OSError) as e:
          _log.warning("result row %s is unreadable (%s); skipped.", name, e)
    files.write_atomic(results, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    arrived = {n for n in files.listdir(path(model_dir, ROWS_DIR)) if n.endswith(".json")}
    if arrived <= names:
      return
    full = False


# ---------------------------------------------------------------- configs into gin


def load_config(config_path):
  """Makes the run's config file gin's configuration (for rebuilding its networks).

  Registers the models' configurables (and the context modules) first; bindings of
  configurables that are not loaded here (`train`, `fault_tolerance`, a user's own)
  are skipped, since rebuilding the networks does not need them.

  Raises:
    ValueError: the file is missing or is not a gin config (names the file).
  """
  import gin  # pylint: disable=import-outside-toplevel
  import hamgan.models  # pylint: disable=import-outside-toplevel,unused-import
  if config_path is None or not files.exists(config_path):
    raise ValueError(
        f"{config_path} does not exist; expected the gin config that hamgan-train saves "
        "next to the checkpoints. Pass the model_dir of a training run.")
  gin.clear_config()
  try:
    with gin.unlock_config():
      gin.parse_config(files.read_text(config_path), skip_unknown=True)
  except Exception as e:  # pylint: disable=broad-except  # gin raises many kinds
    raise ValueError(
        f"{config_path} is not a readable gin config ({type(e).__name__}: "
        f"{str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}); it is written "
        "by hamgan-train: restore it from the run's per-launch operative_config-<step>.gin "
        "or retrain.") from e
