"""write_comparison: run directories in, comparison.md / .json and the plots out.

The runs table and fid_vs_step.png show every run; the groups of seeds (runs that differ
only in train.seed, hamgan.compare.seeds) add their statistics, the Welch differences
between groups and one band plot per metric (seeds_NN_<metric>.png).
"""
import json

from hamgan import files
from hamgan.compare import paper as paper_lib
from hamgan.compare import plot
from hamgan.compare import runs as runs_lib
from hamgan.compare import seeds
from hamgan.compare import seeds_report
from hamgan.compare import table

PLOT_NAME = "fid_vs_step.png"


def write_comparison(run_dirs, out_dir):
  """Reads the runs and writes comparison.md, comparison.json, fid_vs_step.png and the
  band plots of the groups of seeds.

  Every path is checked before anything is written. Returns the list of RunReports.
  """
  reports = runs_lib.read_runs(list(run_dirs))
  columns = runs_lib.columns_of(reports)
  paper = paper_lib.load()
  groups = seeds.group_reports(reports)
  group_rows, differences = seeds_report.build(groups)
  files.makedirs(out_dir)
  plot.plot_fid(reports, columns, files.join(out_dir, PLOT_NAME))
  band_plots = seeds_report.write_plots(groups, out_dir)
  markdown = table.render_markdown(reports, columns, paper, PLOT_NAME,
                                   seeds_report.render(group_rows, differences, band_plots))
  files.write_bytes(files.join(out_dir, "comparison.md"), markdown.encode("utf-8"))
  payload = dict(
      columns=[dict(key=c.key, kind=c.kind, metric=c.metric, protocol=c.protocol,
                    generator=c.generator, variant=c.variant, header=c.header)
               for c in columns],
      runs=table.run_rows(reports, columns),
      groups=group_rows, differences=differences, band_plots=band_plots,
      paper_reference=dict(source=f"{paper.paper}, {paper.quality_source} (quoted, not measured)",
                           protocol=paper.protocol, speed=paper.speed,
                           speed_source=paper.speed_source,
                           rows=[dict(r) for r in paper.rows]))
  files.write_bytes(files.join(out_dir, "comparison.json"),
                    (json.dumps(payload, indent=2, sort_keys=False) + "\n").encode("utf-8"))
  return reports
