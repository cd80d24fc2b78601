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
  if os.path.dirname(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
  key = stats.key.to_json() if hasattr(stats.key, "to_json") else json.dumps(stats.key)
  np.savez(path, mu=stats.mean, sigma=stats.cov, count=np.int64(stats.count),
           key=np.array(key))
  return path


def check_file(path, feature_dim=None):
  """Opens `path` and checks it holds `mu` (D,) and `sigma` (D, D); returns (mu, sigma, meta).

  Raises ValueError naming the file and the fix, before any feature is computed.
  """
  if not os.path.isfile(path):
    raise ValueError(f"--real_stats={path!r} does not exist; pass an .npz written by "
                     "--export_stats (or a TTUR FID statistics file with mu and sigma).")
  try:
    with np.load(path, allow_pickle=False) as data:
      files = list(data.files)
      if "mu" not in files or "sigma" not in files:
        raise ValueError(f"--real_stats={path!r} holds {files}, not 'mu' and 'sigma'; "
                         "pass an .npz written by --export_stats.")
      mu, sigma = data["mu"].astype(np.float64), data["sigma"].astype(np.float64)
      meta = {k: data[k].item() for k in ("count", "key") if k in files}
  except (OSError, ValueError) as e:
    if "--real_stats" in str(e):
      raise
    raise ValueError(f"--real_stats={path!r} is not a readable .npz ({e}); pass an .npz "
                     "written by --export_stats.") from None
  dim = mu.shape[0] if mu.ndim == 1 else -1
  if mu.ndim != 1 or sigma.shape != (dim, dim):
    raise ValueError(f"--real_stats={path!r}: mu {mu.shape} and sigma {sigma.shape} are "
                     "not (D,) and (D, D); the file is damaged or not FID statistics.")
  if feature_dim is not None and dim != feature_dim:
    raise ValueError(
        f"--real_stats={path!r} holds statistics of {dim}-d features but the classifier "
        f"gives {feature_dim}-d features; pass statistics made with the same classifier "
        "(e.g. --export_stats with this --classifier_path).")
  return mu, sigma, meta


def load(path, feature_dim=None):
  """A RealStats (activations None) from an exported or TTUR statistics file."""
  mu, sigma, meta = check_file(path, feature_dim)
  key = meta.get("key")
  key = json.loads(key) if isinstance(key, str) and key.startswith("{") else {
      "file": os.path.abspath(path)}
  return real_stats.RealStats(key=key, activations=None, mean=mu, cov=sigma,
                              count=int(meta.get("count", 0)), inception_score=None)


def frechet_distance_from_moments(mu1, sigma1, mu2, sigma2):
  """||mu1 - mu2||^2 + tr(S1 + S2 - 2 sqrt(S1 S2)), in float64.

  tr(sqrt(S1 S2)) is taken as tr(sqrt(A S2 A)), A = sqrt(S1): a symmetric PSD matrix,
  so its root comes from eigenvalues clipped at 0 (no complex parts to drop).
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  if mu1.shape != mu2.shape:
    raise ValueError(f"feature sizes differ: {mu1.shape} vs {mu2.shape}; use statistics "
                     "of the same classifier on both sides.")
  w, v = scipy.linalg.eigh(sigma1)
  root1 = (v * np.sqrt(np.maximum(w, 0.0))) @ v.T
  inner = scipy.linalg.eigvalsh(root1 @ sigma2 @ root1)
  trace_sqrt = np.sum(np.sqrt(np.maximum(inner, 0.0)))
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2)
               - 2.0 * trace_sqrt)
