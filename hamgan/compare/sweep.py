"""A sweep: train every point of a grid (hamgan.compare.grid), evaluate it, compare.

Each point is a run directory ROOT/<name> trained by its own subprocess
`python -m hamgan.cli.train` (a crash costs that run only) and then evaluated by
`python -m hamgan.cli.eval --all` with the sweep's evaluation flags; at the end
`hamgan.compare.report.write_comparison` writes comparison.md, comparison.json and the
plots into ROOT. Logs of every subprocess and the grid (sweep.json) go to ROOT/.sweep/,
a hidden folder, so that ROOT/*/ lists only run directories.

Resuming is the tools' own: a run with TRAINING_DONE is not trained again, a half-done
one resumes from its checkpoints (hamgan-train does that from its model_dir), and the
evaluator skips every row it has already recorded with the same settings.
"""
import concurrent.futures
import dataclasses
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time

from absl import logging

from hamgan import files
from hamgan import run_dir
from hamgan.compare import grid
from hamgan.compare import report
from hamgan.compare import runs as runs_lib

META_DIR = ".sweep"
_TAIL = 400   # characters of a failed subprocess' log quoted in its failure


@dataclasses.dataclass
class Sweep:
  """Everything a sweep is: the experiment, the grid, where it goes, how it is scored."""
  gin_files: list
  axes: list
  seeds: list
  root: str
  gin_params: list = ()
  eval_args: list = ()   # hamgan-eval flags, e.g. ['--num_samples=2000', '--manifold']
  parallel: int = 1
  max_runs: int = None   # train at most this many runs now; the rest on the next call
  evaluate: bool = True
  python: str = sys.executable

  @property
  def points(self):
    return grid.make_points(self.axes, self.seeds)

  def model_dir(self, point):
    return files.join(self.root, point.name)

  def log_path(self, point, stage):
    """Where a subprocess' output goes: ROOT/.sweep/logs, or a local folder for gs://."""
    top = (os.path.join(tempfile.gettempdir(), "hamgan-sweep", grid.sanitize(self.root))
           if files.is_remote(self.root) else os.path.join(self.root, META_DIR))
    return os.path.join(top, "logs", f"{point.name}.{stage}.log")

  def train_args(self, point):
    return ([f"--gin_file={f}" for f in self.gin_files]
            + [f"--gin_param={p}" for p in list(self.gin_params) + point.gin_params()]
            + [f"--model_dir={self.model_dir(point)}"])

  def eval_args_for(self, point):
    return [f"--model_dir={self.model_dir(point)}", "--all"] + list(self.eval_args)

  def commands(self, point):
    """(hamgan-train, hamgan-eval) command lines of `point`, as a user types them."""
    return (shell_line(["hamgan-train"] + self.train_args(point)),
            shell_line(["hamgan-eval"] + self.eval_args_for(point)))

  def compare_command(self):
    return shell_line(["hamgan-compare"] + [self.model_dir(p) for p in self.points]
                      + [f"--out={self.root}"])


def shell_line(argv):
  """argv as a POSIX shell line; --flag="gin 'text'" where double quotes suffice."""
  def quote(arg):
    if shlex.quote(arg) == arg:
      return arg
    if set(arg) & set('"$`\\!'):
      return shlex.quote(arg)
    name, eq, value = arg.partition("=")
    if name.startswith("--") and eq and shlex.quote(name) == name:
      return f'{name}="{value}"'
    return f'"{arg}"'
  return " ".join(quote(a) for a in argv)


def check(sweep):
  """Refuses a sweep that cannot run, before anything is trained or written.

  Every distinct setting of the grid is resolved as hamgan-train would (gin files,
  bindings, the models built without weights), and the evaluation flags are parsed
  as hamgan-eval would; each failure names the run and what to fix.
  """
  # pylint: disable=import-outside-toplevel
  import gin
  from hamgan.cli import eval as eval_cli
  from hamgan.cli import train as train_cli
  if not sweep.root:
    raise ValueError("--root is empty; pass the folder that holds the sweep's runs, e.g. "
                     "--root=runs/sweep.")
  if sweep.parallel < 1 or (sweep.max_runs is not None and sweep.max_runs < 0):
    raise ValueError(f"--parallel={sweep.parallel}, --max_runs={sweep.max_runs}: expected "
                     "--parallel >= 1 and --max_runs >= 0.")
  grid.check_axes(sweep.axes, sweep.gin_params)
  try:
    eval_cli.parse_flags(["hamgan-eval"] + sweep.eval_args_for(sweep.points[0]))
  except Exception as e:  # pylint: disable=broad-except  # absl's flag errors
    raise ValueError(f"evaluation flags {list(sweep.eval_args)}: {e}") from None
  first_seed = [p for p in sweep.points if p.seed == sweep.seeds[0]]
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.WARNING)   # gin's per-file lines, once per setting
  try:
    for point in first_seed:
      try:
        train_cli.resolved_config(sweep.gin_files,
                                  list(sweep.gin_params) + point.gin_params())
      except train_cli.SetupError as e:
        raise ValueError(f"run {point.name} ({', '.join(point.gin_params())}) cannot "
                         f"start: {e}") from None
  finally:
    gin.clear_config()
    logging.set_verbosity(verbosity)


