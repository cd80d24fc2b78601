"""Real statistics as a portable .npz: `mu` and `sigma`, the layout of the original FID code.

`export` writes a data set's feature mean `mu` (D,) and covariance `sigma` (D, D), as the
TTUR FID code's published statistics files hold them (those files, for the same
Inception graph, then work here as --real_stats), plus `count` and the JSON `key` that
made them. `load` reads such a file back as a RealStats without activations: FID can be
computed from it, the metrics that need the features themselves (KID, precision /
recall, density / coverage, intra-class FID) cannot.
"""
import json
import os

import numpy as np
import scipy.linalg

from hamgan.evaluation import real_stats


def export(path, stats):
  """Writes stats.mean / stats.cov as `mu` / `sigma`, with its count and key."""
  if not path.endswith(".npz"):  # np.savez would write path + ".npz", another file
    raise ValueError(f"--export_stats={path!r} does not end in .npz; pass a file name "
                     "ending in .npz.")
  if os.path.dirname(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
  key = stats.key.to_json() if hasattr(stats.key, "to_json") else json.dumps(stats.key)
  np.savez(path, mu=stats.mean, sigma=stats.cov, count=np.int64(stats.count),
           key=np.array(key))
  return path


# Tolerances relative to the matrix: float32 rounding of a float64 covariance moves its
# entries and eigenvalues by ~1e-7 of the largest, float32 accumulation over 50k samples
# by ~1e-5; a file off by more than 1e-4 was not written as a covariance.
SYMMETRY_TOLERANCE = 1e-4  # of the largest |sigma| entry
PSD_TOLERANCE = 1e-4  # of the largest |eigenvalue|


def _arrays(path, what):
  """(mu, sigma, meta) as stored; ValueError for a missing or unreadable file."""
  if not os.path.isfile(path):
    state = "is a folder" if os.path.isdir(path) else "does not exist"
    raise ValueError(f"{what}={path!r} {state}; pass an .npz written by --export_stats "
                     "(or a TTUR FID statistics file with mu and sigma).")
  try:
    with np.load(path, allow_pickle=False) as data:
      files = list(data.files)
      if "mu" not in files or "sigma" not in files:
        raise ValueError(f"{what}={path!r} holds {files}, not 'mu' and 'sigma'; "
                         "pass an .npz written by --export_stats.")
      mu, sigma = data["mu"], data["sigma"]
      meta = {k: data[k].item() for k in ("count", "key") if k in files}
  except (OSError, ValueError) as e:
    if what in str(e):
      raise
    raise ValueError(f"{what}={path!r} is not a readable .npz ({e}); pass an .npz "
                     "written by --export_stats.") from None
  for name, array in (("mu", mu), ("sigma", sigma)):
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
      raise ValueError(f"{what}={path!r}: {name} is {array.dtype}; expected real numbers "
                       "(float); the file is damaged or not FID statistics.")
  return mu.astype(np.float64), sigma.astype(np.float64), meta


def _check_covariance(path, what, sigma):
  """sigma must be finite, symmetric and positive semi-definite (within the tolerances)."""
  finite = np.isfinite(sigma)
  if not finite.all():
    raise ValueError(f"{what}={path!r}: sigma holds {int(sigma.size - finite.sum())} NaN "
                     "or infinite values; expected a finite covariance. Export the "
                     "statistics again (--export_stats).")
  scale = float(np.max(np.abs(sigma))) if sigma.size else 0.0
  asymmetry = float(np.max(np.abs(sigma - sigma.T))) if sigma.size else 0.0
  if asymmetry > SYMMETRY_TOLERANCE * scale:
    i, j = np.unravel_index(np.argmax(np.abs(sigma - sigma.T)), sigma.shape)
    raise ValueError(
        f"{what}={path!r}: sigma is not symmetric (sigma[{i},{j}]={sigma[i, j]:.6g} but "
        f"sigma[{j},{i}]={sigma[j, i]:.6g}; off by {asymmetry / max(scale, 1e-300):.2g} of "
        f"its largest entry, more than {SYMMETRY_TOLERANCE}); a covariance is symmetric: "
        "the file is damaged or not FID statistics. Export them again (--export_stats).")
  eigenvalues = scipy.linalg.eigvalsh(sigma) if sigma.size else np.zeros(1)
  largest = float(np.max(np.abs(eigenvalues)))
  if eigenvalues[0] < -PSD_TOLERANCE * largest:
    raise ValueError(
        f"{what}={path!r}: sigma is not positive semi-definite (its smallest eigenvalue is "
        f"{eigenvalues[0]:.6g}, its largest magnitude {largest:.6g}; allowed down to "
        f"-{PSD_TOLERANCE} of that); a covariance has no negative eigenvalues: the file "
        "is damaged or not FID statistics. Export them again (--export_stats).")


def read(path, what="--real_stats"):
  """(mu (D,), sigma (D, D), meta) from `path`, every check but the feature size done.

  Raises ValueError naming the file and the fix, before any feature is computed: a
  missing or unreadable file, missing keys, wrong shapes, NaN or infinite values, a
  sigma that is not symmetric or not positive semi-definite.
  """
  mu, sigma, meta = _arrays(path, what)
  dim = mu.shape[0] if mu.ndim == 1 else -1
  if mu.ndim != 1 or sigma.shape != (dim, dim):
    raise ValueError(f"{what}={path!r}: mu {mu.shape} and sigma {sigma.shape} are "
                     "not (D,) and (D, D); the file is damaged or not FID statistics.")
  if not np.isfinite(mu).all():
    raise ValueError(f"{what}={path!r}: mu holds {int(np.sum(~np.isfinite(mu)))} NaN or "
                     "infinite values; expected finite means. Export the statistics again "
                     "(--export_stats).")
  _check_covariance(path, what, sigma)
  return mu, sigma, meta


def check_feature_dim(path, mu, feature_dim, what="--real_stats"):
  """Raises ValueError when the file's feature size is not the classifier's."""
  if feature_dim is not None and mu.shape[0] != feature_dim:
    raise ValueError(
        f"{what}={path!r} holds statistics of {mu.shape[0]}-d features but the classifier "
        f"gives {feature_dim}-d features; pass statistics made with the same classifier "
        "(e.g. --export_stats with this --classifier_path).")


def check_file(path, feature_dim=None):
  """`read` plus the feature size: (mu, sigma, meta), or a ValueError naming the file."""
  mu, sigma, meta = read(path)
  check_feature_dim(path, mu, feature_dim)
  return mu, sigma, meta


def as_real_stats(path, arrays):
  """A RealStats (activations None) from `read`'s (mu, sigma, meta) of `path`."""
  mu, sigma, meta = arrays
  key = meta.get("key")
  key = json.loads(key) if isinstance(key, str) and key.startswith("{") else {
      "file": os.path.abspath(path)}
  return real_stats.RealStats(key=key, activations=None, mean=mu, cov=sigma,
                              count=int(meta.get("count", 0)), inception_score=None)


def load(path, feature_dim=None):
  """A RealStats (activations None) from an exported or TTUR statistics file."""
  return as_real_stats(path, check_file(path, feature_dim))

