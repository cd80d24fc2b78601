"""What the offline digit sets (`digits`, `mnist5k`) share: data that ships inside a
Python package, stored by tfds as 32x32 RGB images with a label and the source row."""
import numpy as np
import tensorflow_datasets as tfds

IMAGE_SIZE = 32
NUM_CLASSES = 10


def digits_info(builder, description, homepage):
  """The tfds DatasetInfo of such a builder: image, label and `index` (the source row)."""
  return builder.dataset_info_from_configs(
      description=description,
      features=tfds.features.FeaturesDict({
          "image": tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 3)),
          "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
          "index": np.int32,
      }),
      supervised_keys=("image", "label"),
      homepage=homepage,
  )


def examples(images, labels, indices):
  """(key, example) pairs of the rows `indices`, keyed by the source row."""
  for i in indices:
    yield int(i), {"image": images[i], "label": int(labels[i]), "index": int(i)}