def state(sweep, point):
  """'done', 'started' (a half-done run: it resumes) or 'new'."""
  model_dir = sweep.model_dir(point)
  if run_dir.is_done(model_dir):
    return "done"
  return "started" if files.exists(model_dir) else "new"


def describe(sweep):
  """The lines --dry_run prints: every run, its directory, settings and state."""
  points = sweep.points
  lines = [f"{len(points)} runs = {len(points) // len(sweep.seeds)} settings x "
           f"{len(sweep.seeds)} seeds, under {sweep.root}:"]
  for i, point in enumerate(points, 1):
    settings = "; ".join(point.gin_params())
    lines.append(f"  {i:3d}. [{state(sweep, point):7s}] {sweep.model_dir(point)}  {settings}")
  return lines


@dataclasses.dataclass
class Outcome:
  point: grid.Point
  trained: bool
  seconds: float
  failure: str = None
  stopped: bool = False   # not run to its end because the sweep was stopped


class _Runner:
  """Runs the jobs, prints progress over the grid, and stops children on SIGTERM."""

  def __init__(self, sweep, write):
    self.sweep, self.write = sweep, write
    self.lock = threading.Lock()
    self.children = set()
    self.stopping = False

  def subprocess(self, module, args, log_path):
    """Runs `python -m module args` with its output in log_path; its exit status."""
    files.makedirs(os.path.dirname(log_path))
    with open(log_path, "a", encoding="utf-8") as log:
      log.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                f"{shlex.join([self.sweep.python, '-m', module] + args)}\n")
      log.flush()
      with self.lock:
        if self.stopping:
          return None
        child = subprocess.Popen([self.sweep.python, "-m", module] + args, stdout=log,
                                 stderr=subprocess.STDOUT)
        self.children.add(child)
      status = child.wait()
      with self.lock:
        self.children.discard(child)
    return status

  def failure(self, stage, status, log_path):
    with open(log_path, encoding="utf-8", errors="replace") as f:
      tail = " ".join(f.read()[-_TAIL:].split())
    return f"{stage} exited with status {status}; log {log_path}: ...{tail}"

  def job(self, point, train):
    start, sweep = time.time(), self.sweep
    if train:
      log = sweep.log_path(point, "train")
      status = self.subprocess("hamgan.cli.train", sweep.train_args(point), log)
      if self.stopping:
        return Outcome(point, True, time.time() - start, stopped=True)
      if status != 0:
        return Outcome(point, True, time.time() - start, self.failure("training", status, log))
      if not run_dir.is_done(sweep.model_dir(point)):
        return Outcome(point, True, time.time() - start,
                       f"training stopped before {run_dir.DONE_FILE} (a signal?); log {log}")
    if sweep.evaluate:
      log = sweep.log_path(point, "eval")
      status = self.subprocess("hamgan.cli.eval", sweep.eval_args_for(point), log)
      if self.stopping:
        return Outcome(point, train, time.time() - start, stopped=True)
      if status != 0:
        return Outcome(point, train, time.time() - start, self.failure("evaluation", status, log))
    return Outcome(point, train, time.time() - start)

  def stop(self, signum, _frame):
    with self.lock:
      self.stopping = True
      for child in self.children:
        child.send_signal(signal.SIGTERM)   # hamgan-train saves a checkpoint and exits
    self.write(f"[sweep] {signal.Signals(signum).name}: stopping the running jobs (they "
               "save a checkpoint); rerun the same command to resume.")


def _fmt_s(seconds):
  seconds = int(round(seconds))
  return f"{seconds // 3600}h{seconds // 60 % 60:02d}m{seconds % 60:02d}s"


