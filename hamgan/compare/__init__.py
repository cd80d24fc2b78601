"""hamgan-compare and hamgan-sweep: training run directories side by side, and in groups of seeds.

Modules, one concept each:
  params   trainable parameter counts of G and D from a run's latest checkpoint.
  runs     a run directory -> RunReport (settings, speed, parameters, FID/IS curves).
  paper    the paper's quoted figures, from paper_figures.json (with their sources).
  table    the runs table and comparison.md / comparison.json rows.
  plot     fid_vs_step.png.
  seeds    runs that differ only in train.seed, as groups; each group's metrics.
  stats    a group's summary (mean, std, Student-t interval, best-of-n) and Welch's test.
  seeds_report  the groups of seeds in comparison.md / comparison.json.
  bands    seeds_NN_<metric>.png: per group a mean line and a min-max band against step.
  report   write_comparison: all of the above into one output folder.
  grid     hamgan-sweep's grid: --vary axes x --seeds, each run directory's name.
  sweep    hamgan-sweep: train, evaluate and compare every run of a grid, resumably.

The run's settings are read through hamgan.run_config, the one reader of a saved gin
config outside gin itself; its rows through hamgan.run_dir; local or gs:// paths through
hamgan.files.
"""
