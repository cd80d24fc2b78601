"""Reads finished (or running) run directories and writes the comparison report.

`hamgan-compare` is a thin command line over this module. A run directory is the
`model_dir` of a training run (docs/architecture.md): `train_log.jsonl` gives the
speed, `operative_config.gin` the settings, `eval/results.jsonl` the FID/IS rows
written by `hamgan-eval`, and `model_summary.json` (or, failing that, the latest
checkpoint) the parameter counts.

Numbers measured under different evaluation protocols are never put in one column:
every FID/IS column is keyed by (metric name, protocol, generator variant) and its
header names all three. The paper's figures go in a separate table, labelled as quoted.

Local paths are read with plain Python; `gs://` paths through `tf.io.gfile`, so that
TensorFlow is imported only when a bucket (or a checkpoint) has to be read.
"""
import ast
import dataclasses
import io
import json
import logging
import math
import os
import re
import statistics

# The gin bindings read from operative_config.gin, one place to change if the trainer
# names them differently. Each entry lists candidate names, first match wins; a
# binding matches a candidate if it equals it or ends with "." + candidate (gin may
# write the module path in front of the configurable's name).
GIN_BINDINGS = {
    "g_context": ("Generator.context",),
    "d_context": ("Discriminator.context",),
    "batch_size": ("train.batch_size", "Trainer.batch_size", "train.global_batch_size"),
    "num_steps": ("train.num_steps", "Trainer.num_steps", "train.steps"),
}

TRAIN_LOG = "train_log.jsonl"
GIN_FILE = "operative_config.gin"
EVAL_RESULTS = os.path.join("eval", "results.jsonl")
MODEL_SUMMARY = "model_summary.json"
CHECKPOINT_DIR = "checkpoints"
# Any one of these makes a directory a run directory.
_RUN_MARKERS = (TRAIN_LOG, GIN_FILE, EVAL_RESULTS, MODEL_SUMMARY, CHECKPOINT_DIR,
                "TRAINING_DONE")

# Quoted from Geng et al., ICLR 2021, section 3.5 (rows marked * there are themselves
# cited from other papers). Not measured by hamgan.
PAPER_PROTOCOL = ("FID, ImageNet 128x128, 50k generated samples, TF-GAN Inception "
                  "(as reported in the paper; HamGAN-strong is the best of 6 runs)")
PAPER_ROWS = (
    dict(model="SNGAN-projection", g_context="none", d_context="none", fid=27.62),
    dict(model="SAGAN", g_context="sagan", d_context="sagan", fid=18.28),
    dict(model="HamGAN-baby", g_context="ham_nmf", d_context="ham_nmf", fid=16.05),
    dict(model="YLG", g_context="ylg", d_context="ylg", fid=15.94),
    dict(model="HamGAN-strong", g_context="ham_nmf", d_context="ham_nmf", fid=14.77),
)
# Paper speeds (TPU v3, mean over 1000 iterations): no context / Hamburger / YLG.
PAPER_SPEED = "1.65 it/s without a context module, 1.54 with Hamburger, 1.31 with YLG"

_log = logging.getLogger("hamgan.reporting")


# ----------------------------------------------------------------------------- files

def _is_remote(path):
  return "://" in path


def _gfile():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.io.gfile


def _exists(path):
  return _gfile().exists(path) if _is_remote(path) else os.path.exists(path)


def _isdir(path):
  return _gfile().isdir(path) if _is_remote(path) else os.path.isdir(path)


def _read_text(path):
  if _is_remote(path):
    with _gfile().GFile(path, "r") as f:
      return f.read()
  with open(path, encoding="utf-8") as f:
    return f.read()


def _join(*parts):
  return "/".join(p.rstrip("/") for p in parts) if _is_remote(parts[0]) else os.path.join(*parts)


def read_jsonl(path):
  """Rows of a JSON-lines file; a torn last line (a writer mid-append) is skipped."""
  rows = []
  lines = _read_text(path).splitlines()
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


# ----------------------------------------------------------------------------- gin

