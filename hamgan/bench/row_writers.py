"""Evaluators that write result rows to one run at the same moment: are rows lost?

  python -m hamgan.bench.row_writers [--writers 2] [--rounds 10] [--rows 10]
      [--mode rows|whole_file] [--model_dir DIR]

Starts `--writers` processes. In each of `--rounds` rounds they meet at a barrier
(a file per writer and round; nobody starts before all are there) and then each writes
`--rows` rows with keys of its own as fast as it can:

* `rows`: through `hamgan.run_dir.write_result` (one object per row, eval/rows/).
* `whole_file`: the way eval/results.jsonl was written before eval/rows: read the whole
  file, append the row, write a fixed `results.jsonl.tmp` and rename it into place.

Prints one line per mode: rows written, rows kept, errors the writers met, seconds.
Imports no TensorFlow (a writer reports whether anything imported it).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from hamgan import run_dir

MODES = ("rows", "whole_file")
BARRIER_TIMEOUT_S = 120.0


def make_row(writer, round_index, k, rows_per_round):
  """A row whose key is this writer's own (step and seed differ between writers)."""
  return {"step": round_index * rows_per_round + k, "seed": writer, "writer": writer,
          "round": round_index, "fid": 1.0 + k, "wall_time": time.time()}


def _whole_file_write(model_dir, row):
  """The former results.write_result, in plain Python: read all, append, rename a tmp."""
  path = os.path.join(model_dir, run_dir.RESULTS)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  rows = []
  if os.path.exists(path):
    with open(path) as f:
      rows = [json.loads(line) for line in f if line.strip()]
  rows.append(row)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
  os.replace(tmp, path)


def _barrier(barrier_dir, round_index, writer, writers):
  open(os.path.join(barrier_dir, f"round-{round_index}-writer-{writer}"), "w").close()
  deadline = time.monotonic() + BARRIER_TIMEOUT_S
  while True:
    here = [n for n in os.listdir(barrier_dir) if n.startswith(f"round-{round_index}-")]
    if len(here) >= writers:
      return
    if time.monotonic() > deadline:
      raise TimeoutError(f"round {round_index}: {len(here)} of {writers} writers came")
    time.sleep(0.0005)


def worker(model_dir, barrier_dir, writer, writers, rounds, rows_per_round, mode):
  """One writer process's work; returns its report (a dict)."""
  write = run_dir.write_result if mode == "rows" else _whole_file_write
  errors = {}
  start = time.monotonic()
  for r in range(rounds):
    _barrier(barrier_dir, r, writer, writers)
    for k in range(rows_per_round):
      try:
        write(model_dir, make_row(writer, r, k, rows_per_round))
      except (OSError, ValueError) as e:
        name = type(e).__name__
        errors[name] = errors.get(name, 0) + 1
  return {"writer": writer, "errors": errors, "seconds": time.monotonic() - start,
          "tensorflow_imported": "tensorflow" in sys.modules}


def kept_rows(model_dir, mode):
  """(rows a reader finds afterwards, lines of eval/results.jsonl that do not parse).

  `rows`: every row `run_dir.read_results` returns; `whole_file`: the rows that parse
  in results.jsonl (two writers of one tmp file can leave it torn).
  """
  path = os.path.join(model_dir, run_dir.RESULTS)
  rows, broken = [], 0
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        try:
          rows.append(json.loads(line))
        except ValueError:
          broken += 1
  return (run_dir.read_results(model_dir) if mode == "rows" else rows), broken


def measure(model_dir, mode="rows", writers=2, rounds=10, rows_per_round=10, timeout_s=300):
  """Runs the writer processes on `model_dir`; returns (writer reports, rows kept,
  unparseable lines of results.jsonl)."""
  barrier = tempfile.mkdtemp(prefix="hamgan-row-barrier-")
  procs = [subprocess.Popen(
      [sys.executable, "-m", "hamgan.bench.row_writers", "--worker", str(w),
       "--barrier", barrier, "--model_dir", model_dir, "--writers", str(writers),
       "--rounds", str(rounds), "--rows", str(rows_per_round), "--mode", mode],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for w in range(writers)]
  reports = []
  try:
    for p in procs:
      out, err = p.communicate(timeout=timeout_s)
      if p.returncode != 0:
        raise RuntimeError(f"a row writer exited with {p.returncode}: {err[-2000:]}")
      reports.append(json.loads(out.strip().splitlines()[-1]))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  return (reports,) + kept_rows(model_dir, mode)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--writers", type=int, default=2)
  parser.add_argument("--rounds", type=int, default=10)
  parser.add_argument("--rows", type=int, default=10)
  parser.add_argument("--mode", choices=MODES + ("both",), default="both")
  parser.add_argument("--model_dir", default="")
  parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
  parser.add_argument("--barrier", default="", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker is not None:
    print(json.dumps(worker(args.model_dir, args.barrier, args.worker, args.writers,
                            args.rounds, args.rows, args.mode)))
    return
  for mode in (MODES if args.mode == "both" else (args.mode,)):
    model_dir = args.model_dir or tempfile.mkdtemp(prefix=f"hamgan-rows-{mode}-")
    if args.mode == "both" and args.model_dir:
      model_dir = os.path.join(args.model_dir, mode)
    reports, kept, broken = measure(model_dir, mode, args.writers, args.rounds, args.rows)
    written = args.writers * args.rounds * args.rows
    errors = {}
    for report in reports:
      for name, n in report["errors"].items():
        errors[name] = errors.get(name, 0) + n
    print(f"{mode}: {args.writers} writers x {args.rounds} rounds x {args.rows} rows: "
          f"{written} written, {len(kept)} kept, {written - len(kept)} lost, "
          f"{broken} torn line(s) in results.jsonl, errors {errors or 'none'}; "
          f"{max(r['seconds'] for r in reports):.2f} s; "
          f"TensorFlow imported: {any(r['tensorflow_imported'] for r in reports)}")


if __name__ == "__main__":
  main()
