"""The data-set registry: every tfds data set the pipelines know, by name.

`train.dataset = 'mnist5k'` (or `make_dataset('cifar10', ...)`) looks the name up
here; users add their own tfds data set with `register_dataset(name, DatasetSpec(...))`
at any time (nothing is frozen at import), and gin can name it from then on. A gin
file can register one too, by calling the configurable
`hamgan.data.register_dataset` with its fields (see docs/data.md). Image folders
need no entry: 'folder:/path' names them.
"""
import collections

import gin

from hamgan.data import digits as digits_lib  # Registers the `hamgan_digits` builder.
from hamgan.data import mnist5k as mnist5k_lib  # Registers the `hamgan_mnist5k` builder.


class DatasetSpec(collections.namedtuple(
    "DatasetSpec", ["tfds_name", "num_classes", "native_size", "max_size", "crop",
                    "train_split", "eval_split", "offline"])):
  """What the pipelines need to know about one tfds data set.

  tfds_name: the tfds builder ('cifar10', 'imagenet_resized/32x32').
  native_size: the images' side (None: varies per image); max_size: the largest
    image_size the pipeline gives without inventing detail.
  crop: images vary in shape: keep them encoded and decode the central square.
  offline: the builder prepares from an installed package, without internet, so the
    pipeline prepares it on first use.
  """

  def __new__(cls, tfds_name, num_classes, native_size=None, max_size=None, crop=False,
              train_split="train", eval_split="test", offline=False):
    return super().__new__(cls, tfds_name, num_classes, native_size, max_size, crop,
                           train_split, eval_split, offline)


_REGISTRY = {}


def _register(name, spec, replace=False):
  if not isinstance(name, str) or not name or name.startswith("folder:"):
    raise ValueError(f"data set name {name!r}: expected a non-empty string not starting "
                     "with 'folder:' (that prefix names image folders), e.g. 'my_set'.")
  if not isinstance(spec, DatasetSpec):
    raise TypeError(f"register_dataset({name!r}, {spec!r}): expected a "
                    "hamgan.data.DatasetSpec(tfds_name, num_classes, ...).")
  if not isinstance(spec.num_classes, int) or spec.num_classes < 1:
    raise ValueError(f"data set {name!r}: num_classes={spec.num_classes!r}; expected a "
                     "positive integer (1 for unlabelled data).")
  if name in _REGISTRY and not replace:
    raise ValueError(f"data set {name!r} is already registered; pick another name or "
                     "pass replace=True.")
  _REGISTRY[name] = spec
  return spec


@gin.configurable(module="hamgan.data")
def register_dataset(name, spec=None, replace=False, **fields):
  """Registers a tfds data set under `name`; returns its DatasetSpec.

  Either pass `spec=DatasetSpec(...)`, or its fields as keywords (tfds_name,
  num_classes, native_size, max_size, crop, train_split, eval_split, offline), which
  is how a gin file calls it.
  """
  if spec is None:
    spec = DatasetSpec(**fields)
  elif fields:
    raise ValueError(f"register_dataset({name!r}): pass a spec or its fields, not both.")
  return _register(name, spec, replace)


def dataset_names():
  """The registered names, built-in ones first, then any registered later."""
  return tuple(_REGISTRY)


def dataset_spec(name):
  """The DatasetSpec of `name`, or None when it is not registered."""
  return _REGISTRY.get(name) if isinstance(name, str) else None


# native_size: the size the data set has; the digits are the documented exception:
# 8x8 originals, stored upsampled to 32x32.
_register("digits", DatasetSpec("hamgan_digits", digits_lib.NUM_CLASSES,
                                digits_lib.NATIVE_SIZE, digits_lib.IMAGE_SIZE,
                                offline=True))
_register("mnist5k", DatasetSpec("hamgan_mnist5k", mnist5k_lib.NUM_CLASSES,
                                 mnist5k_lib.NATIVE_SIZE, mnist5k_lib.IMAGE_SIZE,
                                 offline=True))
_register("cifar10", DatasetSpec("cifar10", 10, 32, 32))
_register("imagenet2012", DatasetSpec("imagenet2012", 1000, None, 512, crop=True,
                                      eval_split="validation"))
for _side in (32, 64):
  _register(f"imagenet_resized/{_side}x{_side}",
            DatasetSpec(f"imagenet_resized/{_side}x{_side}", 1000, _side, _side,
                        eval_split="validation"))