def parse_gin_bindings(text):
  """`name.param = value` lines of a gin file as a dict of Python values.

  Values continue over lines while brackets are open. Literals become Python values;
  references (`@fn`, `%MACRO`) stay strings, and a `%MACRO` whose macro is bound in
  the same file is replaced by its value.
  """
  bindings = {}
  pending = None
  for raw in text.splitlines():
    line = _strip_comment(raw).rstrip()
    if pending is not None:
      pending[1].append(line.strip())
      joined = " ".join(pending[1])
      if _balanced(joined):
        bindings[pending[0]] = joined
        pending = None
      continue
    m = re.match(r"^\s*([A-Za-z_][\w./]*)\s*=\s*(.*)$", line)
    if not m or line.lstrip().startswith(("import ", "include ")):
      continue
    name, value = m.group(1), m.group(2).strip()
    if _balanced(value):
      bindings[name] = value
    else:
      pending = (name, [value])
  parsed = {k: _gin_value(v) for k, v in bindings.items()}
  for k, v in parsed.items():
    if isinstance(v, str) and v.startswith("%") and v[1:] in parsed:
      parsed[k] = parsed[v[1:]]
  return parsed


def _strip_comment(line):
  """The line up to a '#' that is not inside quotes."""
  quote = None
  for i, ch in enumerate(line):
    if quote:
      if ch == quote:
        quote = None
    elif ch in "'\"":
      quote = ch
    elif ch == "#":
      return line[:i]
  return line


def _balanced(s):
  depth = 0
  quote = None
  for ch in s:
    if quote:
      if ch == quote:
        quote = None
    elif ch in "'\"":
      quote = ch
    elif ch in "([{":
      depth += 1
    elif ch in ")]}":
      depth -= 1
  return depth <= 0 and quote is None


def _gin_value(s):
  try:
    return ast.literal_eval(s)
  except (ValueError, SyntaxError):
    return s


def lookup_binding(bindings, key):
  """The value of the GIN_BINDINGS entry `key` in parsed bindings, or None."""
  for candidate in GIN_BINDINGS[key]:
    for name, value in bindings.items():
      if name == candidate or name.endswith("." + candidate) or name.endswith("/" + candidate):
        return value
  return None


# ----------------------------------------------------------------------------- params

_NON_TRAINABLE_LEAVES = {"u", "sn_u", "sn_sigma", "moving_mean", "moving_variance"}


