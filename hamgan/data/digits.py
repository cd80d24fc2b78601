"""The offline default data set: scikit-learn's 8x8 digits as a tfds builder.

scikit-learn ships 1797 handwritten digits (8x8 pixels, 16 grey levels) inside the
package, so this data set needs no download: `download_and_prepare` reads them from
disk, upsamples them to 32x32 and writes ordinary tfds records into `data_dir`. Every
pipeline, test and the `make demo` run can therefore use real images on a machine
without internet.
"""
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from hamgan.data import packaged

NATIVE_SIZE = 8  # sklearn's digits are 8x8.
IMAGE_SIZE = packaged.IMAGE_SIZE  # stored size (bilinear upsampling, grey -> RGB)
NUM_CLASSES = packaged.NUM_CLASSES
NUM_EXAMPLES = 1797
NUM_TRAIN = 1500  # The remaining 297 form the test split.
SPLIT_SEED = 0  # Fixed permutation, so the split is the same everywhere.
MAX_GREY = 16  # sklearn's grey levels run 0..16.


def split_indices():
  """Returns (train, test) index arrays into sklearn's digits, fixed for all time."""
  perm = np.random.RandomState(SPLIT_SEED).permutation(NUM_EXAMPLES)
  return np.sort(perm[:NUM_TRAIN]), np.sort(perm[NUM_TRAIN:])


def upsample(images_8x8):
  """Maps (N, 8, 8) grey levels 0..16 to (N, 32, 32, 3) uint8 images.

  Bilinear with half-pixel centres (tf.image.resize's convention): a smooth upsample
  keeps stroke shapes without the blockiness that nearest-neighbour would teach G.
  """
  grey = np.asarray(images_8x8, np.float32) * (255.0 / MAX_GREY)
  grey = grey[..., None]  # (N, 8, 8) -> (N, 8, 8, 1)
  big = tf.image.resize(grey, (IMAGE_SIZE, IMAGE_SIZE), method="bilinear").numpy()
  big = np.clip(np.round(big), 0, 255).astype(np.uint8)
  return np.repeat(big, 3, axis=-1)  # (N, 32, 32, 1) -> (N, 32, 32, 3)


class HamganDigits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's handwritten digits, 32x32 RGB, 10 classes, train/test 1500/297."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release: bilinear 8 -> 32, fixed 1500/297 split."}

  def _info(self):
    return packaged.digits_info(
        self,
        description=(
            "The 1797 8x8 handwritten digits of scikit-learn "
            "(sklearn.datasets.load_digits), upsampled bilinearly to 32x32 and "
            "replicated to RGB; `index` is the row in load_digits()."),
        homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html")

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: the data ships with scikit-learn.
    from sklearn import datasets  # pylint: disable=g-import-not-at-top
    digits = datasets.load_digits()
    images = upsample(digits.images)
    labels = digits.target.astype(np.int64)
    train, test = split_indices()
    return {
        "train": self._generate_examples(images, labels, train),
        "test": self._generate_examples(images, labels, test),
    }

  def _generate_examples(self, images, labels, indices):
    return packaged.examples(images, labels, indices)
