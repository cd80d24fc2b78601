"""Statistics over seeds: a group's summary and the Welch comparison of two groups.

Everything here is plain numbers in, plain numbers out (no run directories):

  summarize(values, higher_is_better)
      n, mean, std (ddof=1), the 95% Student-t interval of the mean, median, min, max
      and best-of-n (the paper's convention: the best of n runs, which flatters).
  welch(a, b)
      the difference of means a - b, its 95% interval with the Welch-Satterthwaite
      degrees of freedom, and the two-sided Welch t-test p-value.

The t quantiles and p-values come from scipy.stats.t (SciPy is a dependency of both
stacks). A group of one run has no spread: its std and interval are None, never 0.
"""
import math
import statistics

LEVEL = 0.95
ALPHA = 1.0 - LEVEL


def _t():
  from scipy import stats  # pylint: disable=import-outside-toplevel
  return stats.t


def t_quantile(p, df):
  """The p-quantile of Student's t with `df` degrees of freedom."""
  return float(_t().ppf(p, df))


def _clean(values):
  out = [float(v) for v in values if v is not None]
  bad = [v for v in out if not math.isfinite(v)]
  if bad:
    raise ValueError(f"non-finite values {bad} cannot be summarised; drop those runs or "
                     "re-evaluate them.")
  return out


def summarize(values, higher_is_better):
  """The summary of one group's values (None entries are left out).

  Returns a dict: n, mean, std, ci95 ([low, high] or None), median, min, max, best
  (best-of-n: the highest when `higher_is_better`, else the lowest) and best_minus_mean
  (how far best-of-n lies from the mean, in the metric's better direction: >= 0).
  """
  xs = _clean(values)
  n = len(xs)
  if n == 0:
    return dict(n=0, mean=None, std=None, ci95=None, median=None, min=None, max=None,
                best=None, best_minus_mean=None)
  mean = statistics.fmean(xs)
  std = statistics.stdev(xs) if n > 1 else None
  ci95 = None
  if n > 1:
    half = t_quantile(1.0 - ALPHA / 2.0, n - 1) * std / math.sqrt(n)
    ci95 = [mean - half, mean + half]
  best = max(xs) if higher_is_better else min(xs)
  return dict(n=n, mean=mean, std=std, ci95=ci95, median=statistics.median(xs),
              min=min(xs), max=max(xs), best=best,
              best_minus_mean=abs(best - mean))


def welch(a, b):
  """Welch's comparison of the means of samples `a` and `b` (None entries left out).

  Returns a dict: n_a, n_b, mean_a, mean_b, difference (mean_a - mean_b), ci95 of the
  difference, df (Welch-Satterthwaite), t, p_value (two-sided) and reason: None when
  tested, else why not (fewer than two values on a side, or no spread on either side).
  """
  xa, xb = _clean(a), _clean(b)
  out = dict(n_a=len(xa), n_b=len(xb), mean_a=None, mean_b=None, difference=None,
             ci95=None, df=None, t=None, p_value=None, reason=None)
  if xa:
    out["mean_a"] = statistics.fmean(xa)
  if xb:
    out["mean_b"] = statistics.fmean(xb)
  if xa and xb:
    out["difference"] = out["mean_a"] - out["mean_b"]
  if len(xa) < 2 or len(xb) < 2:
    out["reason"] = (f"needs at least 2 runs on each side (has {len(xa)} and {len(xb)}); "
                     "add seeds")
    return out
  va, vb = statistics.variance(xa) / len(xa), statistics.variance(xb) / len(xb)
  se = math.sqrt(va + vb)
  if se == 0.0:
    out["reason"] = "every run gave the same value on both sides: no spread to test"
    return out
  df = (va + vb) ** 2 / (va ** 2 / (len(xa) - 1) + vb ** 2 / (len(xb) - 1))
  t = out["difference"] / se
  half = t_quantile(1.0 - ALPHA / 2.0, df) * se
  out.update(df=df, t=t, ci95=[out["difference"] - half, out["difference"] + half],
             p_value=float(2.0 * _t().sf(abs(t), df)))
  return out


def verdict(result, name_a, name_b, metric, higher_is_better):
  """A plain sentence on a welch() result: which is better, or that it is not settled."""
  if result["reason"] is not None:
    return f"{metric}: {name_a} vs {name_b} not tested ({result['reason']})."
  low, high = result["ci95"]
  p = result["p_value"]
  if p >= ALPHA:
    return (f"{metric}: no significant difference between {name_a} and {name_b} "
            f"(p = {p:.3g}; the 95% interval of the difference, [{low:.4g}, {high:.4g}], "
            "includes 0).")
  a_better = (result["difference"] > 0) == bool(higher_is_better)
  better, worse = (name_a, name_b) if a_better else (name_b, name_a)
  return (f"{metric}: {better} is better than {worse} (p = {p:.3g}; difference of means "
          f"{result['difference']:.4g}, 95% interval [{low:.4g}, {high:.4g}]).")
