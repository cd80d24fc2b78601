"""The evaluator's integrity: what makes a new row, a new cache, an honest name, standing stats."""
import logging as std_logging
import os

import numpy as np
import pytest
import tensorflow as tf

from hamgan import run_dir
from hamgan.evaluation import evaluator
from hamgan.evaluation import real_stats
from hamgan.evaluation import restore
from hamgan import checkpoints
from test_eval_cli import _make_run
from test_evaluation import CountingData, StandInClassifier, _real_images


@pytest.fixture(scope="module")
def clf_path(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("standin_clf"))
  tf.saved_model.save(StandInClassifier(seed=0), path)
  return path


def _real(n=64):
  return tf.image.resize(_real_images(n), (32, 32)).numpy()


def _evaluator(model_dir, clf_path, cache_dir, data=None, **overrides):
  settings = dict(num_samples=60, batch_size=30, real_dataset="blobs", real_split="train",
                  real_num_samples=60, classifier_path=clf_path, cache_dir=cache_dir,
                  standing_batches=1, data_dir="/data/a", progress_every_s=1e9)
  settings.update(overrides)
  return evaluator.Evaluator(model_dir, evaluator.EvalSettings(**settings),
                             make_real_dataset=data or CountingData(_real(), batch=16),
                             write=lambda _: None)


def test_changed_data_dir_recomputes_the_real_cache(tmp_path, clf_path):
  model_dir, cache = str(tmp_path / "run"), str(tmp_path / "cache")
  _make_run(model_dir, steps=(10,))
  data = CountingData(_real(), batch=16)
  _evaluator(model_dir, clf_path, cache, data).evaluate_all()
  assert data.reads == 4
  _evaluator(model_dir, clf_path, cache, data, force=True).evaluate_all()
  assert data.reads == 4  # same key: from the cache
  rows = _evaluator(model_dir, clf_path, cache, data, data_dir="/data/b").evaluate_all()
  assert data.reads == 8 and rows[0]["real_data_dir"] == "/data/b"
  assert len(run_dir.read_results(model_dir)) == 2  # another real side: another row


def test_kid_after_a_plain_evaluation_adds_a_row(tmp_path, clf_path):
  model_dir, cache = str(tmp_path / "run"), str(tmp_path / "cache")
  _make_run(model_dir, steps=(10,))
  first = _evaluator(model_dir, clf_path, cache).evaluate_all()
  assert len(first) == 1 and not any(k.startswith("kid") for k in first[0]["metrics"])
  assert _evaluator(model_dir, clf_path, cache).evaluate_all() == []  # nothing new
  with_kid = _evaluator(model_dir, clf_path, cache, kid=True).evaluate_all()
  assert len(with_kid) == 1 and "kid60-vs60/blobs-train" not in with_kid[0]["metrics"]
  assert "kid60/blobs-train" in with_kid[0]["metrics"]
  assert with_kid[0]["metrics"]["fid60/blobs-train"] == first[0]["metrics"]["fid60/blobs-train"]
  # Other seeds and truncations change numbers: each is a row of its own.
  assert len(_evaluator(model_dir, clf_path, cache, seed=1).evaluate_all()) == 1
  assert len(_evaluator(model_dir, clf_path, cache, truncation=1.0).evaluate_all()) == 1
  assert len(run_dir.read_results(model_dir)) == 4


def test_a_rewritten_checkpoint_is_evaluated_again(tmp_path, clf_path):
  model_dir, cache = str(tmp_path / "run"), str(tmp_path / "cache")
  _, ema, manager = _make_run(model_dir, steps=(10,))
  path = os.path.join(model_dir, "checkpoints", "ckpt-10")
  before = checkpoints.fingerprint(path)
  first = _evaluator(model_dir, clf_path, cache).evaluate_all()
  assert checkpoints.fingerprint(path) == before  # evaluation never writes it
  assert _evaluator(model_dir, clf_path, cache).evaluate_all() == []
  ema.linear.kernel.assign_add(0.5 * tf.ones_like(ema.linear.kernel))
  manager.save(checkpoint_number=10)  # the same path, other weights
  again = _evaluator(model_dir, clf_path, cache).evaluate_all()
  assert len(again) == 1 and again[0]["checkpoint"] == first[0]["checkpoint"]
  assert again[0]["checkpoint_sha256"] != first[0]["checkpoint_sha256"]
  assert again[0]["metrics"]["fid60/blobs-train"] != first[0]["metrics"]["fid60/blobs-train"]


def test_fewer_real_images_than_asked_are_named_and_warned(tmp_path, clf_path, caplog):
  model_dir, cache = str(tmp_path / "run"), str(tmp_path / "cache")
  _make_run(model_dir, steps=(10,))
  with caplog.at_level(std_logging.WARNING):
    rows = _evaluator(model_dir, clf_path, cache, real_num_samples=100,
                      manifold=True).evaluate_all()
  row = rows[0]
  assert row["real_count"] == 64 and row["protocol"].startswith("60-vs64/blobs-train")
  assert "fid60-vs64/blobs-train" in row["metrics"] and "is60" in row["metrics"]
  assert "precision60-vs64_k3/blobs-train" in row["metrics"]
  assert not any(k.startswith("fid60/") for k in row["metrics"])
  assert any("64 real images of the 100 asked" in r.getMessage() for r in caplog.records)


