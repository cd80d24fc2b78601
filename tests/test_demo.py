"""The demo's wiring, end to end on a very short run (the full demo is `make demo`)."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf


@pytest.mark.slow
def test_short_demo_writes_grid_result_and_eval_row(tmp_path):
  from hamgan.cli import demo
  model_dir = str(tmp_path / "demo")
  result = demo.run_demo(model_dir, gin_params=["train.num_steps = 20",
                                                "train.checkpoint_every = 10",
                                                "train.summary_every = 10"],
                         per_class=5, eval_samples=100)
  assert result["step"] == 20
  assert 0.0 <= result["conditional_accuracy"] <= 1.0
  # The stand-in classifier is good on real digits, so its verdict on samples means something.
  assert result["classifier_test_accuracy"] >= 0.95
  with open(os.path.join(model_dir, "demo_result.json")) as f:
    assert json.load(f)["step"] == 20
  grid = tf.io.decode_png(tf.io.read_file(result["grid"])).numpy()
  assert grid.shape == (10 * 32, 10 * 32, 3)  # one row per digit class, 10 samples each
  assert grid.std() > 1.0
  rows = [json.loads(l) for l in open(os.path.join(model_dir, "eval", "results.jsonl"))]
  assert [r["step"] for r in rows] == [20]
  fid = rows[0]["metrics"]["fid100/digits-test"]
  assert np.isfinite(fid) and fid > 0
  assert sorted(os.listdir(os.path.join(model_dir, "checkpoints")))[0].startswith("checkpoint")
