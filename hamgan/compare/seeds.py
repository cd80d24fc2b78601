"""Runs that differ only in train.seed, pooled into groups, and each group's metrics.

Two runs are in one group when the bindings of their configs (the newest launch's
config, `hamgan.run_dir.config_for_step`, read by `hamgan.run_config.parse_bindings`)
are equal once `train.seed` is left out; runs that differ in anything else are never
pooled. A run without a config is a group of its own.

Every numeric metric of the result rows (read through `hamgan.run_dir.read_results`)
whose better direction is known is kept: FID, IS, KID, precision / recall, density /
coverage, intra-FID, conditional accuracy. A metric is keyed by its name, protocol,
generator variant and the standing-statistics / truncation settings of its rows, so
numbers measured differently are never pooled either. it/s is one more metric (the
median of the run's train_log rows, hamgan.compare.runs).
"""
import dataclasses
import json
import math
import re

from hamgan import files
from hamgan import run_config
from hamgan import run_dir
from hamgan.compare import runs as runs_lib
from hamgan.compare import stats

SEED_BINDING = "train.seed"
SPEED = "it/s"
_SEED_SUFFIX = re.compile(r"(?:^|[_\-.=,/]+)seed[-_=]?\d+$")
_NAME_BINDINGS = 3   # a group name shows at most this many distinguishing bindings


def direction(metric):
  """'lower', 'higher' or None (not summarised) for a metric name of a results row."""
  base = metric.lower().split("/")[0]
  if "_std" in base or "split" in base:
    return None
  if base.startswith(("fid", "kid", "intra_fid")):
    return "lower"
  if (re.fullmatch(r"is(\d+k?)?|inception_score", base) or "accuracy" in base
      or base.startswith(("precision", "recall", "density", "coverage"))):
    return "higher"
  return None


def metric_key(metric, row):
  """The name under which `metric` of `row` is pooled: metric, protocol and settings."""
  setting = runs_lib.setting_label(runs_lib.protocol_label(row), row.get("generator"),
                                   runs_lib.row_variant(row))
  return f"{metric} [{setting}]"


def run_series(path):
  """{metric key: (direction, {step: value})} of one run; a later row of the same key
  and step replaces an earlier one (rows come oldest first)."""
  series = {}
  for row in run_dir.read_results(path):
    step = row.get("step")
    if not isinstance(step, (int, float)):
      continue
    for metric, value in (row.get("metrics") or {}).items():
      way = direction(metric)
      if (way is None or isinstance(value, bool) or not isinstance(value, (int, float))
          or not math.isfinite(value)):
        continue
      key = metric_key(metric, row)
      series.setdefault(key, (way, {}))[1][int(step)] = float(value)
  return series


def config_without_seed(path):
  """The run's bindings minus train.seed, and its seed; (None, None) without a config."""
  config = run_dir.config_for_step(path)
  if config is None:
    return None, None
  bindings = run_config.parse_bindings(files.read_text(config))
  seed = run_config.lookup(bindings, SEED_BINDING)
  kept = {name: value for name, value in bindings.items() if not _is_seed(name)}
  return kept, seed


def _is_seed(name):
  return name == SEED_BINDING or name.endswith(("." + SEED_BINDING, "/" + SEED_BINDING))


def jsonable(value):
  """A parsed binding value as JSON data (tuples as lists, other objects as text)."""
  if isinstance(value, (list, tuple)):
    return [jsonable(v) for v in value]
  if isinstance(value, dict):
    return {str(k): jsonable(v) for k, v in value.items()}
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  return repr(value)


@dataclasses.dataclass
class Group:
  """Runs whose configs differ only in train.seed."""
  name: str
  reports: list          # hamgan.compare.runs.RunReport, in the order given
  seeds: list
  config: dict = None    # the shared bindings minus the seed; None: no config
  bindings: dict = dataclasses.field(default_factory=dict)   # what tells it from others
  series: list = dataclasses.field(default_factory=list)     # run_series per report

  @property
  def n(self):
    return len(self.reports)


