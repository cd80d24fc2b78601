"""A run directory read into a RunReport: settings, speed, parameters, FID/IS curves.

A run directory is the `model_dir` of a training run (docs/architecture.md):
`operative_config.gin` gives the settings (read with hamgan.run_config),
`train_log.jsonl` the speed, `eval/results.jsonl` the FID/IS rows written by
`hamgan-eval`, and the latest checkpoint the parameter counts. A missing file is a
warning and blank cells, never an error; a path that is no run directory is an error.

Every FID/IS curve is keyed by (metric name, protocol, generator variant), so numbers
measured under different evaluation protocols never share a column.
"""
import dataclasses
import logging
import math
import os
import re
import statistics

from hamgan import files
from hamgan import run_config
from hamgan import run_dir
from hamgan.compare import params

# RunReport field -> the gin binding it shows (the trainer's scope is `train`).
BINDINGS = {
    "g_context": "Generator.context",
    "d_context": "Discriminator.context",
    "batch_size": "train.batch_size",
    "num_steps": "train.num_steps",
}


_log = logging.getLogger("hamgan.compare")


@dataclasses.dataclass
class EvalColumn:
  """One results column: a metric of one generator variant under one protocol."""
  kind: str        # "FID" or "IS"
  metric: str      # the key in the results row's metrics dict
  protocol: str    # the protocol label
  generator: str = None   # "generator", "ema_generator" or None if the rows do not say
  variant: str = ""       # the rest of `row_variant`: standing statistics, truncation

  @property
  def setting(self):
    """Protocol and generator variant: what makes two numbers comparable."""
    return setting_label(self.protocol, self.generator, self.variant)

  @property
  def key(self):
    return f"{self.metric} [{self.setting}]"

  @property
  def header(self):
    better = "lower is better" if self.kind == "FID" else "higher is better"
    return f"best {self.kind}: {self.metric} ({better}) @ step; protocol: {self.setting}"


@dataclasses.dataclass
class RunReport:
  """Everything the comparison shows about one run."""
  name: str
  path: str
  g_context: object = None
  d_context: object = None
  batch_size: object = None
  num_steps: object = None
  last_step: object = None
  steps_per_sec: object = None
  g_params: object = None
  d_params: object = None
  # column key -> (EvalColumn, [(step, value)] sorted by step)
  curves: dict = dataclasses.field(default_factory=dict)
  warnings: list = dataclasses.field(default_factory=list)

  def points(self, column):
    """[(step, value)] of `column` in this run (empty if it has none)."""
    return self.curves.get(column.key, (column, []))[1]


def metric_kind(name):
  """'FID', 'IS' or None for a metric name in a results row.

  IS is TF-GAN's one-split score (`is50k`); the 10-split mean/std and KID are not
  table columns.
  """
  n = name.lower()
  if n.startswith("fid") and "std" not in n:
    return "FID"
  if re.fullmatch(r"is(\d+k?)?|inception_score", n):
    return "IS"
  return None


def protocol_label(row):
  """A short, stable label for the evaluation protocol of a results row."""
  proto = row.get("protocol")
  if isinstance(proto, dict):
    proto = ", ".join(f"{k}={proto[k]}" for k in sorted(proto))
  if proto:
    return str(proto)
  parts = []
  if row.get("num_samples") is not None:
    parts.append(f"{row['num_samples']} samples")
  if row.get("classifier"):
    parts.append(f"classifier {row['classifier']}")
  return ", ".join(parts) if parts else "unspecified protocol"


def setting_label(protocol, generator=None, variant=""):
  """'PROTOCOL; generator: G; VARIANT', the parts that are set: one number's setting."""
  parts = [protocol] + ([f"generator: {generator}"] if generator else [])
  return "; ".join(parts + ([variant] if variant else []))


def row_variant(row):
  """The settings of a row, beyond its protocol and generator, that change its numbers
  (standing statistics, truncation), as 'standing batches: 16; truncation: 0.5'."""
  parts = []
  if row.get("standing_batches") is not None:
    parts.append(f"standing batches: {row['standing_batches']}")
  if row.get("truncation") is not None:
    parts.append(f"truncation: {row['truncation']}")
  return "; ".join(parts)


def best_point(kind, points):
  """(step, value) of the best value (lowest FID, highest IS); ties: earliest step."""
  if not points:
    return None
  if kind == "FID":
    return min(points, key=lambda p: (p[1], p[0]))
  return min(points, key=lambda p: (-p[1], p[0]))


def _warn(report, message):
  report.warnings.append(message)
  _log.warning("%s", message)


def check_run_dir(path):
  """Raises ValueError unless `path` is a directory that holds a training run."""
  if not files.isdir(path):
    raise ValueError(f"{path!r} is not a directory; expected a run directory (a hamgan-train "
                     "--model_dir); pass the model_dir of a run.")
  if not any(files.exists(files.join(path, m)) for m in run_dir.RUN_MARKERS):
    raise ValueError(
        f"{path!r} is not a run directory: it has none of {', '.join(run_dir.RUN_MARKERS)}; "
        "pass the --model_dir given to hamgan-train.")


