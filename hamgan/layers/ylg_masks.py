"""The YLG sparse attention masks (docs/design.md, 'YLG local attention').

Pure NumPy, so they can be checked on their own; `LocalAttention` computes them once
in `build`. Four 1-D sparse-transformer patterns over the n positions of the key grid
(stride floor(sqrt(n))), laid along the Manhattan enumeration (ESA) so that
neighbouring positions of the 1-D pattern stay neighbours in 2-D, and the two ways
of giving the 4n query pixels a mask row ("cell", hamgan's own; "raster", the public
YLG code's).
"""
import math

import numpy as np

from hamgan.validation import check_int

# Additive logit bias of a masked (query, key) pair, as in the YLG reference.
MASK_VALUE = -1000.0

ALIGNS = ("cell", "raster")

# The four 1-D patterns, in the head order of the YLG reference for 8 heads:
# heads 0-3 right-to-left, heads 4-7 left-to-right.
_RIGHT_PATTERNS = ("right_floor", "right_repetitive")
_LEFT_PATTERNS = ("left_floor", "left_repetitive")


def manhattan_order(h, w):
  """Cells of an (h, w) grid in ESA order: by i + j, ties by increasing i.

  Returns an int array of shape (h * w, 2) whose row k is the (i, j) cell with
  1-D index k; e.g. a 4x4 grid starts (0,0), (0,1), (1,0), (0,2), (1,1), (2,0).
  """
  h, w = int(h), int(w)
  if h < 1 or w < 1:
    raise ValueError(f"manhattan_order(h={h}, w={w}): expected a grid of at least 1x1 "
                     "cells; pass positive sizes.")
  cells = [(i, j) for i in range(h) for j in range(w)]
  cells.sort(key=lambda c: (c[0] + c[1], c[0]))
  return np.asarray(cells, dtype=np.int64).reshape(h * w, 2)


def stride_for(n):
  """The YLG stride of a pattern over n positions: floor(sqrt(n))."""
  return max(1, int(math.isqrt(int(n))))


def pattern_1d(name, n, stride=None):
  """One 1-D sparse pattern as an (n, n) 0/1 float32 array, [row, col] = row sees col.

  left_floor:        row r sees r - r % s .. r (its block, up to itself).
  right_floor:       the transpose of left_floor (its block, from itself on).
  left_repetitive:   columns c with c % s == s - 1, plus r itself.
  right_repetitive:  columns c with c % s == 0 and c + s - 1 < n, plus r itself
                     (YLG's RightRepetitive: its left_repetitive columns moved s - 1
                     to the left; when s * s < n the last block start may drop out).
  """
  n = int(n)
  s = stride_for(n) if stride is None else int(stride)
  r = np.arange(n)[:, None]
  c = np.arange(n)[None, :]
  if name == "left_floor":
    mask = (c >= r - r % s) & (c <= r)
  elif name == "right_floor":
    mask = (r >= c - c % s) & (r <= c)
  elif name == "left_repetitive":
    mask = (c % s == s - 1) | (c == r)
  elif name == "right_repetitive":
    mask = ((c % s == 0) & (c + s - 1 < n)) | (c == r)
  else:
    raise ValueError(f"pattern_1d: unknown pattern {name!r}; expected one of "
                     f"{_RIGHT_PATTERNS + _LEFT_PATTERNS}.")
  return mask.astype(np.float32)


def head_patterns(heads=8):
  """Pattern names per head: first half right-to-left, second half left-to-right.

  Within each half the floor and repetitive patterns alternate, which for 8
  heads gives the YLG order RF, RR, RF, RR, LF, LR, LF, LR.
  """
  heads = check_heads(heads)
  half = heads // 2
  return ([_RIGHT_PATTERNS[k % 2] for k in range(half)] +
          [_LEFT_PATTERNS[k % 2] for k in range(half)])


def check_heads(heads):
  """Returns `heads` as an int, or raises: an even number >= 2."""
  hint = ("expected a positive even integer (half the heads are right-to-left, half "
          "left-to-right); the YLG default is 8.")
  heads = check_int("LocalAttention", "heads", heads, minimum=2, hint=hint)
  if heads % 2:
    raise ValueError(f"heads={heads!r}: {hint}")
  return heads


def ylg_masks(grid_h, grid_w, heads=8):
  """YLG masks over the key grid, shape (heads, n_k, n_k), float32 0/1.

  n_k = grid_h * grid_w. The 1-D pattern of each head is laid along the
  Manhattan enumeration (ESA) and mapped back to raster indices of the grid:
  mask[h, raster(a), raster(b)] = pattern_h[rank(a), rank(b)], where raster(i, j)
  = i * grid_w + j and rank is the cell's position in `manhattan_order`. Row q
  is the mask of a query that sits on cell q of the key grid.
  """
  grid_h, grid_w = int(grid_h), int(grid_w)
  order = manhattan_order(grid_h, grid_w)
  n = grid_h * grid_w
  raster = order[:, 0] * grid_w + order[:, 1]  # raster index of the k-th ESA cell
  masks = np.zeros((len(head_patterns(heads)), n, n), np.float32)
  for h, name in enumerate(head_patterns(heads)):
    masks[h][np.ix_(raster, raster)] = pattern_1d(name, n)
  return masks


def query_masks(height, width, heads=8, align="cell"):
  """Masks of every query pixel of an (height, width) map: (heads, H*W, n_k).

  Keys live on the (height/2, width/2) grid. align="cell": pixel (i, j) uses
  the row of its own downsampled cell (i // 2, j // 2) (our default).
  align="raster": the (n_k, n_k) grid mask is tiled over consecutive raster
  blocks of n_k queries, so pixel q = i * width + j uses row q % n_k, which is
  another cell's row (what the public YLG code does).
  This materialises the full mask and is meant for inspection and tests; the
  layer applies the same masks by broadcasting the (heads, n_k, n_k) array.
  """
  height, width = check_even_grid(height, width, "query_masks")
  if align not in ALIGNS:
    raise ValueError(f"align={align!r}: expected one of {ALIGNS}.")
  gh, gw = height // 2, width // 2
  grid = ylg_masks(gh, gw, heads)
  i, j = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
  if align == "cell":
    rows = (i // 2) * gw + (j // 2)
  else:
    rows = (i * width + j) % (gh * gw)
  return grid[:, rows.reshape(-1), :]


def check_even_grid(height, width, who):
  """Returns (height, width) as ints, or raises: both known, even and >= 2."""
  for name, value in (("height", height), ("width", width)):
    if value is None:
      raise ValueError(f"{who}: {name} is unknown (None); expected a static spatial size "
                       "(build the model with a fixed height and width).")
    if int(value) < 2 or int(value) % 2:
      raise ValueError(f"{who}: {name}={value} is odd or below 2; expected an even size "
                       "because keys and values are max-pooled 2x2. Place the module at "
                       "an even resolution.")
  return int(height), int(width)
