"""Tests of hamgan.data: shapes, ranges, labels and errors of every input pipeline."""
import collections
import os

import gin
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from sklearn import datasets as sk_datasets

from hamgan import data
from hamgan.data import digits as digits_lib
from hamgan.data import pipelines


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
  """A data_dir with hamgan_digits prepared once for the whole module."""
  path = str(tmp_path_factory.mktemp("tfds"))
  tfds.builder("hamgan_digits", data_dir=path).download_and_prepare()
  return path


def _whole_split(name, split, image_size, data_dir):
  """Every example of a split, in file order, as NumPy arrays."""
  ds = data.make_dataset(name, split, image_size, 512, data_dir=data_dir,
                         shuffle=False, repeat=False, drop_remainder=False)
  images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
  return np.concatenate(images), np.concatenate(labels)


def _numpy_bilinear(image, size):
  """Half-pixel-centre bilinear resize of a 2-D array (tf.image.resize's rule)."""
  def taps(n_in):
    src = (np.arange(size) + 0.5) * n_in / size - 0.5
    src = np.clip(src, 0, n_in - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, src - lo
  r0, r1, fr = taps(image.shape[0])
  c0, c1, fc = taps(image.shape[1])
  top = image[r0][:, c0] * (1 - fc) + image[r0][:, c1] * fc
  bottom = image[r1][:, c0] * (1 - fc) + image[r1][:, c1] * fc
  return top * (1 - fr[:, None]) + bottom * fr[:, None]


def _write_image(path, array):
  encode = tf.io.encode_png if path.endswith(".png") else tf.io.encode_jpeg
  tf.io.write_file(path, encode(tf.constant(array, tf.uint8)))


def test_digits_splits_cover_all_classes(digits_dir):
  train_x, train_y = _whole_split("digits", "train", 32, digits_dir)
  test_x, test_y = _whole_split("digits", "test", 32, digits_dir)
  assert train_x.shape == (1500, 32, 32, 3) and test_x.shape == (297, 32, 32, 3)
  assert train_x.dtype == np.float32 and train_y.dtype == np.int32
  assert train_x.min() >= -1.0 and train_x.max() <= 1.0
  # Background is black (-1) and strokes reach full white: the whole range is used.
  assert train_x.min() == -1.0 and train_x.max() > 0.99
  # Together the splits hold exactly scikit-learn's digits, every class in both.
  target = sk_datasets.load_digits().target
  np.testing.assert_array_equal(
      np.bincount(np.concatenate([train_y, test_y]), minlength=10),
      np.bincount(target, minlength=10))
  assert np.bincount(train_y, minlength=10).min() >= 130
  assert np.bincount(test_y, minlength=10).min() >= 15
  # The split is the fixed permutation, disjoint and complete.
  train_idx, test_idx = digits_lib.split_indices()
  assert not set(train_idx) & set(test_idx)
  assert len(train_idx) + len(test_idx) == 1797
  # Records (stored in tfds's hashed order) carry their row in load_digits().
  for split, idx in (("train", train_idx), ("test", test_idx)):
    rows = tfds.as_numpy(tfds.load("hamgan_digits", split=split, batch_size=-1,
                                   data_dir=digits_dir))
    np.testing.assert_array_equal(np.sort(rows["index"]), idx)
    np.testing.assert_array_equal(rows["label"], target[rows["index"]])


def test_digits_upsampling_matches_numpy_bilinear(digits_dir):
  originals = sk_datasets.load_digits().images  # (1797, 8, 8), 0..16
  ds = tfds.load("hamgan_digits", split="train", data_dir=digits_dir)
  for example in ds.take(5):
    stored = example["image"].numpy().astype(np.float64)
    ref = _numpy_bilinear(originals[int(example["index"])] * 255.0 / 16.0, 32)
    # Grey replicated to RGB; pixels within rounding of the NumPy reference.
    np.testing.assert_array_equal(stored[..., 0], stored[..., 2])
    np.testing.assert_allclose(stored[..., 1], ref, atol=0.51)
    # Corner pixels copy the original corners (half-pixel clamp at the border).
    assert abs(stored[0, 0, 0] - originals[int(example["index"])][0, 0] * 255 / 16) < 0.51
  # The pipeline only rescales the stored pixels to [-1, 1].
  first = next(iter(data.make_dataset("digits", "train", 32, 4, data_dir=digits_dir,
                                      shuffle=False)))[0].numpy()
  stored = np.stack([e["image"].numpy() for e in ds.take(4)]).astype(np.float32)
  np.testing.assert_allclose(first, stored / 127.5 - 1.0, atol=1e-6)


def test_digits_downsampled_to_16(digits_dir):
  x, _ = next(iter(data.make_dataset("digits", "test", 16, 8, data_dir=digits_dir,
                                     seed=0)))
  assert x.shape == (8, 16, 16, 3) and x.dtype == tf.float32
  assert float(tf.reduce_min(x)) >= -1.0 and float(tf.reduce_max(x)) <= 1.0


@pytest.mark.parametrize("name,image_size", [
    ("cifar10", 32), ("imagenet2012", 128), ("imagenet2012", 64),
    ("imagenet_resized/32x32", 32), ("imagenet_resized/64x64", 64)])
def test_mocked_tfds_pipelines(name, image_size):
  with tfds.testing.mock_data(num_examples=12,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    # Our static table agrees with tfds's own metadata.
    tfds_classes = tfds.builder(name).info.features["label"].num_classes
    info = data.dataset_info(name)
    assert info.num_classes == tfds_classes
    ds = data.make_dataset(name, "train", image_size, 4, seed=3)
    for images, labels in ds.take(3):
      assert images.shape == (4, image_size, image_size, 3)
      assert images.dtype == tf.float32 and labels.dtype == tf.int32
      assert labels.shape == (4,)
      x = images.numpy()
      assert x.min() >= -1.0 and x.max() <= 1.0
      assert x.std() > 0.2  # Random mock pixels, not a constant image.
      assert ((labels.numpy() >= 0) & (labels.numpy() < info.num_classes)).all()


def test_center_crop_png_is_exact_and_jpeg_close():
  rng = np.random.RandomState(0)
  image = rng.randint(0, 256, size=(12, 20, 3)).astype(np.uint8)  # (H, W, 3)
  png = tf.io.encode_png(image)
  np.testing.assert_array_equal(pipelines.decode_center_crop(png).numpy(),
                                image[:, 4:16])
  tall = np.repeat(np.linspace(0, 255, 24).astype(np.uint8)[:, None, None], 16, 1)
  tall = np.repeat(tall, 3, 2)  # (24, 16, 3), a vertical ramp
  jpeg = tf.io.encode_jpeg(tall, quality=100)
  crop = pipelines.decode_center_crop(jpeg).numpy().astype(int)
  assert crop.shape == (16, 16, 3)
  # Decoding only the window equals decoding everything and cropping rows 4..19
  # (a one-row shift would be off by 11 levels on this ramp).
  whole = tf.io.decode_jpeg(jpeg, channels=3).numpy().astype(int)
  assert np.abs(crop - whole[4:20]).max() <= 1
  assert np.abs(crop - tall[4:20].astype(int)).max() <= 5  # JPEG's own error.


def test_folder_dataset(tmp_path):
  colours = {"cat": (250, 10, 10), "ant": (10, 250, 10), "bee": (10, 10, 250)}
  for i, (name, colour) in enumerate(colours.items()):
    os.makedirs(tmp_path / name)
    for j, (h, w) in enumerate([(10, 14), (20, 12)]):
      ext = ".jpg" if (i, j) == (0, 1) else ".png"
      _write_image(str(tmp_path / name / f"im{j}{ext}"),
                   np.broadcast_to(np.array(colour, np.uint8), (h, w, 3)))
  (tmp_path / "ant" / "notes.txt").write_text("not an image")
  name = "folder:" + str(tmp_path)
  info = data.dataset_info(name)
  assert info.num_classes == 3 and info.max_image_size is None
  expected = {0: colours["ant"], 1: colours["bee"], 2: colours["cat"]}  # sorted names
  seen = set()
  for images, labels in data.make_dataset(name, "train", 8, 2, seed=1).take(6):
    assert images.shape == (2, 8, 8, 3) and labels.dtype == tf.int32
    for image, label in zip(images.numpy(), labels.numpy()):
      want = np.array(expected[int(label)], np.float32) / 127.5 - 1.0
      np.testing.assert_allclose(image, np.broadcast_to(want, image.shape), atol=0.05)
      seen.add(int(label))
  assert seen == {0, 1, 2}


def test_folder_input_pipelines_read_disjoint_shares(tmp_path):
  greys = list(range(10, 90, 10))  # 8 images, one grey level each
  for k, grey in enumerate(greys):
    folder = tmp_path / f"class{k % 2}"
    folder.mkdir(exist_ok=True)
    _write_image(str(folder / f"{grey}.png"), np.full((4, 4, 3), grey, np.uint8))
  shares = []
  for pipeline in range(2):
    ctx = tf.distribute.InputContext(num_input_pipelines=2,
                                     input_pipeline_id=pipeline,
                                     num_replicas_in_sync=2)
    ds = data.make_dataset("folder:" + str(tmp_path), "train", 4, 1, shuffle=False,
                           repeat=False, input_context=ctx)
    shares.append({int(round((x.numpy()[0, 0, 0, 0] + 1) * 127.5)) for x, _ in ds})
  assert len(shares[0]) == len(shares[1]) == 4
  assert not shares[0] & shares[1]
  assert shares[0] | shares[1] == set(greys)


def test_distributed_dataset_splits_global_batch(two_cpu_strategy, digits_dir):
  gin.parse_config(f"make_dataset.data_dir = '{digits_dir}'")  # Reaches make_dataset.
  try:
    dist = data.distributed_dataset(two_cpu_strategy, "digits", "train", 32, 8,
                                    seed=0)
    images, labels = next(iter(dist))
  finally:
    gin.clear_config()
  per_replica = two_cpu_strategy.experimental_local_results(images)
  per_labels = two_cpu_strategy.experimental_local_results(labels)
  assert len(per_replica) == 2
  for x, y, device in zip(per_replica, per_labels, ("CPU:0", "CPU:1")):
    assert x.shape == (4, 32, 32, 3) and y.shape == (4,) and y.dtype == tf.int32
    assert device in x.device
  assert not np.array_equal(per_replica[0].numpy(), per_replica[1].numpy())


def test_distributed_dataset_rejects_indivisible_batch(two_cpu_strategy):
  with pytest.raises(ValueError, match="global_batch_size=7.*multiple of 2"):
    data.distributed_dataset(two_cpu_strategy, "digits", "train", 32, 7)


def test_unknown_names_splits_and_sizes_raise(digits_dir):
  with pytest.raises(ValueError, match="Unknown data set 'mnist'.*digits.*cifar10.*folder:"):
    data.make_dataset("mnist", "train", 32, 4)
  with pytest.raises(ValueError, match="image_size=128.*cifar10.*<=32"):
    data.dataset_info("cifar10").check_image_size(128)
  with pytest.raises(ValueError, match="image_size=64.*digits"):
    data.make_dataset("digits", "train", 64, 4, data_dir=digits_dir)
  data.dataset_info("digits").check_image_size(32)  # The documented upsampling.
  data.dataset_info("imagenet2012").check_image_size(128)
  with pytest.raises(ValueError, match="Split 'validation'.*'train', 'test'"):
    data.make_dataset("digits", "validation", 32, 4, data_dir=digits_dir)
  with pytest.raises(ValueError, match="batch_size=0"):
    data.make_dataset("digits", "train", 32, 0, data_dir=digits_dir)
  with pytest.raises(ValueError, match="does not exist"):
    data.dataset_info("folder:/no/such/dir")


def test_missing_data_says_how_to_prepare(tmp_path):
  with pytest.raises(ValueError, match="not prepared.*tfds build cifar10"):
    data.make_dataset("cifar10", "train", 32, 4, data_dir=str(tmp_path))
  with pytest.raises(ValueError, match="imagenet2012.*not prepared.*downloads/manual"):
    data.make_dataset("imagenet2012", "train", 128, 4, data_dir=str(tmp_path))


def test_shuffle_is_seeded_and_keeps_the_epoch(digits_dir):
  def first_labels(seed):
    ds = data.make_dataset("digits", "test", 32, 32, data_dir=digits_dir, seed=seed)
    return np.concatenate([y.numpy() for _, y in ds.take(3)])
  np.testing.assert_array_equal(first_labels(5), first_labels(5))
  assert not np.array_equal(first_labels(5), first_labels(6))
  # One shuffled epoch is a permutation of the ordered one.
  _, ordered = _whole_split("digits", "test", 32, digits_dir)
  shuffled = np.concatenate([y.numpy() for _, y in data.make_dataset(
      "digits", "test", 32, 512, data_dir=digits_dir, seed=1, repeat=False,
      drop_remainder=False)])
  assert not np.array_equal(shuffled, ordered)
  np.testing.assert_array_equal(np.sort(shuffled), np.sort(ordered))


def test_tfds_input_pipelines_read_disjoint_shares(digits_dir):
  def image_keys(input_context):
    ds = data.make_dataset("digits", "test", 32, 64, data_dir=digits_dir,
                           shuffle=False, repeat=False, drop_remainder=False,
                           input_context=input_context)
    return [x.tobytes() for images, _ in ds for x in images.numpy()]
  whole = collections.Counter(image_keys(None))
  shares = [image_keys(tf.distribute.InputContext(
      num_input_pipelines=2, input_pipeline_id=i, num_replicas_in_sync=2))
            for i in range(2)]
  assert len(shares[0]) == len(shares[1]) == 148  # 297 // 2, remainder dropped
  # Together the shares never hold an image more often than the split does.
  together = collections.Counter(shares[0] + shares[1])
  assert all(together[k] <= whole[k] for k in together)


def test_folder_split_layout(tmp_path):
  greys = {"train": (20, 40), "test": (200, 220)}  # per class a, b
  for split, (grey_a, grey_b) in greys.items():
    for cls, grey in (("a", grey_a), ("b", grey_b)):
      os.makedirs(tmp_path / split / cls)
      _write_image(str(tmp_path / split / cls / "x.png"),
                   np.full((6, 9, 3), grey, np.uint8))
  name = "folder:" + str(tmp_path)
  info = data.dataset_info(name)
  assert (info.num_classes, info.eval_split) == (2, "test")
  for split, want in greys.items():
    ds = data.make_dataset(name, split, 4, 2, shuffle=False, repeat=False)
    images, labels = next(iter(ds))
    got = np.round((images.numpy()[:, 0, 0, 0] + 1) * 127.5)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(labels.numpy(), [0, 1])
  with pytest.raises(ValueError, match="Split 'val' not found"):
    data.make_dataset(name, "val", 4, 2)
  flat = tmp_path / "test"  # On its own a flat folder: classes a and b.
  with pytest.raises(ValueError, match="only the split 'train'"):
    data.make_dataset("folder:" + str(flat), "test", 4, 2)
