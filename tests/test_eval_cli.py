"""hamgan-eval / hamgan-sample on run directories, with the digits classifier offline."""
import hashlib
import os
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from hamgan import run_dir
from hamgan.cli import eval as eval_cli
from hamgan.cli import sample as sample_cli
from hamgan.evaluation import classifier as classifier_lib
from hamgan.evaluation import digits_classifier
from hamgan.evaluation import evaluator
from hamgan.evaluation import features
from hamgan.evaluation import metrics
from hamgan.evaluation import real_stats
from hamgan.evaluation import restore
from hamgan.models import Generator

Z_DIM, CH, CLASSES, SIZE = 16, 4, 10, 32
CONFIG = f"""# Parameters for Generator:
hamgan.models.Generator.ch = {{ch}}
hamgan.models.Generator.context = 'none'
hamgan.models.Generator.image_size = {SIZE}
hamgan.models.Generator.num_classes = {CLASSES}
hamgan.models.Generator.z_dim = {Z_DIM}
train.dataset = 'digits'
train.num_steps = 30
"""


def _generator(ch=CH, seed=0):
  tf.keras.utils.set_random_seed(seed)
  g = Generator(image_size=SIZE, num_classes=CLASSES, ch=ch, z_dim=Z_DIM, context="none")
  restore.build_generator(g)
  return g


def _make_run(path, steps=(10, 20), ch=CH, done=True):
  """A run directory like hamgan-train's: config, ckpt per step (G != EMA G), marker."""
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, "operative_config.gin"), "w") as f:
    f.write(CONFIG.format(ch=CH))
  g, ema, step = _generator(ch, 0), _generator(ch, 1), tf.Variable(0, dtype=tf.int64)
  manager = tf.train.CheckpointManager(
      tf.train.Checkpoint(generator=g, ema_generator=ema, step=step),
      os.path.join(path, "checkpoints"), max_to_keep=5)
  for s in steps:
    step.assign(s)
    ema.linear.kernel.assign_add(0.01 * tf.ones_like(ema.linear.kernel))  # a new EMA per step
    manager.save(checkpoint_number=s)
  if done:
    open(os.path.join(path, "TRAINING_DONE"), "w").close()
  return g, ema, manager


@pytest.fixture(scope="module")
def digits_classifier_path(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("digits_cnn"))
  info = digits_classifier.train_and_save(path)
  assert info["test_accuracy"] >= 0.95, info
  return path


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
  return {"data_dir": str(tmp_path_factory.mktemp("tfds")),
          "cache_dir": str(tmp_path_factory.mktemp("real_cache"))}


def _flags(model_dir, shared, clf_path, *extra):
  return eval_cli.parse_flags([
      "hamgan-eval", f"--model_dir={model_dir}", "--num_samples=200", "--batch_size=100",
      f"--data_dir={shared['data_dir']}", f"--cache_dir={shared['cache_dir']}",
      f"--classifier_path={clf_path}", *extra])


def test_digits_classifier_contract_and_conditional_accuracy(digits_classifier_path):
  clf = classifier_lib.load_classifier(digits_classifier_path)
  assert clf.image_size == 32
  (_, _), (x_test, y_test) = digits_classifier.load_digits_arrays()
  out = clf(x_test[:5])
  assert out["pool_3"].shape == (5, 64) and out["logits"].shape == (5, 10)
  assert np.mean(digits_classifier.classify(x_test, digits_classifier_path) == y_test) >= 0.95

  class RealDigits:
    """A 'generator' that returns a real test digit of the requested class."""
    num_classes, z_dim = 10, 4

    def __call__(self, inputs, training=None):
      _, y = inputs
      picks = [np.flatnonzero(y_test == c)[i % 5] for i, c in enumerate(y.numpy())]
      return tf.constant(x_test[picks])

  # Each class is asked for 20 samples: picks cycle its first 5 test digits.
  pred = digits_classifier.classify(x_test, clf)
  expected = np.mean([pred[np.flatnonzero(y_test == c)[i % 5]] == c
                      for c in range(10) for i in range(20)])
  assert expected >= 0.9
  assert digits_classifier.conditional_accuracy(RealDigits(), clf, 20) == pytest.approx(expected)
  # An untrained G's samples land in few classes: about chance for "as requested".
  assert digits_classifier.conditional_accuracy(_generator(), clf, 10) < 0.4


