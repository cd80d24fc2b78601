"""Precision, recall, density and coverage from k-nearest-neighbour balls of features.

Each feature set is seen as a union of balls: around every point, the ball reaching
its k-th nearest neighbour in its own set (the point itself not counted).

- improved precision (Kynkaanniemi et al. 2019, k = 3): the fraction of generated
  points inside some real ball (distance <= that real point's radius);
- improved recall (same paper, k = 3): the fraction of real points inside some
  generated ball;
- density (Naeem et al. 2020, k = 5): how many real balls hold each generated point
  (strictly inside, distance < radius), divided by k, averaged over generated points;
  about 1 when both sets come from one distribution, above 1 where samples crowd;
- coverage (same paper, k = 5): the fraction of real points whose ball holds at least
  one generated point (its nearest one strictly inside).

Everything works on squared Euclidean distances (the comparisons are the same) in
blocks of rows: a block of B points against a whole set is B x N numbers, sized to stay
under `BLOCK_BYTES`, so 50k x 50k never forms the N x N matrix. The blocks are dealt
round-robin to the devices of the active strategy (all GPUs / TPU cores, else the
CPU); TensorFlow places each block's matmul there.
"""
import numpy as np
import tensorflow as tf

PRECISION_RECALL_K = 3
DENSITY_COVERAGE_K = 5
BLOCK_BYTES = 1 << 28  # 256 MiB of distances per block


def _check(name, x, dim=None):
  x = np.asarray(x)
  if x.ndim != 2 or x.shape[0] < 2:
    raise ValueError(f"{name} has shape {x.shape}; expected (N, D) features with N >= 2 "
                     "(stack the per-sample classifier outputs).")
  if dim is not None and x.shape[1] != dim:
    raise ValueError(f"{name} has {x.shape[1]} features per sample but the other set "
                     f"{dim}; use the same classifier for both sets.")
  if not np.all(np.isfinite(x)):
    raise ValueError(f"{name} holds NaN or infinite values; check the classifier outputs.")
  return x


def _check_k(k, *sets):
  smallest = min(len(s) for s in sets)
  if not isinstance(k, (int, np.integer)) or not 1 <= k < smallest:
    raise ValueError(f"k={k!r} must be an int with 1 <= k < {smallest} (the smaller set's "
                     "size); pass e.g. k=3 for precision/recall, k=5 for density/coverage.")


