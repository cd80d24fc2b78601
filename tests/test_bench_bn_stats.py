"""hamgan-bench bn-stats: its rows are hamgan-eval's numbers with the statistics swapped."""
import json

import numpy as np
import pytest

from hamgan.bench import bn_stats
from hamgan.cli import eval as eval_cli
from test_eval_cli import _flags, _make_run, digits_classifier_path, shared  # noqa: F401 (fixtures)


def test_plan_swaps_each_layer_both_ways_and_distances_follow_the_formula():
  plan = bn_stats.swap_plan(3, scales=(1.1,))
  names = [name for name, _, _ in plan]
  assert names[:2] == ["all stored", "all standing"] and len(plan) == 2 + 2 * 3 + 1
  assert plan[2][1] == ["stored", "standing", "standing"]
  assert plan[3][1] == ["standing", "stored", "stored"]
  m0, v0 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 4.0, 0.25])
  m1, v1 = np.array([0.5, 1.0, 1.0]), np.array([2.0, 2.0, 0.25])
  ((ratio, shift),) = bn_stats.layer_distances([(m0, v0)], [(m1, v1)])
  assert ratio == 1.0 and shift == 0.5  # medians of (2, 0.5, 1) and (0.5, 0, 2)


def test_stored_and_standing_rows_equal_hamgan_eval_rows(tmp_path, shared,
                                                         digits_classifier_path):
  model_dir = str(tmp_path / "run")
  _make_run(model_dir, steps=(10,))
  common = ["--num_samples=200", "--batch_size=100"]
  evaluated = {}
  for name, extra in (("all stored", ["--standing_batches=0"]),
                      ("all standing", ["--standing_batches=16"])):
    (row,) = eval_cli.evaluate(_flags(model_dir, shared, digits_classifier_path, *extra))
    evaluated[name] = row["metrics"]["fid200/digits-test"]
  out = tmp_path / "bn.jsonl"
  bn_stats.main([f"--model_dir={model_dir}", f"--classifier_path={digits_classifier_path}",
                 f"--data_dir={shared['data_dir']}", f"--cache_dir={shared['cache_dir']}",
                 "--real_dataset=digits", f"--out={out}", "--markdown=", *common])
  rows = {r["statistics"]: r for r in map(json.loads, out.read_text().splitlines())}
  assert evaluated["all stored"] != pytest.approx(evaluated["all standing"], rel=1e-3)
  for name, fid in evaluated.items():
    assert rows[name]["fid"] == pytest.approx(fid, rel=1e-4), name
  # A layer swapped in from the other set moves the FID off both ends' values.
  assert rows["standing, layer 0 stored"]["fid"] != pytest.approx(
      rows["all standing"]["fid"], rel=1e-6)