def test_eval_all_steps_scores_only_the_steps_named(tmp_path, shared, digits_classifier_path):
  model_dir = str(tmp_path / "run")
  _make_run(model_dir, steps=(10, 20, 30))
  with pytest.raises(ValueError, match=r"step\(s\) \[15\].*it has \[10, 20, 30\]"):
    eval_cli.evaluate(_flags(model_dir, shared, digits_classifier_path, "--all",
                             "--steps=10,15"))
  with pytest.raises(ValueError, match="add --all"):
    eval_cli.evaluate(_flags(model_dir, shared, digits_classifier_path, "--steps=10"))
  assert run_dir.read_results(model_dir) == []
  rows = eval_cli.evaluate(_flags(model_dir, shared, digits_classifier_path, "--all",
                                  "--steps=30,10", "--standing_batches=0"))
  assert [r["step"] for r in rows] == [10, 30]
  assert sorted(r["step"] for r in run_dir.read_results(model_dir)) == [10, 30]


def test_eval_all_writes_rows_grids_and_does_not_duplicate(
    tmp_path, shared, digits_classifier_path):
  model_dir = str(tmp_path / "run")
  _, ema, _ = _make_run(model_dir)
  lines = []
  rows = eval_cli.evaluate(_flags(model_dir, shared, digits_classifier_path, "--all"),
                           write=lines.append)
  assert [r["step"] for r in rows] == [10, 20]
  assert any("img/s" in l and "ETA" in l for l in lines)
  stored = run_dir.read_results(model_dir)
  assert len(stored) == 2
  with open(os.path.join(model_dir, "operative_config.gin"), "rb") as f:
    sha = hashlib.sha256(f.read()).hexdigest()
  for row in stored:
    assert row["generator"] == "ema_generator" and row["num_samples"] == 200
    # Which FID/IS code made the numbers: TF-GAN on the tpu stack, hamgan's elsewhere.
    assert row["metrics_implementation"] == (
        "hamgan-float64" if metrics.tfgan is None else "tfgan-2.1.0")
    assert row["protocol"].startswith("200/digits-test, classifier ")
    assert row["config_sha256"] == sha and row["real_count"] == 200  # of the 297 test digits
    assert row["metrics"]["fid200/digits-test"] > 0 and row["metrics"]["is200"] >= 1.0
    assert row["checkpoint"].endswith(f"ckpt-{row['step']}")
    grid = tf.io.decode_png(tf.io.read_file(row["samples_png"])).numpy()
    assert grid.shape == (10 * SIZE, 8 * SIZE, 3)
  # The row's FID is that of the EMA weights of step 20 (restored, not the raw G), with
  # their stored batch-norm statistics, the EMA G's default.
  clf = classifier_lib.load_classifier(digits_classifier_path)
  key = real_stats.RealStatsKey("digits", "test", SIZE, 200, clf.identity,
                                data_dir=shared["data_dir"],
                                source_version="tfds:hamgan_digits:1.0.0")
  real, cached = real_stats.load_or_compute(key, lambda: 1 / 0, clf,
                                            cache_dir=shared["cache_dir"])
  assert cached and stored[1]["standing_batches"] == 0
  values, _ = evaluator.evaluate_generator(ema, clf, real, 200, CLASSES, Z_DIM,
                                           batch_size=100)
  assert stored[1]["metrics"]["fid200/digits-test"] == pytest.approx(
      values["fid200/digits-test"], rel=1e-4)

  # Again: nothing new. --force on one step replaces its row. The raw G is a new row.
  assert eval_cli.evaluate(_flags(model_dir, shared, digits_classifier_path, "--all")) == []
  assert len(run_dir.read_results(model_dir)) == 2
  redo = eval_cli.evaluate(_flags(model_dir, shared, digits_classifier_path,
                                  "--checkpoint=10", "--force"))
  after = run_dir.read_results(model_dir)
  assert len(redo) == 1 and len(after) == 2
  assert sorted(r["step"] for r in after) == [10, 20]
  assert [r for r in after if r["step"] == 10][0]["wall_time"] == redo[0]["wall_time"]
  raw = eval_cli.evaluate(_flags(model_dir, shared, digits_classifier_path,
                                 "--use_ema=false"))
  assert raw[0]["generator"] == "generator" and raw[0]["step"] == 20
  assert raw[0]["metrics"]["fid200/digits-test"] != pytest.approx(
      stored[1]["metrics"]["fid200/digits-test"], rel=1e-3)
  assert len(run_dir.read_results(model_dir)) == 3
  # The library entry point sees the same rows: step 20 of the EMA G is done already.
  settings = evaluator.EvalSettings(
      num_samples=200, batch_size=100, classifier_path=digits_classifier_path,
      data_dir=shared["data_dir"], cache_dir=shared["cache_dir"])
  assert evaluator.evaluate_checkpoint(model_dir, "20", settings) is None
  with pytest.raises(ValueError, match=r"available steps: \[10, 20\]"):
    evaluator.evaluate_checkpoint(model_dir, "30", settings)