def group_reports(reports):
  """Groups (in order of first appearance) of RunReports that differ only in the seed."""
  groups, by_key = [], {}
  for report in reports:
    config, seed = config_without_seed(report.path)
    key = None if config is None else json.dumps(jsonable(config), sort_keys=True)
    if key is None or key not in by_key:
      group = Group(name=report.name, reports=[], seeds=[], config=config)
      groups.append(group)
      if key is not None:
        by_key[key] = group
    group = groups[-1] if key is None else by_key[key]
    group.reports.append(report)
    group.seeds.append(seed)
    group.series.append(run_series(report.path))
  _name_groups(groups)
  return groups


def _name_groups(groups):
  configs = [g.config or {} for g in groups]
  names = sorted({n for c in configs for n in c})
  differing = [n for n in names
               if len({json.dumps(jsonable(c.get(n, "<unset>")), sort_keys=True)
                       for c in configs}) > 1]
  for group, config in zip(groups, configs):
    group.bindings = {n: jsonable(config.get(n, "<unset>")) for n in differing}
  stems = [{_SEED_SUFFIX.sub("", r.name) for r in g.reports} for g in groups]
  use_stems = (all(len(s) == 1 and "" not in s for s in stems)
               and len({next(iter(s)) for s in stems}) == len(groups))
  for group, stem in zip(groups, stems):
    if use_stems:
      group.name = next(iter(stem))
    elif group.bindings and len(groups) > 1:
      shown = [f"{n}={v!r}" for n, v in group.bindings.items()][:_NAME_BINDINGS]
      more = len(group.bindings) - len(shown)
      group.name = ", ".join(shown) + (f" (+{more} more)" if more else "")
  seen = {}
  for group in groups:   # still equal (e.g. runs without a config): number them
    seen[group.name] = seen.get(group.name, 0) + 1
    if seen[group.name] > 1:
      group.name += f" #{seen[group.name]}"


def metric_names(groups):
  """Every pooled metric key over the groups, sorted; it/s last."""
  keys = {k for g in groups for s in g.series for k in s}
  return sorted(keys) + ([SPEED] if any(r.steps_per_sec is not None
                                        for g in groups for r in g.reports) else [])


def _final_and_best(points, way):
  """((final step, value), (best step, value)) of {step: value}, or (None, None)."""
  if not points:
    return None, None
  final = max(points.items())
  pick = min if way == "lower" else max
  best = pick(sorted(points.items()), key=lambda p: p[1])   # ties: the earliest step
  return final, best


def group_metric(group, key):
  """One group's entry for metric `key`: values per run at the final milestone and at
  each run's best milestone (None where a run lacks it), with their summaries."""
  if key == SPEED:
    values = [r.steps_per_sec for r in group.reports]
    summary = stats.summarize(values, higher_is_better=True)
    return dict(direction="higher", values=values, steps=None, **summary,
                at_best_milestone=None)
  way = next(s[key][0] for s in group.series if key in s) if any(
      key in s for s in group.series) else None
  finals, bests = [], []
  for series in group.series:
    final, best = _final_and_best(series.get(key, (way, {}))[1], way)
    finals.append(final)
    bests.append(best)
  values = [None if f is None else f[1] for f in finals]
  best_values = [None if b is None else b[1] for b in bests]
  higher = way == "higher"
  return dict(direction=way, values=values, steps=[None if f is None else f[0] for f in finals],
              **stats.summarize(values, higher),
              at_best_milestone=dict(values=best_values,
                                     steps=[None if b is None else b[0] for b in bests],
                                     **stats.summarize(best_values, higher)))


def step_curve(group, key):
  """[(step, mean, min, max, count)] of `key` over the group's runs at each step."""
  by_step = {}
  for series in group.series:
    for step, value in series.get(key, (None, {}))[1].items():
      by_step.setdefault(step, []).append(value)
  return [(s, sum(v) / len(v), min(v), max(v), len(v)) for s, v in sorted(by_step.items())]