def test_standing_statistics_default_for_the_raw_g_and_recorded(tmp_path, clf_path):
  model_dir, cache = str(tmp_path / "run"), str(tmp_path / "cache")
  _make_run(model_dir, steps=(10,))
  ema = _evaluator(model_dir, clf_path, cache, standing_batches=None)
  assert ema.evaluate_all()[0]["standing_batches"] == 0
  ev = _evaluator(model_dir, clf_path, cache, standing_batches=None, use_ema=False)
  (row,) = ev.evaluate_all()
  assert row["generator"] == "generator"
  assert row["standing_batches"] == restore.DEFAULT_BATCHES
  # The generator in memory holds recomputed statistics, the checkpoint the stored ones.
  stored = tf.train.load_checkpoint(row["checkpoint"])
  layer = restore.batch_norm_layers(ev.generator)[0]
  name = [n for n in stored.get_variable_to_shape_map()
          if n.startswith("generator") and layer.name in n and "moving_mean" in n][0]
  assert not np.allclose(stored.get_tensor(name), layer.moving_mean.numpy())


def test_intra_fid_with_labelled_real_data_is_the_mean_of_per_class_fids(tmp_path, clf_path):
  model_dir, cache = str(tmp_path / "run"), str(tmp_path / "cache")
  _make_run(model_dir, steps=(10,))
  images, labels = _real(), (np.arange(64) % 10).astype(np.int32)

  def labelled():
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)

  (row,) = _evaluator(model_dir, clf_path, cache, data=labelled, intra_fid=True,
                      num_samples=100, real_num_samples=64).evaluate_all()
  per_class = row["intra_fid_per_class"]
  assert sorted(per_class, key=int) == [str(c) for c in range(10)]
  assert row["metrics"]["intra_fid100/blobs-train"] == pytest.approx(
      np.mean(list(per_class.values())), rel=1e-12)
  assert row["metric_set"] == ["fid", "intra_fid", "is"]


def test_conditional_accuracy_equals_argmax_of_the_classifier_on_the_drawn_classes(
    tmp_path):
  """The row's conditional accuracy against G and the classifier run by hand."""
  from hamgan.evaluation import features
  from test_eval_cli import CLASSES, Z_DIM, _generator
  model_dir, cache = str(tmp_path / "run"), str(tmp_path / "cache")
  _make_run(model_dir, steps=(10,))
  clf = str(tmp_path / "clf")
  tf.saved_model.save(StandInClassifier(seed=4, classes=CLASSES), clf)
  (row,) = _evaluator(model_dir, clf, cache, conditional_accuracy=True, num_samples=100,
                      standing_batches=0).evaluate_all()
  g = _generator()
  restore.restore_generator(g, row["checkpoint"], use_ema=True)
  z, y = features.latent_inputs(100, CLASSES, Z_DIM, seed=0)
  images = g((tf.constant(z), tf.constant(y)), training=False)
  from hamgan.evaluation import classifier as classifier_lib
  logits = tf.saved_model.load(clf)(classifier_lib.to_classifier_input(images, 12))["logits"]
  logits = logits.numpy()
  expected = np.mean(np.argmax(logits.astype(np.float64), 1) == y)
  # Another batching may round a near-tie of the two top logits the other way on
  # another CPU: such samples (top-2 gap under 1e-5 of the logits' scale) may differ.
  top2 = np.sort(logits, axis=1)[:, -2:]
  near_ties = np.sum(top2[:, 1] - top2[:, 0] < 1e-5 * np.abs(logits).max())
  assert abs(row["metrics"]["conditional_accuracy100"] - expected) <= near_ties / 100 + 1e-12
  # The stand-in's answers vary (seed 4 spreads them over 3 classes here), so a
  # mismatch of samples and labels would show; a constant answer would hide it.
  assert len(np.unique(np.argmax(logits, 1))) >= 3 and 0.0 < expected < 1.0
  assert "conditional_accuracy" in row["metric_set"]


def test_conditional_accuracy_refuses_a_classifier_of_other_classes(tmp_path, clf_path):
  model_dir, cache = str(tmp_path / "run"), str(tmp_path / "cache")
  _make_run(model_dir, steps=(10,))   # G has 10 classes, the stand-in classifier 7
  with pytest.raises(ValueError, match="7 outputs and the generator 10 classes"):
    _evaluator(model_dir, clf_path, cache, conditional_accuracy=True).evaluate_all()


def test_conditional_accuracy_formula_on_made_up_logits():
  from hamgan.evaluation import metrics
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 5, 40)
  logits = rng.normal(size=(40, 5))
  logits[np.arange(40), labels] += np.where(np.arange(40) % 4 != 0, 10.0, -10.0)  # 30 right
  assert metrics.conditional_accuracy(logits, labels, 5) == 0.75
  with pytest.raises(ValueError, match="6 classes"):
    metrics.conditional_accuracy(logits, labels, 6)


def test_one_cache_root_for_classifiers_and_real_statistics(monkeypatch, tmp_path):
  from hamgan.evaluation import digits_classifier
  monkeypatch.delenv("HAMGAN_CACHE_DIR", raising=False)
  monkeypatch.setenv("HAMGAN_CACHE", str(tmp_path / "c"))
  assert digits_classifier.default_cache_dir() == str(tmp_path / "c")
  assert real_stats.default_cache_dir() == str(tmp_path / "c" / "real_stats")
  # The old name of the variable is still read, the documented one wins.
  monkeypatch.setenv("HAMGAN_CACHE_DIR", str(tmp_path / "old"))
  assert real_stats.default_cache_dir() == str(tmp_path / "c" / "real_stats")
  monkeypatch.delenv("HAMGAN_CACHE")
  assert digits_classifier.default_cache_dir() == str(tmp_path / "old")