def test_watch_follows_training_until_done(tmp_path, shared, digits_classifier_path):
  model_dir = str(tmp_path / "run")  # does not exist yet: the watcher starts first

  def train_on():
    time.sleep(0.5)
    _, _, manager = _make_run(model_dir, steps=(5,), done=False)
    time.sleep(1.0)
    manager.checkpoint.step.assign(15)
    manager.save(checkpoint_number=15)
    time.sleep(0.5)
    open(os.path.join(model_dir, "TRAINING_DONE"), "w").close()

  writer = threading.Thread(target=train_on)
  writer.start()
  rows = eval_cli.evaluate(_flags(model_dir, shared, digits_classifier_path, "--watch",
                                  "--poll_s=0.2", "--watch_timeout_s=120"))
  writer.join()
  assert [r["step"] for r in rows] == [5, 15]
  assert [r["step"] for r in run_dir.read_results(model_dir)] == [5, 15]
  # The real data set and split came from the run's config, read once it existed.
  assert all(r["real_dataset"] == "digits" and r["real_split"] == "test" for r in rows)


def test_offline_without_classifier_path_fails_first_and_fast(tmp_path, monkeypatch, capsys):
  monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "hub"))
  # Hermetic: the TF-Hub host is unreachable whatever this machine's network.
  monkeypatch.setattr(classifier_lib, "host_reachable", lambda url, timeout=None: False)
  model_dir = str(tmp_path / "empty_run")  # no checkpoint either: the classifier comes first
  os.makedirs(model_dir)
  start = time.time()
  code = eval_cli.main(eval_cli.parse_flags(["hamgan-eval", f"--model_dir={model_dir}",
                                             "--real_dataset=digits"]))
  assert code == 1 and time.time() - start < 10
  err = capsys.readouterr().err
  assert "--classifier_path" in err and "TFHUB_CACHE_DIR" in err and "checkpoint" not in err


def test_no_checkpoint_and_wrong_shape_are_clear_errors(tmp_path, shared,
                                                        digits_classifier_path, capsys):
  empty = str(tmp_path / "empty")
  os.makedirs(empty)
  with open(os.path.join(empty, "operative_config.gin"), "w") as f:
    f.write(CONFIG.format(ch=CH))
  with pytest.raises(ValueError, match="no checkpoint in .*checkpoints"):
    eval_cli.evaluate(_flags(empty, shared, digits_classifier_path))
  # Checkpoint of a ch=8 generator, config of a ch=4 one.
  wide = str(tmp_path / "wide")
  _make_run(wide, steps=(3,), ch=2 * CH)
  code = eval_cli.main(_flags(wide, shared, digits_classifier_path))
  err = capsys.readouterr().err
  assert code == 1
  assert "another shape" in err and f"ch={CH}" in err
  shapes = [s for s in ("(10, 32)", "(10, 16)") if s in err]  # cBN tables: 8ch vs 4ch wide
  assert len(shapes) == 2, err
  # A checkpoint with a context module, a config without: more variables, not fewer.
  g = Generator(image_size=SIZE, num_classes=CLASSES, ch=CH, z_dim=Z_DIM, context="ham_nmf",
                context_settings={"rank": 4})
  restore.build_generator(g)
  path = tf.train.Checkpoint(ema_generator=g).save(str(tmp_path / "ham" / "ckpt"))
  with pytest.raises(ValueError, match=r"with \d+ variables but .* context='none'.* has \d+"):
    restore.restore_generator(_generator(), path)
  with pytest.raises(ValueError, match="exclude each other"):
    eval_cli.evaluate(_flags(wide, shared, digits_classifier_path, "--all", "--watch"))


