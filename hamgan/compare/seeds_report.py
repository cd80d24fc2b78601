"""The seeds part of comparison.md and comparison.json: groups, their statistics, the
Welch differences between groups, and the band plots."""
import itertools

from hamgan import files
from hamgan.compare import bands
from hamgan.compare import seeds as seeds_lib
from hamgan.compare import stats
from hamgan.compare import table

EXPLAINED = (
    "Runs whose configs are equal except for `train.seed` form a group; runs that differ "
    "in anything else are never pooled. Unless said otherwise a value is the run's "
    "**final** evaluated milestone. std: sample standard deviation (ddof=1). 95% CI: "
    "Student-t interval of the mean (n-1 degrees of freedom); a group of one run shows "
    "n=1 and no std or interval. **best-of-n** is the best of the group's n runs, the "
    "paper's convention (Geng et al. 2021, Sec. E: the best of 6 runs); `flatters by` is "
    "how far it lies from the mean. it/s is the median of each run's logged steps/s "
    "(runs trained side by side share the machine).")
DIFFERENCES = (
    "Differences: mean of the first group minus mean of the second, at the final "
    "milestone, with the 95% Welch interval and the two-sided Welch t-test p-value. "
    "Several metrics and pairs are tested without correction: about 1 test in 20 of two "
    "equal groups gives p < 0.05 by chance.")


def build(groups):
  """(groups payload, differences payload) for comparison.json."""
  keys = seeds_lib.metric_names(groups)
  payload = []
  for group in groups:
    payload.append(dict(
        name=group.name, bindings=group.bindings, runs=[r.name for r in group.reports],
        paths=[r.path for r in group.reports], seeds=group.seeds, n=group.n,
        metrics={k: seeds_lib.group_metric(group, k) for k in keys
                 if k == seeds_lib.SPEED or any(k in s for s in group.series)}))
  return payload, differences(payload, keys)


def differences(payload, keys):
  """Welch comparisons of every pair of groups on every metric both have."""
  out = []
  for key in keys:
    for a, b in itertools.combinations(payload, 2):
      if key not in a["metrics"] or key not in b["metrics"]:
        continue
      way = a["metrics"][key]["direction"]
      result = stats.welch(a["metrics"][key]["values"], b["metrics"][key]["values"])
      significant = result["p_value"] is not None and result["p_value"] < stats.ALPHA
      out.append(dict(metric=key, a=a["name"], b=b["name"], direction=way, **result,
                      significant=significant,
                      sentence=stats.verdict(result, a["name"], b["name"],
                                             key.split(" [", 1)[0], way == "higher")))
  return out


def write_plots(groups, out_dir):
  """One band plot per metric with steps; {metric key: file name}."""
  written = {}
  for i, key in enumerate(k for k in seeds_lib.metric_names(groups) if k != seeds_lib.SPEED):
    name = bands.plot_name(i, key)
    if bands.plot_bands(groups, key, files.join(out_dir, name)):
      written[key] = name
  return written


def _f(value):
  if value is None:
    return ""
  return f"{value:.4g}" if isinstance(value, float) else str(value)


def _ci(interval):
  return "" if interval is None else f"[{interval[0]:.4g}, {interval[1]:.4g}]"


def _steps(steps):
  if not steps:
    return ""
  shown = sorted({s for s in steps if s is not None})
  return ", ".join(str(s) for s in shown) + (" (some runs lack it)" if None in steps else "")


def _group_rows(payload):
  rows = []
  for g in payload:
    differ = "; ".join(f"`{n} = {v!r}`" for n, v in g["bindings"].items()) or "(none)"
    rows.append((g["name"], g["n"], ", ".join(_f(s) for s in g["seeds"]),
                 ", ".join(g["runs"]), differ))
  return rows


def _metric_rows(payload, key):
  rows = []
  for g in payload:
    m = g["metrics"].get(key)
    if m is None:
      continue
    best = m["at_best_milestone"] or {}
    rows.append((g["name"], m["n"], _f(m["mean"]), _f(m["std"]), _ci(m["ci95"]),
                 _f(m["median"]), _f(m["best"]), _f(m["best_minus_mean"]),
                 _f(best.get("mean")), _ci(best.get("ci95")), _f(best.get("best")),
                 _steps(m["steps"])))
  return rows


