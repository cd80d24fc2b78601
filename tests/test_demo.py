"""The demo: its targets (accuracy and recall bars), --tpu, and a short run end to end."""
import json
import os

from absl import flags
from absl.testing import flagsaver
import numpy as np
import pytest
import tensorflow as tf

from hamgan.cli import demo
from hamgan.cli import train as train_cli

FLAGS = flags.FLAGS


def _main(**flag_values):
  if not FLAGS.is_parsed():
    FLAGS(["hamgan-demo"])
  with flagsaver.flagsaver(**flag_values):
    demo.main(["hamgan-demo"])


def test_missed_targets_names_each_bar():
  good = {"conditional_accuracy": 0.95, "recall_k3": 0.6}
  assert demo.missed_targets(good, 0.9, 0.5) == []
  low_acc = dict(good, conditional_accuracy=0.85)
  (msg,) = demo.missed_targets(low_acc, 0.9, 0.5)
  assert "accuracy 0.850 is below the expected 0.9" in msg
  (msg,) = demo.missed_targets(dict(good, recall_k3=0.2), 0.9, 0.5)
  assert "recall 0.200 is below the expected 0.5" in msg
  assert len(demo.missed_targets({"conditional_accuracy": 0.1, "recall_k3": 0.1}, 0.9, 0.5)) == 2
  # The bars the issue asks for are the defaults.
  assert FLAGS["min_accuracy"].default == 0.9 and FLAGS["min_recall"].default == 0.5


def test_tpu_flag_reaches_the_trainer(monkeypatch, tmp_path, capsys):
  seen = {}

  def fake_build_trainer(gin_files, gin_params, model_dir, tpu=None, strategy=None):
    seen.update(gin_files=gin_files, model_dir=model_dir, tpu=tpu)
    raise train_cli.SetupError("no TPU here")

  monkeypatch.setattr(train_cli, "build_trainer", fake_build_trainer)
  with pytest.raises(SystemExit) as exit_info:
    _main(tpu="local", model_dir=str(tmp_path / "d"))
  assert exit_info.value.code == 2
  assert seen == {"gin_files": ["demo_mnist"], "model_dir": str(tmp_path / "d"),
                  "tpu": "local"}
  assert "no TPU here" in capsys.readouterr().err


def test_enlarge_repeats_pixels():
  image = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
  big = demo._enlarge(image, 2)  # pylint: disable=protected-access
  assert big.shape == (4, 4, 3)
  np.testing.assert_array_equal(big[::2, ::2], image)
  np.testing.assert_array_equal(big[1::2, 1::2], image)


@pytest.mark.slow
def test_short_demo_writes_results_and_fails_below_the_bar(tmp_path, monkeypatch):
  from hamgan.evaluation import digits_classifier
  cache = str(tmp_path / "cache")
  monkeypatch.setenv("HAMGAN_CACHE", cache)
  # A quick classifier where the demo caches its own (one epoch instead of eight).
  path = os.path.join(cache, f"mnist5k_classifier_v{digits_classifier.VERSION}")
  quick = digits_classifier.train_and_save(path, epochs=1, dataset="mnist5k")
  model_dir = str(tmp_path / "demo")
  params = ["train.num_steps = 20", "train.checkpoint_every = 10",
            "train.summary_every = 10"]
  result = demo.run_demo(model_dir, gin_params=params, per_class=5, eval_samples=100)
  assert result["step"] == 20
  # The cached classifier was reused, not retrained.
  assert result["classifier_test_accuracy"] == quick["test_accuracy"] >= 0.5  # 0.65 measured
  for key in ("conditional_accuracy", "precision_k3", "recall_k3"):
    assert 0.0 <= result[key] <= 1.0
  with open(os.path.join(model_dir, "demo_result.json")) as f:
    assert json.load(f)["recall_k3"] == result["recall_k3"]
  grid = tf.io.decode_png(tf.io.read_file(result["grid"])).numpy()
  assert grid.shape == (10 * 64, 10 * 64, 3)  # one row per class, 10 samples, 64 px each
  assert grid.std() > 1.0
  rows = [json.loads(l) for l in open(os.path.join(model_dir, "eval", "results.jsonl"))]
  assert [r["step"] for r in rows] == [20]
  fid = [v for k, v in rows[0]["metrics"].items() if k.startswith("fid100")]
  assert len(fid) == 1 and np.isfinite(fid[0]) and fid[0] > 0
  # 20 steps cannot reach the bars: the demo itself says so with status 1 ...
  with pytest.raises(SystemExit) as exit_info:
    _main(model_dir=model_dir, gin_param=params, per_class=5, eval_samples=100)
  assert exit_info.value.code == 1
  # ... and passes once the bars are below what the run reached.
  _main(model_dir=model_dir, gin_param=params, per_class=5, eval_samples=100,
        min_accuracy=0.0, min_recall=0.0)