def test_sample_writes_npz_and_pngs_of_the_restored_generator(tmp_path):
  model_dir = str(tmp_path / "run")
  _, ema, _ = _make_run(model_dir, steps=(7,))
  out = str(tmp_path / "s.npz")
  code = sample_cli.main(sample_cli.parse_flags([
      "hamgan-sample", f"--model_dir={model_dir}", "--num_samples=5", "--classes=3,5",
      "--truncation=0.7", "--standing_batches=16", f"--out={out}"]))
  assert code == 0
  with np.load(out) as data:
    images, labels, z = data["images"], data["labels"], data["z"]
  assert images.shape == (5, SIZE, SIZE, 3) and images.dtype == np.uint8
  assert list(labels) == [3, 5, 3, 5, 3] and np.abs(z).max() <= 0.7
  stored = [v.numpy() for v in ema.variables]
  # Standing statistics asked for: 16 batches of 100, seed + 1, the same truncation.
  restore.recompute(ema, 16, 100, seed=1, truncation=0.7)
  expected = ema((tf.constant(z), tf.constant(labels)), training=False).numpy()
  np.testing.assert_array_equal(images, np.clip(np.round((expected + 1) * 127.5), 0, 255))
  for v, value in zip(ema.variables, stored):
    v.assign(value)
  png_dir = str(tmp_path / "pngs")
  assert sample_cli.main(sample_cli.parse_flags([
      "hamgan-sample", f"--model_dir={model_dir}", "--num_samples=3", "--classes=9",
      f"--out={png_dir}"])) == 0   # the EMA G's default: its stored statistics
  names = sorted(os.listdir(png_dir))
  assert names == [f"sample_0000{i}_class9.png" for i in range(3)]
  first = tf.io.decode_png(tf.io.read_file(os.path.join(png_dir, names[0]))).numpy()
  z0, _ = features.latent_inputs(3, 1, Z_DIM, seed=0)
  ref = ema((tf.constant(z0[:1]), tf.constant([9])), training=False).numpy()[0]
  np.testing.assert_array_equal(first, np.clip(np.round((ref + 1) * 127.5), 0, 255))
  with pytest.raises(ValueError, match="outside 0..9"):
    sample_cli.sample(sample_cli.parse_flags([
        "hamgan-sample", f"--model_dir={model_dir}", "--classes=12", f"--out={png_dir}"]))


def test_console_entry_points_parse_and_report_errors(tmp_path, digits_classifier_path):
  """The real `run()` entry points (absl app) in a fresh process."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  model_dir = str(tmp_path / "no_ckpt")
  os.makedirs(model_dir)
  with open(os.path.join(model_dir, "operative_config.gin"), "w") as f:
    f.write(CONFIG.format(ch=CH))
  code = ("import sys; from hamgan.cli import eval as e, sample as s; "
          "sys.argv = sys.argv[1:]; (e if sys.argv[0] == 'eval' else s).run()")
  res = subprocess.run(
      [sys.executable, "-c", code, "eval", f"--model_dir={model_dir}",
       f"--classifier_path={digits_classifier_path}", "--real_dataset=digits"],
      capture_output=True, text=True, timeout=120)
  assert res.returncode == 1 and "no checkpoint in" in res.stderr, res.stderr[-2000:]
  res = subprocess.run([sys.executable, "-c", code, "sample", "--help"],
                       capture_output=True, text=True, timeout=120)
  assert res.returncode == 0 and "--truncation" in res.stdout
