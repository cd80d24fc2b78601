"""Rows never lost: evaluators in several processes write result rows to one run at once.

The writers are real processes (hamgan.bench.row_writers): in each of ten rounds they
meet at a barrier of files, then each writes ten rows of its own keys through
`hamgan.run_dir.write_result` as fast as it can. `hamgan.run_dir` imports no TensorFlow
for local paths, so a writer starts in a fraction of a second; the test holds it to that.
"""
import json
import os
import subprocess
import sys

from hamgan import run_dir
from hamgan.bench import row_writers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WRITERS, ROUNDS, ROWS = 2, 10, 10


def test_importing_run_dir_imports_no_tensorflow():
  code = ("import sys, hamgan.run_dir, hamgan.bench.row_writers; "
          "print(sorted(m for m in sys.modules if m.split('.')[0] in "
          "('tensorflow', 'keras', 'tf_keras', 'gin')))")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True,
                       capture_output=True, text=True, timeout=120).stdout
  assert out.strip() == "[]", out


def test_two_processes_writing_rows_at_once_lose_none(tmp_path):
  model_dir = str(tmp_path / "run")
  reports, kept, torn = row_writers.measure(model_dir, "rows", WRITERS, ROUNDS, ROWS,
                                            timeout_s=600)
  # Every writer wrote every row without an error, and none of them imported TensorFlow.
  assert sorted(r["writer"] for r in reports) == list(range(WRITERS))
  for report in reports:
    assert report["errors"] == {}, report
    assert report["tensorflow_imported"] is False, report

  want = {(w, r, k) for w in range(WRITERS) for r in range(ROUNDS) for k in range(ROWS)}
  rows = run_dir.read_results(model_dir)
  assert len(rows) == len(kept) == WRITERS * ROUNDS * ROWS
  assert {(row["writer"], row["round"], row["step"] - row["round"] * ROWS)
          for row in rows} == want
  assert len(os.listdir(os.path.join(model_dir, run_dir.ROWS_DIR))) == len(want)

  # eval/results.jsonl, remade from the rows for people, parses and holds every row.
  assert torn == 0
  with open(os.path.join(model_dir, run_dir.RESULTS)) as f:
    lines = [json.loads(line) for line in f]
  assert sorted(map(run_dir.row_key, lines)) == sorted(map(run_dir.row_key, rows))
  # No temporary file of a writer is left behind.
  assert [n for d in (run_dir.ROWS_DIR, run_dir.EVAL_DIR)
          for n in os.listdir(os.path.join(model_dir, d)) if ".tmp" in n] == []
