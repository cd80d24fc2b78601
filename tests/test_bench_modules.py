"""hamgan-bench modules' table: each ratio beside the two times it comes from."""
from hamgan.bench import modules


def test_ratio_cells_show_the_side_by_side_times():
  sagan = dict(module="sagan", steps=6, params=10, gmacs=1.0, train_ms=84.7,
               backward_ms=40.0, infer_ms=20.0, peak_mb=100.0,
               ratios={"vs_ylg": 0.5}, side_by_side_ms={"sagan": 90.0, "ylg": 180.0})
  ylg = dict(module="ylg", steps=6, params=10, gmacs=1.0, train_ms=108.4,
             backward_ms=50.0, infer_ms=30.0, peak_mb=150.0,
             ratios={"vs_sagan": 2.28}, side_by_side_ms={"ylg": 193.0, "sagan": 84.6})
  table = modules.format_table([sagan, ylg]).splitlines()
  assert "(side by side)" in table[0]
  ylg_row = [c.strip() for c in table[3].split("|")]
  # The `train ms` column is the row's own process; the ratio shows its own pair.
  assert ylg_row[5] == "108.4" and ylg_row[9] == "2.28x (193/85 ms)"
  assert ylg_row[11] == "1.50x"  # peak memory against SAGAN's row
