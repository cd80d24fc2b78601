"""write_comparison: run directories in, comparison.md / .json and fid_vs_step.png out."""
import json

from hamgan import files
from hamgan.compare import paper as paper_lib
from hamgan.compare import plot
from hamgan.compare import runs as runs_lib
from hamgan.compare import table

PLOT_NAME = "fid_vs_step.png"


def write_comparison(run_dirs, out_dir):
  """Reads the runs and writes comparison.md, comparison.json and fid_vs_step.png.

  Every path is checked before anything is written. Returns the list of RunReports.
  """
  reports = runs_lib.read_runs(list(run_dirs))
  columns = runs_lib.columns_of(reports)
  paper = paper_lib.load()
  files.makedirs(out_dir)
  plot.plot_fid(reports, columns, files.join(out_dir, PLOT_NAME))
  files.write_bytes(files.join(out_dir, "comparison.md"),
                    table.render_markdown(reports, columns, paper, PLOT_NAME).encode("utf-8"))
  payload = dict(
      columns=[dict(key=c.key, kind=c.kind, metric=c.metric, protocol=c.protocol,
                    generator=c.generator, header=c.header) for c in columns],
      runs=table.run_rows(reports, columns),
      paper_reference=dict(source=f"{paper.paper}, {paper.quality_source} (quoted, not measured)",
                           protocol=paper.protocol, speed=paper.speed,
                           speed_source=paper.speed_source,
                           rows=[dict(r) for r in paper.rows]))
  files.write_bytes(files.join(out_dir, "comparison.json"),
                    (json.dumps(payload, indent=2, sort_keys=False) + "\n").encode("utf-8"))
  return reports