def _block_rows(num_columns, dtype, block_size):
  if block_size is not None:
    if not isinstance(block_size, (int, np.integer)) or block_size < 1:
      raise ValueError(f"block_size={block_size!r} must be a positive int (rows per block), "
                       "or None to size blocks by memory.")
    return int(block_size)
  return max(1, BLOCK_BYTES // (num_columns * np.dtype(dtype).itemsize))


def _devices():
  strategy = tf.distribute.get_strategy()
  try:
    return list(strategy.extended.worker_devices)
  except RuntimeError:  # the default strategy: TensorFlow's own placement
    return [None]


class _Set:
  """A feature set on the devices: values and squared norms, in the compute dtype."""

  def __init__(self, x, dtype):
    self.values = tf.constant(np.asarray(x, dtype))
    self.sq_norms = tf.reduce_sum(tf.square(self.values), axis=1)
    self.n = int(self.values.shape[0])


@tf.function(reduce_retracing=True)
def _squared_distances(rows, row_sq, cols, col_sq):
  """(B, N) squared distances ||a||^2 + ||b||^2 - 2 a.b, clipped at 0 (rounding)."""
  d = row_sq[:, None] + col_sq[None, :] - 2.0 * tf.matmul(rows, cols, transpose_b=True)
  return tf.maximum(d, 0.0)


@tf.function(reduce_retracing=True)
def _kth_smallest(rows, row_sq, cols, col_sq, k):
  """Per row, the (k+1)-th smallest squared distance: the k-th neighbour, self excluded."""
  d = _squared_distances(rows, row_sq, cols, col_sq)
  return -tf.math.top_k(-d, k + 1).values[:, -1]


def _blocks(n, rows):
  for i, start in enumerate(range(0, n, rows)):
    yield i, start, min(n, start + rows)


def knn_radii(features, k, dtype=np.float32, block_size=None):
  """Squared distance from each point to its k-th nearest other point, shape (N,)."""
  x = _check("features", features)
  _check_k(k, x)
  s = _Set(x, dtype)
  rows, devices, out = _block_rows(s.n, dtype, block_size), _devices(), []
  for i, a, b in _blocks(s.n, rows):
    with tf.device(devices[i % len(devices)]):
      out.append(_kth_smallest(s.values[a:b], s.sq_norms[a:b], s.values, s.sq_norms,
                               tf.constant(k)))
  return np.concatenate([o.numpy() for o in out])


def _cross_pass(real, fake, real_r2_pr, real_r2_dc, fake_r2, dtype, block_size):
  """One pass over fake-vs-real blocks: per-fake and per-real counts of all four metrics."""
  rows, devices = _block_rows(real.n, dtype, block_size), _devices()
  r_pr, r_dc, f_r = (tf.constant(v.astype(dtype)) for v in (real_r2_pr, real_r2_dc, fake_r2))
  in_real_ball, real_balls_holding, real_hit, real_nearest = [], [], None, None
  for i, a, b in _blocks(fake.n, rows):
    with tf.device(devices[i % len(devices)]):
      d = _squared_distances(fake.values[a:b], fake.sq_norms[a:b], real.values,
                             real.sq_norms)  # (B fakes, N reals)
      in_real_ball.append(tf.reduce_any(d <= r_pr[None, :], axis=1))
      real_balls_holding.append(tf.reduce_sum(tf.cast(d < r_dc[None, :], tf.int32), axis=1))
      hit = tf.reduce_any(d <= f_r[a:b, None], axis=0)  # reals inside these fakes' balls
      nearest = tf.reduce_min(d, axis=0)
    real_hit = hit if real_hit is None else tf.logical_or(real_hit, hit)
    real_nearest = nearest if real_nearest is None else tf.minimum(real_nearest, nearest)
  return (np.concatenate([t.numpy() for t in in_real_ball]),
          np.concatenate([t.numpy() for t in real_balls_holding]),
          real_hit.numpy(), real_nearest.numpy())


def manifold_metrics(real_features, fake_features, pr_k=PRECISION_RECALL_K,
                     dc_k=DENSITY_COVERAGE_K, dtype=np.float32, block_size=None):
  """{'precision', 'recall', 'density', 'coverage'} as floats, in one blocked pass.

  Args:
    real_features, fake_features: (N, D) and (M, D) arrays (e.g. Inception pool_3).
    pr_k: the k of precision and recall (3 in Kynkaanniemi et al.).
    dc_k: the k of density and coverage (5 in Naeem et al.).
    dtype: the compute dtype of the distances (float32 is fast; float64 to check).
    block_size: rows per block (None: sized to BLOCK_BYTES).
  """
  real = _check("real_features", real_features)
  fake = _check("fake_features", fake_features, real.shape[1])
  _check_k(pr_k, real, fake)
  _check_k(dc_k, real, fake)
  rs, fs = _Set(real, dtype), _Set(fake, dtype)
  both = max(pr_k, dc_k)
  # The real radii for both ks from one top-k: the (k+1)-th smallest includes self.
  rows, devices, real_r2 = _block_rows(rs.n, dtype, block_size), _devices(), []
  for i, a, b in _blocks(rs.n, rows):
    with tf.device(devices[i % len(devices)]):
      d = _squared_distances(rs.values[a:b], rs.sq_norms[a:b], rs.values, rs.sq_norms)
      real_r2.append(-tf.math.top_k(-d, both + 1).values)
  real_r2 = np.concatenate([t.numpy() for t in real_r2])
  fake_r2 = knn_radii(fake, pr_k, dtype, block_size)
  in_ball, holding, real_hit, real_nearest = _cross_pass(
      rs, fs, real_r2[:, pr_k], real_r2[:, dc_k], fake_r2, dtype, block_size)
  return dict(precision=float(np.mean(in_ball)), recall=float(np.mean(real_hit)),
              density=float(np.mean(holding) / dc_k),
              coverage=float(np.mean(real_nearest < real_r2[:, dc_k])))


def precision_recall(real_features, fake_features, k=PRECISION_RECALL_K, block_size=None):
  """(precision, recall) floats: improved precision and recall with k neighbours."""
  real = _check("real_features", real_features)
  fake = _check("fake_features", fake_features, real.shape[1])
  values = manifold_metrics(real, fake, pr_k=k, dc_k=min(DENSITY_COVERAGE_K,
                                                          len(real) - 1, len(fake) - 1),
                            block_size=block_size)
  return values["precision"], values["recall"]


def density_coverage(real_features, fake_features, k=DENSITY_COVERAGE_K, block_size=None):
  """(density, coverage) floats with k neighbours."""
  values = manifold_metrics(real_features, fake_features, pr_k=k, dc_k=k,
                            block_size=block_size)
  return values["density"], values["coverage"]