METRIC_HEADERS = ("group", "n", "mean", "std", "95% CI", "median",
                  "best-of-n (paper's convention)", "best-of-n flatters by",
                  "mean at each run's best milestone", "its 95% CI",
                  "best-of-n at best milestones", "final milestone steps")


def render(payload, diffs, plots):
  """The markdown lines of the seeds section."""
  out = ["## Groups of seeds", "", EXPLAINED, "",
         table.markdown_table(("group", "n", "seeds", "runs",
                               "settings that tell it from the other groups"),
                              _group_rows(payload)), ""]
  keys = sorted({k for g in payload for k in g["metrics"]},
                key=lambda k: (k == seeds_lib.SPEED, k))
  for key in keys:
    way = next(g["metrics"][key]["direction"] for g in payload if key in g["metrics"])
    out += [f"### {key} ({way} is better)", "",
            table.markdown_table(METRIC_HEADERS, _metric_rows(payload, key)), ""]
    pairs = [d for d in diffs if d["metric"] == key]
    if pairs:
      out += [table.markdown_table(
          ("first - second", "difference of means", "95% CI (Welch)", "p (Welch t-test)",
           "what it says"),
          [(f"{d['a']} - {d['b']}", _f(d["difference"]), _ci(d["ci95"]), _f(d["p_value"]),
            d["sentence"]) for d in pairs]), ""]
    if key in plots:
      out += [f"![{key}]({plots[key]})", ""]
  if diffs:
    out += [DIFFERENCES, ""]
  return out


SUMMARY_METRICS = (("FID", "fid"), ("precision", "precision"), ("recall", "recall"),
                   ("intra-FID", "intra_fid"), ("cond. accuracy", "conditional_accuracy"))


def summary_table(comparison, setting, metrics=None):
  """A compact Markdown table from a comparison.json payload: per group n, each metric's
  mean [95% CI] at the final milestone, the first metric's best-of-n, and it/s.

  `setting` picks one evaluation setting: the end of the metric keys' bracket, e.g.
  'generator: ema_generator; standing batches: 0'. `metrics`: (label, key prefix)
  pairs, each of which every group must have once; by default those of SUMMARY_METRICS
  that any group measured under `setting`.
  """
  metrics = metrics or _measured(comparison, setting)
  first = metrics[0][0]
  lines = ["| group | n | " + " | ".join(f"{label} mean [95% CI]" for label, _ in metrics)
           + f" | {first} best-of-n (flatters by) | it/s median |",
           "|---|---|" + "---|" * (len(metrics) + 2)]
  for group in comparison["groups"]:
    cells, best = [], ""
    for i, (_, prefix) in enumerate(metrics):
      found = [m for k, m in group["metrics"].items() if _names(k, prefix, setting)]
      if len(found) != 1:
        raise ValueError(f"group {group['name']}: {len(found)} metrics named {prefix}* "
                         f"under '{setting}'; expected one.")
      m = found[0]
      interval = f" [{_short(m['ci95'][0])}, {_short(m['ci95'][1])}]" if m["ci95"] else ""
      cells.append(f"{_short(m['mean'])}{interval}")
      if i == 0:
        best = f"{_short(m['best'])} ({_short(m['best_minus_mean'])})"
    speed = group["metrics"].get(seeds_lib.SPEED)
    lines.append(f"| {group['name']} | {group['n']} | " + " | ".join(cells)
                 + f" | {best} | {_short(speed['median']) if speed else ''} |")
  return "\n".join(lines)


def _measured(comparison, setting):
  """The SUMMARY_METRICS with a key under `setting` in any group (none: ValueError)."""
  keys = [k for g in comparison["groups"] for k in g["metrics"]]
  found = tuple((label, prefix) for label, prefix in SUMMARY_METRICS
                if any(_names(k, prefix, setting) for k in keys))
  if not found:
    raise ValueError(f"no group has any of {[p for _, p in SUMMARY_METRICS]} under "
                     f"'{setting}'; name the setting as the metric keys end.")
  return found


def _names(key, prefix, setting):
  """Whether a metric key ('fid2k/x [PROTOCOL; SETTING]') is metric `prefix`* under
  `setting`."""
  return key.split(" [")[0].startswith(prefix) and key.endswith(f"; {setting}]")


def _short(value):
  """3 significant digits (3 decimals below 1): 7.183 -> '7.18', 5 -> '5.00', 0.98412 ->
  '0.984', 123.4 -> '123'."""
  return f"{value:#.3g}".rstrip(".") if abs(value) >= 1 else f"{value:.3f}"
