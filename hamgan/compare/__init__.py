"""hamgan-compare and hamgan-sweep: training run directories side by side, and in groups of seeds.

Modules, one concept each:
  files    local or gs:// paths: exists, read, write, join (TF only for gs://).
  params   trainable parameter counts of G and D from a run's latest checkpoint.
  runs     a run directory -> RunReport (settings, speed, parameters, FID/IS curves).
  paper    the paper's quoted figures, from paper_figures.json (with their sources).
  table    the runs table and comparison.md / comparison.json rows.
  plot     fid_vs_step.png.
  seeds    runs that differ only in train.seed, as groups; each group's metrics.
  stats    a group's summary (mean, std, Student-t interval, best-of-n) and Welch's test.
  seeds_report, bands   the groups in comparison.md / .json, and their band plots.
  report   write_comparison: all of the above into one output folder.
  grid, sweep   hamgan-sweep: a grid of settings x seeds, trained, evaluated, compared.

The run's settings are read through hamgan.run_config, the one reader of a saved gin
config outside gin itself.
"""
