"""Tests of the YLG masks (hamgan.layers.ylg_masks), against the written definitions
of docs/design.md, 'YLG local attention' (the public YLG code's patterns)."""
import itertools
import math

import numpy as np
import pytest

from hamgan.layers import ylg_masks as masks_lib
from hamgan.layers.ylg_masks import head_patterns, manhattan_order, query_masks, ylg_masks

def test_manhattan_order_of_4x4_and_2x3_grids():
  order = [tuple(c) for c in manhattan_order(4, 4)]
  assert order[:6] == [(0, 0), (0, 1), (1, 0), (0, 2), (1, 1), (2, 0)]
  assert order[6:10] == [(0, 3), (1, 2), (2, 1), (3, 0)]
  assert order[-1] == (3, 3)
  assert sorted(order) == [(i, j) for i in range(4) for j in range(4)]
  # A non-square grid, written out by hand.
  assert [tuple(c) for c in manhattan_order(2, 3)] == [
      (0, 0), (0, 1), (1, 0), (0, 2), (1, 1), (1, 2)]


def _expected_row_counts(name, n):
  """Ones per row of a 1-D pattern, counted analytically (not from the masks)."""
  s = math.floor(math.sqrt(n))
  r = np.arange(n)
  if name == "left_floor":
    return r % s + 1
  if name == "right_floor":  # from r to the end of its block (the last one may be short)
    return np.minimum((r // s + 1) * s, n) - r
  if name == "left_repetitive":  # columns s-1, 2s-1, ... plus r unless r is one of them
    return n // s + (r % s != s - 1)
  if name == "right_repetitive":  # columns 0, s, .. up to n - s, plus r unless among them
    return n // s + ((r % s != 0) | (r > n - s))
  raise AssertionError(name)


@pytest.mark.parametrize("grid", [(4, 4), (4, 5), (8, 8), (8, 16)])
def test_ylg_mask_density_per_pattern(grid):
  gh, gw = grid
  n = gh * gw
  masks = ylg_masks(gh, gw)
  assert masks.shape == (8, n, n) and masks.dtype == np.float32
  assert set(np.unique(masks)) <= {0.0, 1.0}
  assert head_patterns(8) == ["right_floor", "right_repetitive"] * 2 + [
      "left_floor", "left_repetitive"] * 2
  order = manhattan_order(gh, gw)
  raster = order[:, 0] * gw + order[:, 1]
  for h, name in enumerate(head_patterns(8)):
    # Row of the r-th cell in ESA order has the documented number of ones.
    counts = masks[h].sum(axis=1)[raster]
    np.testing.assert_array_equal(counts, _expected_row_counts(name, n))


def _rule(name, a, b, s, n):
  """Whether 1-D position a sees b (of n, stride s), from the written definitions of
  docs/design.md, 'YLG local attention' (RightRepetitive as the public YLG code builds
  it: the LeftRepetitive columns moved s - 1 to the left)."""
  if name == "left_floor":
    return a - a % s <= b <= a
  if name == "right_floor":
    return b - b % s <= a <= b
  if name == "left_repetitive":
    return b % s == s - 1 or a == b
  # b is a LeftRepetitive column (b + s - 1, with (b + s - 1) % s == s - 1) moved left.
  return ((b + s - 1) % s == s - 1 and b + s - 1 < n) or a == b


def _np_rank(gh, gw):
  """Cell -> position in the Manhattan (ESA) enumeration: by i + j, ties by i."""
  cells = sorted(itertools.product(range(gh), range(gw)), key=lambda c: (c[0] + c[1], c[0]))
  return {cell: k for k, cell in enumerate(cells)}


def _np_query_masks(height, width, heads, align):
  """(heads, H*W, n_k) masks of every query pixel, from the definitions alone."""
  gh, gw = height // 2, width // 2
  n, s = gh * gw, math.isqrt(gh * gw)
  rank = _np_rank(gh, gw)
  names = ["right_floor", "right_repetitive"] * (heads // 4) + [
      "left_floor", "left_repetitive"] * (heads // 4)
  masks = np.zeros((heads, height * width, n), np.float32)
  for q in range(height * width):
    i, j = divmod(q, width)
    # cell: the pixel's own 2x2 cell; raster: the grid mask tiled over raster blocks.
    cell = (i // 2, j // 2) if align == "cell" else divmod(q % n, gw)
    for key in range(n):
      for h, name in enumerate(names):
        masks[h, q, key] = _rule(name, rank[cell], rank[divmod(key, gw)], s, n)
  return masks


def test_right_repetitive_on_a_non_square_grid_is_the_public_codes():
  # An 8x16 key grid (a 16x32 map): n = 128, s = 11. YLG's RightRepetitive takes the
  # columns c with c % 11 == 10 (10, 21, ..., 120) moved 10 to the left: 0, 11, ..., 110,
  # so 121 (a multiple of 11 below 128) is not among them.
  pattern = masks_lib.pattern_1d("right_repetitive", 128)
  assert masks_lib.stride_for(128) == 11
  np.testing.assert_array_equal(np.flatnonzero(pattern[5]), [0, 5, 11, 22, 33, 44, 55,
                                                             66, 77, 88, 99, 110])
  assert pattern[121, 121] == 1 and pattern[:121, 121].sum() == 0
  q = query_masks(16, 32, align="raster")
  np.testing.assert_array_equal(q, _np_query_masks(16, 32, 8, "raster"))


def test_ylg_masks_lay_the_pattern_along_the_manhattan_order():
  gh, gw = 4, 6
  n, s = gh * gw, math.floor(math.sqrt(gh * gw))
  masks = ylg_masks(gh, gw)
  rank = {tuple(c): k for k, c in enumerate(manhattan_order(gh, gw))}
  for h, name in enumerate(head_patterns(8)):
    for qa, qb in itertools.product(range(n), repeat=2):
      cell_a, cell_b = divmod(qa, gw), divmod(qb, gw)  # raster index -> (i, j)
      want = _rule(name, rank[cell_a], rank[cell_b], s, n)
      assert masks[h, qa, qb] == float(want), (name, cell_a, cell_b)


@pytest.mark.parametrize("align", ["cell", "raster"])
def test_every_query_sees_a_key_and_itself(align):
  q = query_masks(8, 12, align=align)  # 8x12 pixels, 4x6 key grid
  assert q.shape == (8, 96, 24)
  assert (q.sum(axis=-1) >= 1).all()
  if align == "cell":
    # Each pixel sees its own downsampled cell in every head (the diagonal).
    cells = [(i // 2) * 6 + j // 2 for i in range(8) for j in range(12)]
    assert (q[:, np.arange(96), cells] == 1).all()


def test_query_alignment_cell_versus_raster():
  grid = ylg_masks(4, 4)
  cell, raster = query_masks(8, 8, align="cell"), query_masks(8, 8, align="raster")
  for i, j in itertools.product(range(8), repeat=2):
    q = i * 8 + j
    np.testing.assert_array_equal(cell[:, q], grid[:, (i // 2) * 4 + j // 2])
    np.testing.assert_array_equal(raster[:, q], grid[:, q % 16])
  assert not np.array_equal(cell, raster)


def test_two_heads_reach_every_key():
  masks = ylg_masks(8, 8) > 0
  names = head_patterns(8)

  def reach(a, b):  # query -> key through head a, then that key as query through head b
    return (masks[a].astype(np.int32) @ masks[b].astype(np.int32)) > 0

  # Right-to-left heads (0-3) and left-to-right heads (4-7): a repetitive head then a
  # floor head of the same direction reaches every key in two hops.
  assert (names[1], names[0]) == ("right_repetitive", "right_floor")
  assert (names[5], names[4]) == ("left_repetitive", "left_floor")
  assert reach(1, 0).all() and reach(5, 4).all()
  # No single head does, and two floor heads stay inside one block of s keys.
  assert not any(masks[h].all() for h in range(8))
  assert reach(0, 4).sum(axis=1).max() == 8
  # The union of all heads over two layers connects everything.
  union = masks.any(axis=0).astype(np.int32)
  assert ((union @ union) > 0).all()

  # The same holds for pixels: head 1 at the queries, keys pooled from their 2x2
  # pixels, which as queries attend through head 0 (cell alignment).
  q = query_masks(16, 16, align="cell").astype(np.int32)  # (heads, 256 pixels, 64 keys)
  pool = q.shape[1]
  cell_of = np.array([(i // 2) * 8 + j // 2 for i in range(16) for j in range(16)])
  pixels_of_cell = (cell_of[None, :] == np.arange(64)[:, None]).astype(np.int32)
  assert pixels_of_cell.shape == (64, pool)
  assert ((q[1] @ pixels_of_cell @ q[0]) > 0).all()


def test_bad_mask_arguments():
  with pytest.raises(ValueError, match="height=3 is odd"):
    query_masks(3, 4)
  with pytest.raises(ValueError, match="unknown pattern 'diagonal'"):
    masks_lib.pattern_1d("diagonal", 16)
  with pytest.raises(ValueError, match="heads=3: expected a positive even integer"):
    ylg_masks(4, 4, heads=3)
