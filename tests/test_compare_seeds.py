"""hamgan-compare with seeds: the statistics against SciPy, grouping (runs that differ in
anything but train.seed are never pooled), the groups in comparison.json and .md, the
Welch differences and their sentences, and the band plots."""
import json
import os

from matplotlib import colors as mcolors
from matplotlib import image as mimage
import numpy as np
import pytest
from scipy import stats as sp_stats

from hamgan import run_dir
from hamgan.compare import report
from hamgan.compare import runs
from hamgan.compare import seeds
from hamgan.compare import stats

PROTO_A = "50k/imagenet2012-validation"
FID_A = "fid50k/imagenet2012-validation"
EMA = "ema_generator"


def _eval_row(step, protocol, metrics, generator=EMA):
  """A result row as hamgan.evaluation.evaluator writes it (the fields compare reads)."""
  return dict(step=step, checkpoint=f"ckpt-{step}", generator=generator, metrics=metrics,
              protocol=protocol, num_samples=50000, classifier="inception",
              wall_time=float(step), config_sha256="0" * 64)


def _has_colour(img, hex_colour, tol=0.02):
  rgb = np.array(mcolors.to_rgb(hex_colour))
  return int(np.all(np.abs(img[..., :3] - rgb) < tol, axis=-1).sum())


PREC_A = "precision50k_k3/imagenet2012-validation"


def _seed_run(root, name, seed, evals, g_lr=2e-4, speeds=(2.0,), reorder=False,
              context="sagan"):
  """A run whose config differs from its group's only in train.seed; `evals` are
  (step, FID, IS, precision) rows, recorded through hamgan.run_dir as hamgan-eval does."""
  run = os.path.join(root, name)
  os.makedirs(run)
  lines = [f"Generator.context = '{context}'", f"train.g_lr = {g_lr}", f"train.seed = {seed}",
           "train.loss_fn = @hinge"]
  with open(os.path.join(run, "operative_config.gin"), "w") as f:
    f.write("\n".join(reversed(lines) if reorder else lines) + "\n")
  with open(os.path.join(run, "train_log.jsonl"), "w") as f:
    for i, s in enumerate(speeds):
      f.write(json.dumps(dict(step=100 * (i + 1), steps_per_sec=s)) + "\n")
  for step, fid, inception, precision in evals:
    run_dir.write_result(run, _eval_row(step, PROTO_A, {
        FID_A: fid, "is50k": inception, PREC_A: precision, "is50k_10split_std": 0.1}))
  return run


@pytest.fixture
def seed_runs(tmp_path):
  """sagan over three seeds, one run that differs in g_lr (named like a seed of it),
  and ham over two seeds."""
  root = str(tmp_path / "runs")
  return [
      _seed_run(root, "sagan__seed-0", 0, [(100, 40.0, 5.0, 0.5), (200, 30.0, 6.0, 0.6)],
                speeds=(1.0, 2.0, 9.0)),
      _seed_run(root, "sagan__seed-1", 1, [(100, 31.0, 7.0, 0.7), (200, 33.5, 6.5, 0.65)],
                speeds=(2.5,), reorder=True),   # the order of the bindings does not count
      _seed_run(root, "sagan__seed-2", 2, [(100, 45.0, 4.0, 0.4), (200, 29.0, 6.25, 0.7)],
                speeds=(3.0,)),
      _seed_run(root, "sagan__seed-3", 3, [(200, 20.0, 9.0, 0.9)], g_lr=1e-4),
      _seed_run(root, "ham__seed-0", 0, [(200, 25.0, 7.5, 0.8)], speeds=(1.5,),
                context="ham_nmf"),
      _seed_run(root, "ham__seed-1", 1, [(200, 27.0, 7.0, 0.75)], speeds=(1.75,),
                context="ham_nmf"),
  ]


