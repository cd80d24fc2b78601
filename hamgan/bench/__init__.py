"""Benchmarks (`hamgan-bench modules | step | eval`): ratios measured in one process."""
import json
import os


def write_results(rows, jsonl_path, markdown, markdown_path):
  """Appends `rows` to a JSON-lines file and writes this run's Markdown tables.

  The JSON lines accumulate across runs (each row carries its settings and time); the
  Markdown file holds the latest run only, ready to paste into docs/benchmarks.md.
  Either path may be '' to skip it. Returns a line saying where things went.
  """
  said = []
  if jsonl_path:
    os.makedirs(os.path.dirname(os.path.abspath(jsonl_path)), exist_ok=True)
    with open(jsonl_path, "a") as f:
      for row in rows:
        f.write(json.dumps(row, sort_keys=True, default=str) + "\n")
    said.append(f"rows appended to {jsonl_path}")
  if markdown_path:
    os.makedirs(os.path.dirname(os.path.abspath(markdown_path)), exist_ok=True)
    with open(markdown_path, "w") as f:
      f.write(markdown.rstrip("\n") + "\n")
    said.append(f"tables written to {markdown_path}")
  return "; ".join(said)  # '' when both paths were ''


def add_output_flags(parser, name):
  """--out (JSON lines, appended) and --markdown (this run's tables) for bench `name`."""
  parser.add_argument("--out", default=f"runs/bench_{name}.jsonl",
                      help="JSON-lines file the rows are appended to ('' for none)")
  parser.add_argument("--markdown", default=f"runs/bench_{name}.md",
                      help="Markdown file the tables of this run are written to ('' for none)")
