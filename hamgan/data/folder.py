"""A folder of images with one sub-folder per class, as a data set.

Layout: `root/<class>/<image>` (png, jpeg, bmp or gif), read as the split `train`.
With splits: `root/train/<class>/<image>` plus e.g. `root/test/<class>/<image>`; a
`root/train` folder switches to this layout. Class ids are the sorted sub-folder names
(hidden folders skipped), so every host and every run agrees on them. Paths go through
tf.io.gfile, so `gs://` buckets work as well as local folders.
"""
import os

import tensorflow as tf

PREFIX = "folder:"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def parse_name(name):
  """Returns the folder path of a `folder:/path` data set name, or None."""
  if not name.startswith(PREFIX):
    return None
  path = name[len(PREFIX):]
  if not path:
    raise ValueError(
        f"Data set name {name!r} has no path; expected 'folder:/path/to/dir' with one "
        "sub-folder per class.")
  return path


def split_root(root, split):
  """Returns the folder that holds the class sub-folders of `split`."""
  if not tf.io.gfile.isdir(root):
    raise ValueError(
        f"Image folder {root!r} does not exist or is not a directory; expected "
        "'folder:/path/to/dir' with one sub-folder of images per class.")
  if not has_splits(root):
    if split == "train":
      return root
    raise ValueError(
        f"Split {split!r} not found in image folder {root!r}: it has one sub-folder "
        "per class and so only the split 'train'; for more splits use "
        f"{root}/train/<class>/... and {root}/{split}/<class>/...")
  candidate = os.path.join(root, split)
  if not tf.io.gfile.isdir(candidate):
    raise ValueError(
        f"Split {split!r} not found in image folder {root!r}: expected {candidate!r} "
        "with one sub-folder per class, beside the 'train' one.")
  return candidate


def has_splits(root):
  """True when `root` uses the root/<split>/<class>/ layout (it has a train/)."""
  return tf.io.gfile.isdir(os.path.join(root, "train"))


def class_names(root, split="train"):
  """Sorted class sub-folder names of `split` (class id = position in the list)."""
  base = split_root(root, split)
  names = sorted(n.rstrip("/") for n in tf.io.gfile.listdir(base)
                 if not n.startswith(".")
                 and tf.io.gfile.isdir(os.path.join(base, n.rstrip("/"))))
  if not names:
    raise ValueError(
        f"Image folder {base!r} has no class sub-folders; expected "
        f"{base}/<class>/<image>.png (one sub-folder per class).")
  return names


def list_images(root, split="train"):
  """Returns (paths, labels, class names) of every image of `split`, sorted."""
  base = split_root(root, split)
  names = class_names(root, split)
  paths, labels = [], []
  for label, name in enumerate(names):
    folder = os.path.join(base, name)
    files = sorted(f for f in tf.io.gfile.listdir(folder)
                   if f.lower().endswith(IMAGE_EXTENSIONS))
    paths.extend(os.path.join(folder, f) for f in files)
    labels.extend([label] * len(files))
  if not paths:
    raise ValueError(
        f"Image folder {base!r} has class sub-folders {names} but no images with "
        f"extensions {IMAGE_EXTENSIONS}; put the images inside the class folders.")
  return paths, labels, names