def read_run(path, name=None):
  """Reads one run directory into a RunReport; missing files become warnings."""
  check_run_dir(path)
  report = RunReport(name=name or os.path.basename(os.path.normpath(path)) or path, path=path)
  _read_settings(report, path)
  _read_speed(report, path)
  report.g_params, report.d_params = _read_params(report, path)
  _read_results(report, path)
  return report


def _read_settings(report, path):
  gin_path = run_dir.config_for_step(path)
  if gin_path is None:
    gin_path = files.join(path, run_config.OPERATIVE_CONFIG)
    _warn(report, f"{report.name}: {gin_path} is missing; context, batch and steps left blank.")
    return
  bindings = run_config.parse_bindings(files.read_text(gin_path))
  for field, binding in BINDINGS.items():
    setattr(report, field, run_config.lookup(bindings, binding))
  report.g_context = context_name(report.g_context)
  report.d_context = context_name(report.d_context)


def context_name(value):
  """'ham_nmf' for a context bound by name or by gin reference ('@ham_nmf',
  '@hamgan.contexts.ham_nmf', '@scope/ham_nmf()'); other values unchanged."""
  if isinstance(value, run_config.Reference) and value.startswith("@"):
    return re.split(r"[./]", value[1:].removesuffix("()"))[-1]
  return value


def _read_speed(report, path):
  log_path = files.join(path, run_dir.TRAIN_LOG)
  if not files.exists(log_path):
    _warn(report, f"{report.name}: {log_path} is missing; it/s and trained steps left blank.")
    return
  rows = files.read_jsonl(log_path)
  speeds = [float(r["steps_per_sec"]) for r in rows
            if isinstance(r.get("steps_per_sec"), (int, float))
            and math.isfinite(r["steps_per_sec"])]
  steps = [int(r["step"]) for r in rows if isinstance(r.get("step"), (int, float))]
  # The median, so that warm-up and compilation rows do not skew it.
  report.steps_per_sec = statistics.median(speeds) if speeds else None
  report.last_step = max(steps) if steps else None
  if not speeds:
    _warn(report, f"{report.name}: {log_path} has no steps_per_sec rows; it/s left blank.")


def _read_params(report, path):
  """(G, D) trainable parameter counts from the latest checkpoint, else (None, None)."""
  ckpt_dir = files.join(path, run_dir.CHECKPOINT_DIR)
  if not files.exists(ckpt_dir):
    _warn(report, f"{report.name}: {ckpt_dir} is missing; parameters left blank.")
    return None, None
  try:
    counts = params.params_from_checkpoint(ckpt_dir)
  except Exception as e:  # pylint: disable=broad-except
    # An unreadable checkpoint costs the parameter column only, never the report.
    _warn(report, f"{report.name}: could not read the checkpoint in {ckpt_dir} "
          f"({type(e).__name__}: {str(e)[:200]}); parameters left blank.")
    return None, None
  if counts is None:
    _warn(report, f"{report.name}: {ckpt_dir} holds no checkpoint; parameters left blank.")
    return None, None
  return counts


def _read_results(report, path):
  rows = run_dir.read_results(path)
  if not rows:
    _warn(report, f"{report.name}: no evaluation rows in {files.join(path, run_dir.EVAL_DIR)}"
          "; FID and IS left blank (run hamgan-eval on this model_dir).")
    return
  for row in rows:
    step, metrics = row.get("step"), row.get("metrics") or {}
    if not isinstance(step, (int, float)):
      continue
    proto = protocol_label(row)
    generator = row.get("generator")
    for metric, value in metrics.items():
      kind = metric_kind(metric)
      if kind is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        continue
      col = EvalColumn(kind, metric, proto, str(generator) if generator else None,
                       row_variant(row))
      report.curves.setdefault(col.key, (col, []))[1].append((int(step), float(value)))
  for _, points in report.curves.values():
    points.sort()


def _unique_names(paths):
  names = [os.path.basename(os.path.normpath(p)) or p for p in paths]
  out = []
  for p, n in zip(paths, names):
    if names.count(n) > 1:
      parent = os.path.basename(os.path.dirname(os.path.normpath(p)))
      n = f"{parent}/{n}" if parent else p
    out.append(n)
  return out


def read_runs(paths):
  """RunReports for a list of run directories (names made unique)."""
  if not paths:
    raise ValueError("no run directories given; expected one or more RUN_DIR arguments "
                     "(hamgan-compare RUN_DIR... --out=DIR).")
  for p in paths:
    check_run_dir(p)
  return [read_run(p, n) for p, n in zip(paths, _unique_names(paths))]


def columns_of(reports):
  """All results columns: by protocol and generator, FID before IS, then metric name."""
  cols = {}
  for r in reports:
    for key, (col, _) in r.curves.items():
      cols[key] = col
  return sorted(cols.values(),
                key=lambda c: (c.protocol, c.generator or "", c.variant, c.kind != "FID",
                               c.metric))