def _progress(outcomes, total, pending_train, pending_eval, parallel, start):
  ok = [o for o in outcomes if not (o.failure or o.stopped)]
  trained = [o.seconds for o in ok if o.trained]
  evaluated = [o.seconds for o in ok if not o.trained]
  failed = sum(1 for o in outcomes if o.failure)
  line = (f"[sweep] {len(outcomes)}/{total} runs finished ({failed} failed), "
          f"elapsed {_fmt_s(time.time() - start)}")
  if pending_train and not trained:
    return line + ", ETA after the first trained run"
  left = (pending_train * (sum(trained) / len(trained) if trained else 0.0)
          + pending_eval * (sum(evaluated) / len(evaluated) if evaluated else 0.0))
  return line + f", ETA {_fmt_s(left / parallel)}"


def plan(sweep):
  """[(point, train?)] of this call, and the points left for a later one (--max_runs)."""
  jobs, deferred, trained = [], [], 0
  for point in sweep.points:
    needs = state(sweep, point) != "done"
    if needs and sweep.max_runs is not None and trained >= sweep.max_runs:
      deferred.append(point)
      continue
    trained += needs
    jobs.append((point, needs))
  return jobs, deferred


def write_meta(sweep):
  meta = dict(gin_files=list(sweep.gin_files), vary=[a.spec for a in sweep.axes],
              seeds=list(sweep.seeds), gin_params=list(sweep.gin_params),
              eval_args=list(sweep.eval_args),
              runs=[dict(name=p.name, settings=p.gin_params(), commands=sweep.commands(p))
                    for p in sweep.points])
  files.makedirs(files.join(sweep.root, META_DIR))
  files.write_atomic(files.join(sweep.root, META_DIR, "sweep.json"),
                     json.dumps(meta, indent=2) + "\n")


def run(sweep, write=print):
  """Trains, evaluates and compares the whole grid; returns the exit status (0: all
  done, 1: a run failed; runs deferred by --max_runs are not failures)."""
  jobs, deferred = plan(sweep)
  write_meta(sweep)
  runner, start, outcomes = _Runner(sweep, write), time.time(), []
  done_before = sum(1 for _, train in jobs if not train)
  write(f"[sweep] {len(sweep.points)} runs under {sweep.root}: {len(jobs) - done_before} to "
        f"train, {done_before} done already (not retrained), {len(deferred)} left for a "
        f"later call (--max_runs); {sweep.parallel} at a time.")
  main_thread = threading.current_thread() is threading.main_thread()
  previous = signal.signal(signal.SIGTERM, runner.stop) if main_thread else None
  try:
    with concurrent.futures.ThreadPoolExecutor(sweep.parallel) as pool:
      pending = [t for _, t in jobs]
      # The first job goes alone: it prepares what the others share (the tfds data set,
      # the real statistics), which two first users at once would both write.
      for batch in ([jobs[:1], jobs[1:]] if sweep.parallel > 1 else [jobs]):
        futures = [pool.submit(runner.job, p, t) for p, t in batch]
        for future in concurrent.futures.as_completed(futures):
          outcome = future.result()
          outcomes.append(outcome)
          pending.remove(outcome.trained)
          if outcome.failure:
            write(f"[sweep] {outcome.point.name} FAILED: {outcome.failure}")
          write(_progress(outcomes, len(jobs), sum(pending), len(pending) - sum(pending),
                          sweep.parallel, start) + f" (last: {outcome.point.name})")
  finally:
    if main_thread:
      signal.signal(signal.SIGTERM, previous)
  return _finish(sweep, outcomes, deferred, runner.stopping, write)


def _finish(sweep, outcomes, deferred, stopped, write):
  dirs = [sweep.model_dir(p) for p in sweep.points]
  present = [d for d in dirs if _is_run_dir(d)]
  if present:
    report.write_comparison(present, sweep.root)
    write(f"[sweep] comparison of {len(present)} runs: {files.join(sweep.root, 'comparison.md')}, "
          "comparison.json and the plots.")
  failed = [o for o in outcomes if o.failure]
  for o in failed:
    write(f"[sweep] failed: {o.point.name}: {o.failure}")
  if deferred:
    write(f"[sweep] {len(deferred)} runs not started (--max_runs={sweep.max_runs}); run the "
          "same command again to go on.")
  if stopped:
    write("[sweep] stopped by a signal; run the same command again to resume.")
    return 143
  return 1 if failed else 0


def _is_run_dir(path):
  try:
    runs_lib.check_run_dir(path)
  except ValueError:
    return False
  return True
