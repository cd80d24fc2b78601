"""hamgan-compare: one table and one plot over several training runs.

Usage: hamgan-compare RUN_DIR [RUN_DIR ...] --out=DIR

Each RUN_DIR is the --model_dir of a hamgan-train run (local or gs://). Writes
DIR/comparison.md (runs beside the paper's quoted figures), DIR/comparison.json
(the same rows) and DIR/fid_vs_step.png. FID/IS columns are per evaluation
protocol, so numbers measured differently are never ranked together.

Runs whose configs differ only in train.seed form a group: per metric n, mean, std,
the 95% Student-t interval, median and best-of-n (the paper's convention), Welch
tests between groups, and a band plot per metric (DIR/seeds_NN_<metric>.png); see
docs/comparison.md. hamgan-sweep trains and evaluates such groups.
"""
import logging

from absl import app
from absl import flags

from hamgan import output_paths
from hamgan.cli import errors
from hamgan.compare import report
from hamgan.compare import runs
from hamgan.compare import table

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Folder for comparison.md, comparison.json and "
                    "fid_vs_step.png (created if missing; local or gs://).")


def main(argv):
  run_dirs = argv[1:]
  if FLAGS.out is None:
    raise app.UsageError("--out is required: the folder to write comparison.md, "
                         "comparison.json and fid_vs_step.png into (e.g. --out=runs/compare).")
  output_paths.check_folder(  # before any run is read
      "--out", FLAGS.out, names=("comparison.md", "comparison.json", report.PLOT_NAME),
      what="comparison.md, comparison.json and fid_vs_step.png")
  logging.getLogger("hamgan.compare").setLevel(logging.INFO)
  reports = report.write_comparison(run_dirs, FLAGS.out)
  warned = sum(len(r.warnings) for r in reports)
  headers, rows = table.run_table_cells(reports, runs.columns_of(reports))
  print(table.markdown_table(headers, rows))
  print(f"hamgan-compare: {len(reports)} runs -> {FLAGS.out}/comparison.md, "
        f"comparison.json, fid_vs_step.png ({warned} warnings)")


TOOL = errors.Tool("hamgan-compare", main, doc=__doc__, key_flags=("out",))
run = TOOL.run  # the console entry point: every error becomes one line


if __name__ == "__main__":
  run()
