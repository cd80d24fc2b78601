"""The truncation trick for z, with a floor and a bound (no TensorFlow: flags check it).

With a threshold t, every entry of z ~ N(0, 1) with |z| > t is redrawn until none is
left. A fraction erf(t / sqrt 2) of draws lands inside (0.8 t for small t), so a tiny t
would redraw almost forever: thresholds below MIN_TRUNCATION are refused before any
work, and the redrawing stops after MAX_REDRAW_ROUNDS rounds with an error. At the
floor (4% of draws inside) the rounds needed to clear N entries are about ln(N) / 0.04:
under 800 even for 10^13 entries, so a threshold that is allowed never reaches the bound.
"""
import math

import numpy as np

MIN_TRUNCATION = 0.05
MAX_REDRAW_ROUNDS = 2000


def check_truncation(truncation):
  """Returns `truncation` (None or a float >= MIN_TRUNCATION), or raises a ValueError."""
  if truncation is None:
    return None
  if isinstance(truncation, bool) or not isinstance(truncation, (int, float, np.floating)):
    raise ValueError(f"truncation={truncation!r} is not a number; pass a threshold such as "
                     "0.5, or none for plain z.")
  t = float(truncation)
  if not math.isfinite(t) or t <= 0:
    raise ValueError(f"truncation={t!r} is not a finite number > 0; pass a threshold such "
                     "as 0.5 (0.5 .. 2 is usual), or leave truncation out for plain z.")
  if t < MIN_TRUNCATION:
    inside = math.erf(t / math.sqrt(2.0))
    raise ValueError(
        f"truncation={t!r} is below the floor {MIN_TRUNCATION}: only {inside:.2g} of N(0, 1) "
        f"draws fall within +-{t!r}, so z would need about {1 / max(inside, 1e-300):.2g} "
        "redraws per entry; it is refused before any work. Pass a threshold >= "
        f"{MIN_TRUNCATION} (0.5 .. 2 is usual), or leave truncation out for plain z.")
  return t


def truncate(rng, z, truncation, max_rounds=MAX_REDRAW_ROUNDS):
  """Redraws, in place, the entries of z with |z| > truncation from `rng`; returns z.

  Raises a ValueError when entries are still outside after `max_rounds` rounds.
  """
  t = check_truncation(truncation)
  bad = np.abs(z) > t
  for _ in range(max_rounds):
    if not bad.any():
      return z
    z[bad] = rng.standard_normal(int(bad.sum())).astype(z.dtype)
    bad = np.abs(z) > t
  if bad.any():
    raise ValueError(
        f"truncation={t!r}: {int(bad.sum())} of {z.size} entries of z were still outside "
        f"+-{t!r} after {max_rounds} rounds of redrawing (the bound); pass a larger "
        "threshold (0.5 .. 2 is usual).")
  return z
