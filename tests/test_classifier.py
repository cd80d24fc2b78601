"""hamgan.evaluation.classifier: loading a SavedModel or the TF-Hub module, offline errors."""
import hashlib
import os
import time

import numpy as np
import pytest
import tensorflow as tf

from hamgan.evaluation import classifier as classifier_lib
from hamgan.evaluation import evaluator
from hamgan.evaluation import metrics
from test_evaluation import CLASSIFIER_SIZE, StandInClassifier, StandInGenerator
from test_evaluation import _numpy_features, _real_images
from test_evaluation import saved_classifiers  # noqa: F401  (the module fixture)


@pytest.mark.skipif(metrics.tfgan is None, reason="TF-GAN imports only on the tpu stack")
def test_inception_handle_matches_tfgan():
  tfgan = metrics.tfgan
  assert classifier_lib.INCEPTION_TFHUB == tfgan.eval.INCEPTION_TFHUB
  assert classifier_lib.INCEPTION_IMAGE_SIZE == tfgan.eval.INCEPTION_DEFAULT_IMAGE_SIZE


def test_loaded_classifier_resizes_flattens_and_loads_once(saved_classifiers):
  clf = classifier_lib.load_classifier(saved_classifiers[0])
  assert clf is classifier_lib.load_classifier(saved_classifiers[0])  # once per process
  assert clf.image_size == CLASSIFIER_SIZE
  assert clf.identity.startswith(os.path.abspath(saved_classifiers[0]) + "#sha256:")
  images = _real_images(5)
  out = clf(images)
  ref_pool, ref_logits = _numpy_features(saved_classifiers[0], images)
  assert out["pool_3"].shape == (5, 10) and out["logits"].shape == (5, 7)
  np.testing.assert_allclose(out["pool_3"].numpy(), ref_pool, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out["logits"].numpy(), ref_logits, rtol=1e-5, atol=1e-5)
  other = classifier_lib.load_classifier(saved_classifiers[1])
  assert other.identity != clf.identity


class _SignatureOnly(tf.Module):
  """Exported with a serving signature only (not callable), like many hub modules."""

  def __init__(self):
    super().__init__()
    self.w = tf.Variable(np.arange(15, dtype=np.float32).reshape(3, 5))

  @tf.function(input_signature=[tf.TensorSpec([None, 20, 20, 3], tf.float32)])
  def serve(self, images):
    pool = tf.reduce_mean(images, axis=[1, 2])  # (B, 3)
    return {"pool_3": pool, "logits": pool @ self.w}


def test_signature_only_savedmodel_and_static_input_size(tmp_path):
  module = _SignatureOnly()
  tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.serve})
  clf = classifier_lib.load_classifier(str(tmp_path))
  assert clf.image_size == 20  # from the signature's static shape
  x = _real_images(3)  # 8x8, resized to 20x20 by the wrapper
  big = tf.image.resize(x, (20, 20), method="bilinear").numpy()
  out = clf(x)
  np.testing.assert_allclose(out["pool_3"].numpy(), big.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out["logits"].numpy(), big.mean(axis=(1, 2)) @ module.w.numpy(),
                             rtol=1e-4, atol=1e-5)


def _no_network(monkeypatch):
  """Makes the TF-Hub host unreachable whatever this machine's network (hermetic)."""
  probed = []
  monkeypatch.setattr(classifier_lib, "host_reachable",
                      lambda url, timeout=None: probed.append(url) or False)
  return probed


def test_host_probe_tells_a_listening_port_from_a_closed_one():
  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as server:
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    assert classifier_lib.host_reachable(f"http://127.0.0.1:{port}/m", timeout=2.0)
  # The port is closed now: refused at once, so the probe says unreachable.
  start = time.time()
  assert not classifier_lib.host_reachable(f"http://127.0.0.1:{port}/m", timeout=2.0)
  assert time.time() - start < 3.0


def test_offline_default_classifier_fails_fast_with_instructions(tmp_path, monkeypatch):
  monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "hub"))
  probed = _no_network(monkeypatch)
  start = time.time()
  with pytest.raises(classifier_lib.ClassifierUnavailableError) as err:
    classifier_lib.load_classifier()
  assert time.time() - start < 10 and probed == [classifier_lib.INCEPTION_TFHUB]
  digest = hashlib.sha1(classifier_lib.INCEPTION_TFHUB.encode()).hexdigest()
  message = str(err.value)
  assert "--classifier_path" in message and "TFHUB_CACHE_DIR" in message and digest in message


def test_default_handle_loads_from_the_hashed_tfhub_cache_offline(tmp_path, monkeypatch):
  monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path))
  # tensorflow_hub reads its load format from this variable, else from absl's global
  # FLAGS; earlier in-process CLI tests of the suite reset those flags.
  monkeypatch.setenv("TFHUB_MODEL_LOAD_FORMAT", "AUTO")
  digest = hashlib.sha1(classifier_lib.INCEPTION_TFHUB.encode()).hexdigest()
  tf.saved_model.save(StandInClassifier(seed=3), str(tmp_path / digest))
  clf = classifier_lib.load_classifier()  # no network: the extracted module is found
  assert clf.identity == classifier_lib.INCEPTION_TFHUB and clf.image_size == CLASSIFIER_SIZE
  assert clf(_real_images(2))["pool_3"].shape == (2, 10)


def test_offline_error_comes_before_any_sample(tmp_path, monkeypatch):
  monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "hub"))
  monkeypatch.setattr(classifier_lib, "INCEPTION_TFHUB", "https://tfhub.invalid/inception/1")
  _no_network(monkeypatch)
  g = StandInGenerator()
  built = []
  start = time.time()
  with pytest.raises(ValueError, match="classifier_path"):
    evaluator.Evaluator(str(tmp_path), evaluator.EvalSettings(),
                        build_generator=lambda *a: built.append(1) or g).evaluate_all()
  assert time.time() - start < 10
  assert not built and g.calls == 0


def test_bad_classifier_path_is_named(tmp_path):
  with pytest.raises(ValueError, match="holds no saved_model.pb"):
    classifier_lib.load_classifier(str(tmp_path))