def params_from_checkpoint(checkpoint_dir):
  """(generator, discriminator) trainable parameter counts from the latest checkpoint.

  Counts variables under `generator/` and `discriminator/` (not `ema_generator/`),
  leaving out optimizer slots, spectral-norm state (`u`, and a `sigma` that sits
  beside a `u`: the last spectral norm, not a context module's residual scale) and
  batch-norm moving statistics. Returns None if there is no checkpoint.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  prefix = tf.train.latest_checkpoint(checkpoint_dir)
  if prefix is None:
    return None
  variables = {}
  for name, shape in tf.train.list_variables(prefix):
    if ".OPTIMIZER_SLOT" in name:
      continue
    name = name.replace("/.ATTRIBUTES/VARIABLE_VALUE", "")
    variables[name] = shape
  counts = {"generator": 0, "discriminator": 0}
  for name, shape in variables.items():
    top, _, _ = name.partition("/")
    if top not in counts:
      continue
    parent, _, leaf = name.rpartition("/")
    if leaf in _NON_TRAINABLE_LEAVES:
      continue
    if leaf == "sigma" and (parent + "/u" in variables or parent + "/sn_u" in variables):
      continue
    counts[top] += math.prod(shape) if shape else 1
  return counts["generator"], counts["discriminator"]


# ----------------------------------------------------------------------------- runs

@dataclasses.dataclass
class EvalColumn:
  """One results column: a metric of one generator variant under one protocol."""
  kind: str        # "FID" or "IS"
  metric: str      # the key in the results row's metrics dict
  protocol: str    # the protocol label
  generator: str = None   # "generator", "ema_generator" or None if the rows do not say

  @property
  def setting(self):
    """Protocol and generator variant: what makes two numbers comparable."""
    return self.protocol + (f"; generator: {self.generator}" if self.generator else "")

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
  # column key -> list of (step, value), sorted by step
  curves: dict = dataclasses.field(default_factory=dict)
  warnings: list = dataclasses.field(default_factory=list)


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


def _warn(report, message):
  report.warnings.append(message)
  _log.warning("%s", message)


def check_run_dir(path):
  """Raises ValueError unless `path` is a directory that holds a training run."""
  if not _isdir(path):
    raise ValueError(f"{path!r} is not a directory; expected a run directory (a hamgan-train "
                     "--model_dir); pass the model_dir of a run.")
  if not any(_exists(_join(path, m)) for m in _RUN_MARKERS):
    raise ValueError(
        f"{path!r} is not a run directory: it has none of {', '.join(_RUN_MARKERS)}; "
        "pass the --model_dir given to hamgan-train.")


def read_run(path, name=None):
  """Reads one run directory into a RunReport; missing files become warnings."""
  check_run_dir(path)
  report = RunReport(name=name or os.path.basename(os.path.normpath(path)) or path, path=path)

  gin_path = _join(path, GIN_FILE)
  if _exists(gin_path):
    bindings = parse_gin_bindings(_read_text(gin_path))
    for key in GIN_BINDINGS:
      setattr(report, key, lookup_binding(bindings, key))
  else:
    _warn(report, f"{report.name}: {gin_path} is missing; context, batch and steps left blank.")

  log_path = _join(path, TRAIN_LOG)
  if _exists(log_path):
    rows = read_jsonl(log_path)
    speeds = [float(r["steps_per_sec"]) for r in rows
              if isinstance(r.get("steps_per_sec"), (int, float))
              and math.isfinite(r["steps_per_sec"])]
    steps = [int(r["step"]) for r in rows if isinstance(r.get("step"), (int, float))]
    report.steps_per_sec = statistics.median(speeds) if speeds else None
    report.last_step = max(steps) if steps else None
    if not speeds:
      _warn(report, f"{report.name}: {log_path} has no steps_per_sec rows; it/s left blank.")
  else:
    _warn(report, f"{report.name}: {log_path} is missing; it/s and trained steps left blank.")

  report.g_params, report.d_params = _read_params(report, path)

  results_path = _join(path, EVAL_RESULTS)
  if _exists(results_path):
    for row in read_jsonl(results_path):
      step, metrics = row.get("step"), row.get("metrics") or {}
      if not isinstance(step, (int, float)):
        continue
      proto = protocol_label(row)
      generator = row.get("generator")
      for metric, value in metrics.items():
        kind = metric_kind(metric)
        if kind is None or not isinstance(value, (int, float)) or not math.isfinite(value):
          continue
        col = EvalColumn(kind, metric, proto, str(generator) if generator else None)
        report.curves.setdefault(col.key, (col, []))[1].append((int(step), float(value)))
    for _, points in report.curves.values():
      points.sort()
  else:
    _warn(report, f"{report.name}: {results_path} is missing; FID and IS left blank "
          "(run hamgan-eval on this model_dir).")
  return report


def _read_params(report, path):
  """(G, D) parameter counts: model_summary.json, else the latest checkpoint."""
  summary_path = _join(path, MODEL_SUMMARY)
  ckpt_dir = _join(path, CHECKPOINT_DIR)
  if _exists(summary_path):
    summary = json.loads(_read_text(summary_path))
    return summary.get("generator_params"), summary.get("discriminator_params")
  if not _exists(ckpt_dir):
    _warn(report, f"{report.name}: {summary_path} is missing (and no checkpoints/); "
          "parameters left blank.")
    return None, None
  try:
    counts = params_from_checkpoint(ckpt_dir)
  except Exception as e:  # pylint: disable=broad-except
    # An unreadable checkpoint costs the parameter column only, never the report.
    _warn(report, f"{report.name}: could not read the checkpoint in {ckpt_dir} "
          f"({type(e).__name__}: {str(e)[:200]}); parameters left blank.")
    return None, None
  if counts is None:
    _warn(report, f"{report.name}: {summary_path} is missing and {ckpt_dir} holds no "
          "checkpoint; parameters left blank.")
    return None, None
  return counts


def best_point(kind, points):
  """(step, value) of the best value (lowest FID, highest IS); ties: earliest step."""
  if not points:
    return None
  if kind == "FID":
    return min(points, key=lambda p: (p[1], p[0]))
  return min(points, key=lambda p: (-p[1], p[0]))


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
                key=lambda c: (c.protocol, c.generator or "", c.kind != "FID", c.metric))


# ----------------------------------------------------------------------------- output

def _fmt(value, digits=2):
  if value is None:
    return ""
  if isinstance(value, float):
    return f"{value:.{digits}f}"
  return str(value)


def _fmt_params(value):
  return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else _fmt(value)


def _fmt_steps(report):
  if report.last_step is None and report.num_steps is None:
    return ""
  return f"{_fmt(report.last_step)} / {_fmt(report.num_steps)}"


def _fmt_best(kind, points):
  best = best_point(kind, points)
  return "" if best is None else f"{best[1]:.2f} @ {best[0]}"


def run_rows(reports, columns):
  """One dict per run, the data behind both comparison.md and comparison.json."""
  rows = []
  for r in reports:
    row = dict(run=r.name, path=r.path, g_context=r.g_context, d_context=r.d_context,
               batch_size=r.batch_size, num_steps=r.num_steps, last_step=r.last_step,
               steps_per_sec=r.steps_per_sec, generator_params=r.g_params,
               discriminator_params=r.d_params, best={}, curves={}, warnings=r.warnings)
    for col in columns:
      points = r.curves.get(col.key, (col, []))[1]
      best = best_point(col.kind, points)
      row["best"][col.key] = (None if best is None else
                              dict(kind=col.kind, metric=col.metric, protocol=col.protocol,
                                   generator=col.generator, step=best[0], value=best[1]))
      if points:
        row["curves"][col.key] = [dict(step=s, value=v) for s, v in points]
    rows.append(row)
  return rows


_RUN_HEADERS = ("run", "context G", "context D", "batch", "steps (done / planned)", "it/s",
                "G params", "D params")


def markdown_table(headers, rows):
  def esc(cell):
    return str(cell).replace("|", "\\|").replace("\n", " ")
  lines = ["| " + " | ".join(esc(h) for h in headers) + " |",
           "|" + "|".join("---" for _ in headers) + "|"]
  lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def run_table_cells(reports, columns):
  """Header and cell strings of the runs table (also what tests read)."""
  headers = list(_RUN_HEADERS) + [c.header for c in columns]
  rows = []
  for r in reports:
    cells = [r.name, _fmt(r.g_context), _fmt(r.d_context), _fmt(r.batch_size), _fmt_steps(r),
             _fmt(r.steps_per_sec), _fmt_params(r.g_params), _fmt_params(r.d_params)]
    cells += [_fmt_best(c.kind, r.curves.get(c.key, (c, []))[1]) for c in columns]
    rows.append(cells)
  return headers, rows


def render_markdown(reports, columns, plot_name="fid_vs_step.png"):
  """The text of comparison.md."""
  headers, rows = run_table_cells(reports, columns)
  protocols = sorted({c.setting for c in columns})
  out = ["# hamgan comparison", "",
         "## Runs measured here", "",
         "it/s: median of `steps_per_sec` over the rows of train_log.jsonl (one D step and "
         "one G step per iteration). steps: last logged step / configured steps. Best FID "
         "(lowest) and IS (highest) are over all evaluated checkpoints, with their step. "
         "Each results column is one metric under one evaluation protocol; numbers under "
         "different protocols are not comparable and are never put in one column.", "",
         markdown_table(headers, rows), ""]
  if protocols:
    out += ["Evaluation protocols (and generator variants) in this table:", ""]
    out += [f"- `{p}`" for p in protocols]
    out.append("")
  out += ["## Quoted from the paper (not measured here)", "",
          "Geng et al., \"Is Attention Better Than Matrix Decomposition?\", ICLR 2021, "
          "section 3.5. Protocol: " + PAPER_PROTOCOL + ". Their speed on TPU v3: "
          + PAPER_SPEED + ". These numbers are not comparable to the rows above unless "
          "the protocol is the same.", "",
          markdown_table(("model (paper)", "context G", "context D", "FID (paper protocol)",
                          "source"),
                         [(p["model"], p["g_context"], p["d_context"], f"{p['fid']:.2f}",
                           "quoted from the paper") for p in PAPER_ROWS]), ""]
  out += ["## FID against step", "", f"![FID against step]({plot_name})", ""]
  warnings = [w for r in reports for w in r.warnings]
  if warnings:
    out += ["## Warnings", ""] + [f"- {w}" for w in warnings] + [""]
  return "\n".join(out)


def plot_fid(reports, columns, path, size=(8.0, 5.0), dpi=100):
  """Writes a PNG of FID against step: one line per run and FID column."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  fid_cols = [c for c in columns if c.kind == "FID"]
  styles = ("-", "--", ":", "-.")
  protocol_style = {p: styles[i % len(styles)]
                    for i, p in enumerate(sorted({c.setting for c in fid_cols}))}
  fig, ax = plt.subplots(figsize=size, dpi=dpi)
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  drawn = 0
  for i, r in enumerate(reports):
    for col in fid_cols:
      points = r.curves.get(col.key, (col, []))[1]
      if not points:
        continue
      steps, values = zip(*points)
      ax.plot(steps, values, linestyle=protocol_style[col.setting], marker="o", markersize=3,
              color=colors[i % len(colors)], label=f"{r.name}: {col.metric} [{col.setting}]")
      drawn += 1
  ax.set_xlabel("training step")
  ax.set_ylabel("FID (lower is better)")
  ax.set_title("FID against step (colour: run; line style: protocol and generator)")
  ax.grid(True, alpha=0.3)
  if drawn:
    ax.legend(fontsize=7, loc="best")
  else:
    ax.text(0.5, 0.5, "no FID results in these runs", ha="center", va="center",
            transform=ax.transAxes)
  fig.tight_layout()
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=dpi)
  plt.close(fig)
  _write_bytes(path, buf.getvalue())