def test_stats_against_scipy():
  a = np.array([12.1, 13.4, 11.8, 12.9, 13.0])
  b = np.array([14.2, 13.1, 15.0])
  s = stats.summarize(list(a), higher_is_better=False)
  assert (s["n"], s["best"], s["min"], s["max"]) == (5, 11.8, 11.8, 13.4)
  assert s["mean"] == pytest.approx(a.mean(), rel=1e-12)
  assert s["std"] == pytest.approx(a.std(ddof=1), rel=1e-12)
  assert s["median"] == np.median(a)
  assert s["ci95"] == pytest.approx(
      list(sp_stats.t.interval(0.95, 4, loc=a.mean(), scale=sp_stats.sem(a))), rel=1e-10)
  assert s["best_minus_mean"] == pytest.approx(a.mean() - 11.8)
  assert stats.summarize(list(a), higher_is_better=True)["best"] == 13.4
  for p, df in [(0.975, 1), (0.975, 4), (0.975, 7.3), (0.025, 30), (0.995, 2.5)]:
    assert stats.t_quantile(p, df) == pytest.approx(sp_stats.t.ppf(p, df), rel=1e-12)
  w = stats.welch(list(a), list(b))
  ref = sp_stats.ttest_ind(a, b, equal_var=False)
  assert w["difference"] == pytest.approx(a.mean() - b.mean(), rel=1e-12)
  assert w["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)
  assert w["t"] == pytest.approx(ref.statistic, rel=1e-12)
  assert w["df"] == pytest.approx(ref.df, rel=1e-12)
  assert w["ci95"] == pytest.approx(list(ref.confidence_interval(0.95)), rel=1e-9)
  # A group of one: no spread, no interval, and no test.
  one = stats.summarize([7.0, None], higher_is_better=True)
  assert (one["n"], one["mean"], one["std"], one["ci95"], one["best"]) == (
      1, 7.0, None, None, 7.0)
  assert stats.welch([7.0], list(b))["p_value"] is None
  assert "needs at least 2 runs" in stats.verdict(stats.welch([7.0], list(b)), "x", "y",
                                                   "fid", False)
  assert "no spread" in stats.welch([1.0, 1.0], [1.0, 1.0])["reason"]
  with pytest.raises(ValueError, match="non-finite"):
    stats.summarize([1.0, float("nan")], True)


def test_verdicts_say_which_is_better_or_that_it_is_not_settled():
  low, high = [10.0, 10.5, 9.8, 10.2], [20.0, 21.0, 19.5, 20.4]
  assert stats.verdict(stats.welch(low, high), "ham", "sagan", "FID", False).startswith(
      "FID: ham is better than sagan (p = ")
  assert stats.verdict(stats.welch(low, high), "ham", "sagan", "IS", True).startswith(
      "IS: sagan is better than ham (p = ")
  close = stats.verdict(stats.welch(low, [10.1, 10.4, 9.9, 10.3]), "ham", "sagan", "FID",
                        False)
  assert close.startswith("FID: no significant difference between ham and sagan (p = ")
  assert "includes 0" in close
  # Near the 5% line, on either side (p from SciPy: 0.14 and 0.038).
  a, b, c = [10.0, 11.0, 12.0], [11.5, 12.5, 13.5], [12.5, 13.5, 14.5]
  assert 0.1 < sp_stats.ttest_ind(a, b, equal_var=False).pvalue < 0.2
  assert 0.03 < sp_stats.ttest_ind(a, c, equal_var=False).pvalue < 0.05
  assert "no significant difference" in stats.verdict(stats.welch(a, b), "x", "y", "FID",
                                                      False)
  assert stats.verdict(stats.welch(a, c), "x", "y", "FID", False).startswith(
      "FID: x is better than y (p = 0.0376;")


@pytest.mark.parametrize("name,way", [
    ("fid2k/mnist5k-test", "lower"), ("fid2k-vs1k/mnist5k-test", "lower"),
    ("kid2k/x", "lower"), ("intra_fid2k/x", "lower"), ("is2k", "higher"),
    ("inception_score", "higher"), ("precision2k_k3/x", "higher"),
    ("recall2k_k3/x", "higher"), ("density2k_k5/x", "higher"), ("coverage2k_k5/x", "higher"),
    ("conditional_accuracy", "higher"), ("is2k_10split_mean", None),
    ("kid2k_std/x", None), ("wall_seconds", None)])
def test_metric_directions(name, way):
  assert seeds.direction(name) == way


def test_grouping_pools_only_runs_that_differ_in_the_seed(seed_runs):
  groups = seeds.group_reports(runs.read_runs(seed_runs))
  assert [[r.name for r in g.reports] for g in groups] == [
      ["sagan__seed-0", "sagan__seed-1", "sagan__seed-2"], ["sagan__seed-3"],
      ["ham__seed-0", "ham__seed-1"]]
  assert [g.seeds for g in groups] == [[0, 1, 2], [3], [0, 1]]
  # Named by what tells them apart: the run names' stems clash here (sagan twice).
  assert [g.name for g in groups] == [
      "Generator.context='sagan', train.g_lr=0.0002",
      "Generator.context='sagan', train.g_lr=0.0001",
      "Generator.context='ham_nmf', train.g_lr=0.0002"]
  assert groups[1].bindings == {"Generator.context": "sagan", "train.g_lr": 0.0001}
  assert "train.seed" not in groups[0].config and "train.loss_fn" in groups[0].config
  # Equal configs (even with different names) are one group; no config: its own.
  only_sagan = seeds.group_reports(runs.read_runs(seed_runs[:3] + seed_runs[4:]))
  assert [g.name for g in only_sagan] == ["sagan", "ham"]


def test_group_json_values_statistics_and_best_of_n(seed_runs, tmp_path):
  out = str(tmp_path / "cmp")
  report.write_comparison(seed_runs, out)
  data = json.load(open(os.path.join(out, "comparison.json")))
  by_name = {g["name"]: g for g in data["groups"]}
  sagan = next(g for g in data["groups"] if g["n"] == 3)
  assert sagan["runs"] == ["sagan__seed-0", "sagan__seed-1", "sagan__seed-2"]
  key_fid = f"{FID_A} [{PROTO_A}; generator: {EMA}]"
  key_is, key_prec = key_fid.replace(FID_A, "is50k"), key_fid.replace(FID_A, PREC_A)
  assert sorted(sagan["metrics"]) == sorted([key_fid, key_is, key_prec, "it/s"])
  fid = sagan["metrics"][key_fid]
  values = np.array([30.0, 33.5, 29.0])   # the final milestone (step 200) of each run
  assert fid["values"] == list(values) and fid["steps"] == [200, 200, 200]
  assert fid["mean"] == pytest.approx(values.mean()) and fid["median"] == 30.0
  assert fid["std"] == pytest.approx(values.std(ddof=1))
  assert fid["ci95"] == pytest.approx(list(sp_stats.t.interval(
      0.95, 2, loc=values.mean(), scale=sp_stats.sem(values))))
  assert fid["best"] == 29.0   # best-of-n: the lowest FID
  best = fid["at_best_milestone"]   # each run's best milestone
  assert best["values"] == [30.0, 31.0, 29.0] and best["steps"] == [200, 100, 200]
  assert best["best"] == 29.0 and best["mean"] == pytest.approx(30.0)
  assert sagan["metrics"][key_is]["best"] == 6.5   # the highest IS
  assert sagan["metrics"][key_is]["at_best_milestone"]["values"] == [6.0, 7.0, 6.25]
  assert sagan["metrics"]["it/s"]["values"] == [2.0, 2.5, 3.0]   # medians of the logs
  lone = next(g for g in data["groups"] if g["n"] == 1)
  entry = lone["metrics"][key_fid]
  assert (entry["n"], entry["values"], entry["std"], entry["ci95"], entry["best"]) == (
      1, [20.0], None, None, 20.0)
  assert len(by_name) == 3
  md = open(os.path.join(out, "comparison.md")).read()   # n=1: no std, no interval
  assert f"| {lone['name']} | 1 | 20 |  |  | 20 | 20 | 0 |" in md.split(f"### {FID_A}", 1)[1]
  # Every pair of groups on every metric; p-values from Welch's test.
  diffs = [d for d in data["differences"] if d["metric"] == key_fid]
  assert len(diffs) == 3
  ham = next(g for g in data["groups"] if g["runs"][0].startswith("ham"))
  pair = next(d for d in diffs if {d["a"], d["b"]} == {sagan["name"], ham["name"]})
  ref = sp_stats.ttest_ind(values, [25.0, 27.0], equal_var=False)
  assert pair["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)
  assert pair["significant"] == (ref.pvalue < 0.05)
  lone_pair = next(d for d in diffs if lone["name"] in (d["a"], d["b"]))
  assert lone_pair["p_value"] is None and "not tested" in lone_pair["sentence"]


def test_group_markdown_and_band_plot(seed_runs, tmp_path):
  out = str(tmp_path / "cmp")
  report.write_comparison(seed_runs[:3] + seed_runs[4:], out)
  md = open(os.path.join(out, "comparison.md")).read()
  section = md.split("## Groups of seeds", 1)[1].split("## Quoted from the paper", 1)[0]
  assert "| sagan | 3 | 0, 1, 2 | sagan__seed-0, sagan__seed-1, sagan__seed-2 |" in section
  assert "best-of-n (paper's convention)" in section
  fid_table = section.split(f"### {FID_A} [", 1)[1]
  assert "| sagan | 3 | 30.83 | 2.363 | [24.96, 36.7] | 30 | 29 | 1.833 |" in fid_table
  assert "| ham | 2 | 26 | 1.414 | [13.29, 38.71] | 26 | 25 | 1 |" in fid_table
  assert f"{FID_A}: no significant difference between sagan and ham (p = " in fid_table
  data = json.load(open(os.path.join(out, "comparison.json")))
  plot_file = data["band_plots"][f"{FID_A} [{PROTO_A}; generator: {EMA}]"]
  assert f"]({plot_file})" in fid_table
  img = mimage.imread(os.path.join(out, plot_file))
  assert img.shape[:2] == (500, 800)
  cycle = ["#1f77b4", "#ff7f0e"]   # group i's mean line is drawn in colour Ci
  assert _has_colour(img, cycle[0]) > 30 and _has_colour(img, cycle[1]) > 30
  # The band: sagan's min-max at step 100 spans 31-45, a light tint of C0.
  tint = 0.8 + 0.2 * np.array(mcolors.to_rgb(cycle[0]))
  assert int(np.all(np.abs(img[..., :3] - tint) < 0.03, axis=-1).sum()) > 500


def test_summary_table_shows_each_groups_mean_interval_and_best_of_n():
  from hamgan.compare import seeds_report
  from hamgan.compare import stats as stats_lib

  def metric(values, way):
    return dict(stats_lib.summarize(values, way == "higher"), direction=way)

  setting = "generator: ema_generator; standing batches: 0"
  fids, recalls = [4.0, 5.0, 9.0], [0.5, 0.6, 0.7]   # FID: mean 6, median 5
  payload = {"groups": [{
      "name": "context-none", "n": 3, "metrics": {
          f"fid2k/x [p; {setting}]": metric(fids, "lower"),
          f"fid2k/x [p; generator: generator; standing batches: 0]": metric([9.0, 9.0], "lower"),
          f"recall2k_k3/x [p; {setting}]": metric(recalls, "higher"),
          "it/s": metric([10.0, 12.0, 20.0], "higher")}}]}
  text = seeds_report.summary_table(payload, setting, (("FID", "fid"), ("recall", "recall")))
  row = text.splitlines()[2].split(" | ")
  half = sp_stats.t.ppf(0.975, 2) * np.std(fids, ddof=1) / np.sqrt(3)
  mean, low, high = (float(x) for x in row[2].replace("[", "").replace("]", "")
                     .replace(",", "").split())
  assert row[2].startswith("6.00 [") and mean == 6.0
  assert low == pytest.approx(6 - half, abs=5e-4) and high == pytest.approx(6 + half, abs=0.05)
  assert row[3].startswith("0.600 [")
  assert row[4] == "4.00 (2.00)"   # best-of-n FID is the lowest; it flatters the mean by 2
  assert row[5] == "12.0 |"
  with pytest.raises(ValueError, match="0 metrics named intra_fid"):
    seeds_report.summary_table(payload, setting, (("intra-FID", "intra_fid"),))
  # By default the columns are the summary metrics measured under the setting, in order.
  assert seeds_report.summary_table(payload, setting).splitlines()[0] == (
      "| group | n | FID mean [95% CI] | recall mean [95% CI] | FID best-of-n (flatters by) "
      "| it/s median |")
  with pytest.raises(ValueError, match="no group has any"):
    seeds_report.summary_table(payload, "generator: generator; standing batches: 16")


def test_result_tables_in_the_docs_are_made_from_the_committed_comparison():
  """Each table behind a `summary_table` marker in README.md or docs/ is exactly what
  seeds_report.summary_table makes from the comparison.json the marker names."""
  import pathlib
  import re
  from hamgan.compare import seeds_report
  root = pathlib.Path(__file__).resolve().parents[1]
  marker = re.compile(r"<!-- summary_table (\S+) \"([^\"]+)\" -->\n")
  found = 0
  for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
    text = doc.read_text()
    for m in marker.finditer(text):
      with open(root / m.group(1)) as f:
        expected = seeds_report.summary_table(json.load(f), m.group(2))
      shown = text[m.end():].split("\n\n", 1)[0].strip()
      assert shown == expected, f"{doc.name}: the table after {m.group(0).strip()} is stale"
      found += 1
  assert found >= 1
