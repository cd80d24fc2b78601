"""hamgan-compare: one table and one plot over several training run directories.

Modules, one concept each:
  files    local or gs:// paths: exists, read, write, join (TF only for gs://).
  params   trainable parameter counts of G and D from a run's latest checkpoint.
  runs     a run directory -> RunReport (settings, speed, parameters, FID/IS curves).
  paper    the paper's quoted figures, from paper_figures.json (with their sources).
  table    the runs table and comparison.md / comparison.json rows.
  plot     fid_vs_step.png.
  report   write_comparison: all of the above into one output folder.

The run's settings are read through hamgan.run_config, the one reader of a saved gin
config outside gin itself.
"""