def _write_bytes(path, data):
  if _is_remote(path):
    with _gfile().GFile(path, "wb") as f:
      f.write(data)
  else:
    with open(path, "wb") as f:
      f.write(data)


def write_comparison(run_dirs, out_dir):
  """Reads the runs and writes comparison.md, comparison.json and fid_vs_step.png.

  Returns the list of RunReports.
  """
  reports = read_runs(list(run_dirs))
  columns = columns_of(reports)
  if _is_remote(out_dir):
    _gfile().makedirs(out_dir)
  else:
    os.makedirs(out_dir, exist_ok=True)
  plot_name = "fid_vs_step.png"
  plot_fid(reports, columns, _join(out_dir, plot_name))
  _write_bytes(_join(out_dir, "comparison.md"),
               render_markdown(reports, columns, plot_name).encode("utf-8"))
  payload = dict(
      columns=[dict(key=c.key, kind=c.kind, metric=c.metric, protocol=c.protocol,
                    generator=c.generator, header=c.header) for c in columns],
      runs=run_rows(reports, columns),
      paper_reference=dict(source="Geng et al., ICLR 2021, section 3.5 (quoted, not measured)",
                           protocol=PAPER_PROTOCOL, speed=PAPER_SPEED,
                           rows=[dict(r) for r in PAPER_ROWS]))
  _write_bytes(_join(out_dir, "comparison.json"),
               (json.dumps(payload, indent=2, sort_keys=False) + "\n").encode("utf-8"))
  return reports
