"""Scoring images a user already has: folders, .npz, statistics files, bad input."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from hamgan import images as image_io
from hamgan.evaluation import classifier as classifier_lib
from hamgan.evaluation import features as features_lib
from hamgan.evaluation import image_eval
from hamgan.evaluation import metrics
from hamgan.evaluation import scoring
from test_evaluation import StandInClassifier, _fid_reference, _numpy_features, _real_images


@pytest.fixture(scope="module")
def classifier_path(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("standin"))
  tf.saved_model.save(StandInClassifier(seed=0), path)
  return path


def _uint8(n, seed):
  return image_io.to_uint8(_real_images(n, seed=seed))


def _settings(classifier_path, **kw):
  return image_eval.ImageEvalSettings(classifier_path=classifier_path, batch_size=32,
                                      progress_every_s=1e9, **kw)


def _write_folder(path, images):
  os.makedirs(path)
  for i, image in enumerate(images):
    image_io.write_png(os.path.join(path, f"img_{i:04d}.png"), image)
  return path


def test_npz_and_png_folder_give_the_same_numbers_equal_to_scipy(tmp_path, classifier_path):
  fake, real = _uint8(90, seed=1), _uint8(80, seed=2)
  labels = np.arange(90) % 3
  np.savez(tmp_path / "fake.npz", images=fake, labels=labels)
  np.savez(tmp_path / "real.npz", images=real, labels=np.arange(80) % 3)
  folder = _write_folder(str(tmp_path / "fake_png"), fake)
  kw = dict(real_images=str(tmp_path / "real.npz"), kid=True, manifold=True)
  from_npz = image_eval.evaluate_images(_settings(
      classifier_path, images=str(tmp_path / "fake.npz"), intra_fid=True, **kw))
  from_png = image_eval.evaluate_images(_settings(classifier_path, images=folder, **kw))
  assert from_npz["out"] == str(tmp_path / "fake.npz") + ".eval.json"
  with open(from_npz["out"]) as f:
    assert json.load(f)["metrics"] == from_npz["metrics"]
  for name, value in from_png["metrics"].items():
    assert from_npz["metrics"][name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
  # The FID against SciPy on features from the SavedModel called directly.
  to_float = lambda x: x.astype(np.float32) / 127.5 - 1.0  # noqa: E731
  fake_pool, _ = _numpy_features(classifier_path, to_float(fake))
  real_pool, _ = _numpy_features(classifier_path, to_float(real))
  assert from_npz["metrics"]["fid90/real"] == pytest.approx(
      _fid_reference(real_pool, fake_pool), rel=1e-6)
  # Intra-class FID: the mean of the per-class FIDs, each against SciPy.
  per_class = [_fid_reference(real_pool[np.arange(80) % 3 == c], fake_pool[labels == c])
               for c in range(3)]
  assert from_npz["metrics"]["intra_fid90/real"] == pytest.approx(np.mean(per_class),
                                                                   rel=1e-6)
  assert sorted(from_npz["intra_fid_per_class"]) == ["0", "1", "2"]
  assert {"precision90_k3/real", "recall90_k3/real", "density90_k5/real",
          "coverage90_k5/real", "kid90/real"} <= set(from_png["metrics"])


def test_exported_statistics_give_the_same_fid_and_refuse_feature_metrics(
    tmp_path, classifier_path, monkeypatch):
  fake, real = _uint8(70, seed=3), _uint8(60, seed=4)
  np.savez(tmp_path / "fake.npz", images=fake)
  np.savez(tmp_path / "real.npz", images=real)
  stats_path = str(tmp_path / "stats" / "real_stats.npz")
  direct = image_eval.evaluate_images(_settings(
      classifier_path, images=str(tmp_path / "fake.npz"),
      real_images=str(tmp_path / "real.npz"), export_stats=stats_path,
      out=str(tmp_path / "a.json")))
  with np.load(stats_path) as data:
    assert data["mu"].shape == (10,) and data["sigma"].shape == (10, 10)
    assert int(data["count"]) == 60 and "sha256" in str(data["key"])
  from_stats = image_eval.evaluate_images(_settings(
      classifier_path, images=str(tmp_path / "fake.npz"), real_stats=stats_path,
      out=str(tmp_path / "b.json")))
  assert from_stats["metrics"]["fid70/real_stats"] == pytest.approx(
      direct["metrics"]["fid70/real"], rel=1e-6)
  # Statistics alone: KID and the manifold metrics say they need features, before work.
  called = []
  monkeypatch.setattr(features_lib, "dataset_features", lambda *a, **k: called.append(1))
  for flag in ("kid", "manifold", "intra_fid"):
    with pytest.raises(ValueError, match=f"--{flag} need the real features.*--real_stats"):
      image_eval.evaluate_images(_settings(classifier_path, images=str(tmp_path / "fake.npz"),
                                           real_stats=stats_path, **{flag: True}))
  assert not called


def test_fid_from_moments_equals_fid_from_activations():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(200, 6)), rng.normal(size=(150, 6)) * 1.3 + 0.2
  got = metrics.frechet_distance_from_moments(
      a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
  assert got == pytest.approx(_fid_reference(a, b), rel=1e-9)


def test_bad_inputs_fail_before_any_work(tmp_path, classifier_path, monkeypatch):
  loaded = []
  real_load = classifier_lib.load_classifier
  monkeypatch.setattr(classifier_lib, "load_classifier",
                      lambda *a, **k: loaded.append(1) or real_load(*a, **k))
  np.savez(tmp_path / "real.npz", images=_uint8(20, seed=5))  # the fewest scored: 20
  real = str(tmp_path / "real.npz")
  os.makedirs(tmp_path / "empty")
  (tmp_path / "empty" / "notes.txt").write_text("no images here")
  mixed = _write_folder(str(tmp_path / "mixed"), _uint8(3, seed=6))
  image_io.write_png(os.path.join(mixed, "img_9999.png"), np.zeros((16, 16, 3), np.uint8))
  np.savez(tmp_path / "noimages.npz", pictures=_uint8(4, seed=7))
  np.savez(tmp_path / "range.npz", images=_real_images(4) * 3)
  cases = [
      (str(tmp_path / "empty"), "holds no PNG or JPEG files"),
      (mixed, r"mixed sizes.*img_0000.png.*\(8, 8\).*img_9999.png.*\(16, 16\).*resize"),
      (str(tmp_path / "noimages.npz"), r"holds \['pictures'\] but no `images` array.*np.savez"),
      (str(tmp_path / "range.npz"), r"span \[.*expected \[-1, 1\]"),
      (str(tmp_path / "missing.npz"), "does not exist"),
  ]
  for path, message in cases:
    with pytest.raises(ValueError, match=message) as err:
      image_eval.evaluate_images(_settings(classifier_path, images=path, real_images=real))
    assert os.path.basename(path.rstrip("/")) in str(err.value)
  assert not loaded  # every one failed before the classifier was loaded
  with pytest.raises(ValueError, match="exactly one real side"):
    image_eval.evaluate_images(_settings(classifier_path, images=real))
  # Statistics of another feature size: named once the classifier says its size.
  np.savez(tmp_path / "wide.npz", mu=np.zeros(2048), sigma=np.eye(2048))
  computed = []
  monkeypatch.setattr(features_lib, "dataset_features", lambda *a, **k: computed.append(1))
  with pytest.raises(ValueError, match=r"wide.npz.*2048-d features but the classifier "
                                       r"gives 10-d.*same classifier"):
    image_eval.evaluate_images(_settings(classifier_path, images=real,
                                         real_stats=str(tmp_path / "wide.npz")))
  assert not computed


def test_scoring_names_carry_the_real_count_when_fewer_than_asked():
  assert scoring.sample_label(2000, 297, 2000) == "2k-vs297"
  assert scoring.sample_label(2000, 2000, 2000) == "2k"
  assert scoring.sample_label(50000, 10000, None) == "50k"


def test_float_npz_reads_as_the_same_images(tmp_path):
  x = _real_images(6, seed=8)
  np.savez(tmp_path / "f.npz", images=x, labels=np.arange(6))
  read = image_eval.read_images(str(tmp_path / "f.npz"))
  batch, labels = next(iter(read.dataset(4)))
  np.testing.assert_array_equal(batch.numpy(), x[:4])
  assert list(labels.numpy()) == [0, 1, 2, 3] and read.resolution == 8


def test_hamgan_eval_cli_images_real_images_export_and_real_stats(tmp_path, classifier_path,
                                                                  capsys):
  from hamgan.cli import eval as eval_cli  # pylint: disable=g-import-not-at-top
  fake, real = _uint8(50, seed=9), _uint8(40, seed=10)
  np.savez(tmp_path / "x.npz", images=fake)
  np.savez(tmp_path / "y.npz", images=real)
  stats = str(tmp_path / "y_stats.npz")

  def run(*extra):
    return eval_cli.main(eval_cli.parse_flags([
        "hamgan-eval", f"--images={tmp_path / 'x.npz'}", f"--classifier_path={classifier_path}",
        "--batch_size=16", *extra]))

  assert run(f"--real_images={tmp_path / 'y.npz'}", f"--export_stats={stats}") == 0
  with open(str(tmp_path / "x.npz") + ".eval.json") as f:
    row = json.load(f)
  to_float = lambda x: x.astype(np.float32) / 127.5 - 1.0  # noqa: E731
  fake_pool, _ = _numpy_features(classifier_path, to_float(fake))
  real_pool, _ = _numpy_features(classifier_path, to_float(real))
  assert row["metrics"]["fid50/y"] == pytest.approx(_fid_reference(real_pool, fake_pool),
                                                    rel=1e-6)
  assert run(f"--real_stats={stats}", f"--out={tmp_path / 'b.json'}") == 0
  with open(tmp_path / "b.json") as f:
    assert json.load(f)["metrics"]["fid50/y_stats"] == pytest.approx(
        row["metrics"]["fid50/y"], rel=1e-6)
  assert run(f"--real_stats={stats}", "--kid") == 1
  assert "--kid need the real features" in capsys.readouterr().err
  assert run(f"--real_stats={stats}", "--model_dir=runs/x") == 1
  assert "--model_dir belongs to evaluating a run" in capsys.readouterr().err


def test_images_against_a_hamgan_data_set_are_cached_and_exportable(tmp_path, classifier_path):
  data_dir, cache = str(tmp_path / "tfds"), str(tmp_path / "cache")
  fake = image_io.to_uint8(tf.image.resize(_real_images(40, seed=12), (32, 32)).numpy())
  np.savez(tmp_path / "x.npz", images=fake)
  kw = dict(real_dataset="digits", real_split="test", data_dir=data_dir, cache_dir=cache,
            real_num_samples=100)
  row = image_eval.evaluate_images(_settings(classifier_path, images=str(tmp_path / "x.npz"),
                                             **kw))
  assert row["real_count"] == 100 and row["real"] == "digits-test"
  assert row["protocol"].startswith("40/digits-test, classifier ")
  assert len(os.listdir(cache)) == 1  # the real features, keyed like the run evaluator's
  stats = str(tmp_path / "digits_stats.npz")
  assert image_eval.evaluate_images(_settings(classifier_path, export_stats=stats, **kw),
                                    real_resolution=32) is None
  again = image_eval.evaluate_images(_settings(
      classifier_path, images=str(tmp_path / "x.npz"), real_stats=stats))
  assert again["metrics"]["fid40/digits-test"] == pytest.approx(
      row["metrics"]["fid40/digits-test"], rel=1e-6)
  assert len(os.listdir(cache)) == 1  # the export came from the cache
