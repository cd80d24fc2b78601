"""Runs N `hamgan-train` processes on 127.0.0.1 as one MultiWorkerMirroredStrategy cluster.

Not a test module: the multi-worker tests import it. Every worker is a real
`python -m hamgan.cli.train` subprocess with its own TF_CONFIG (free ports on the
loopback), its stdout/stderr in a log file, and a bounded life: `Cluster` kills
whatever is still running when its `with` block ends, whatever happened in it.

Run as a script (`python multiworker_harness.py FLAGS`), this file is a worker that
first applies the test doubles its environment names, then runs hamgan-train:

  HAMGAN_TEST_DAMAGED=ckpt-4[,ckpt-N]  `hamgan.checkpoints.checkpoint_problem` reports
      those checkpoints (by basename, in any directory) as damaged in this process only.
  HAMGAN_TEST_REPORT_DIR=DIR  the worker writes DIR/restore-<task>.json, the
      (path, step) that `resume.agreed_checkpoint` returned to it, and its own copy of
      the full training state: DIR/<task>/restored right after the restore (or the
      initialisation) and DIR/<task>/ckpt-N after each save. Every worker writes its
      copies at the same points, as a save may read values through collectives.
"""
import json
import os
import runpy
import signal
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DAMAGED_ENV = "HAMGAN_TEST_DAMAGED"
REPORT_ENV = "HAMGAN_TEST_REPORT_DIR"


def free_ports(count):
  """`count` distinct TCP ports that were free on 127.0.0.1 a moment ago."""
  sockets, ports = [], []
  try:
    for _ in range(count):
      s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
      s.bind(("127.0.0.1", 0))
      sockets.append(s)
      ports.append(s.getsockname()[1])
  finally:
    for s in sockets:
      s.close()
  return ports


def tf_config(ports, index):
  """The TF_CONFIG text of worker `index` of a cluster of workers on `ports`."""
  return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                     "task": {"type": "worker", "index": index}})


class Cluster:
  """Starts and reaps hamgan-train workers; a context manager that always cleans up.

  Args:
    log_dir: where worker i writes worker_i.log (stdout and stderr together).
    num_workers: processes in the cluster (each one CPU replica).
  """

  def __init__(self, log_dir, num_workers=2):
    self.log_dir = str(log_dir)
    self.num_workers = num_workers
    self.procs = []
    self.returncodes = {}
    self.ended_at = {}
    os.makedirs(self.log_dir, exist_ok=True)

  def log_path(self, index):
    return os.path.join(self.log_dir, f"worker_{index}.log")

  def log(self, index):
    with open(self.log_path(index), errors="replace") as f:
      return f.read()

  def start(self, args, env=None, worker_env=None):
    """Starts every worker with `python -m hamgan.cli.train ARGS` (args: list of flags).

    `env` is added to every worker's environment, `worker_env` ({index: env}) to one
    worker's; workers are started through this file's test doubles (see the module
    docstring) when either names one of them.
    """
    ports = free_ports(self.num_workers)
    base = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="1", CUDA_VISIBLE_DEVICES="")
    base.update(env or {})
    envs = [dict(base, TF_CONFIG=tf_config(ports, i), **(worker_env or {}).get(i, {}))
            for i in range(self.num_workers)]
    doubles = any(name in e for e in envs for name in (DAMAGED_ENV, REPORT_ENV))
    entry = [os.path.abspath(__file__)] if doubles else ["-m", "hamgan.cli.train"]
    self.procs, self.returncodes, self.ended_at = [], {}, {}
    for i in range(self.num_workers):
      with open(self.log_path(i), "a") as log:
        self.procs.append(subprocess.Popen(
            [sys.executable, *entry, *args], cwd=REPO, env=envs[i],
            stdout=log, stderr=subprocess.STDOUT))
    return self

  def poll(self):
    for i, p in enumerate(self.procs):
      if i not in self.returncodes and p.poll() is not None:
        self.returncodes[i] = p.returncode
        self.ended_at[i] = time.time()
    return dict(self.returncodes)

  def wait(self, timeout, indices=None):
    """Waits up to `timeout` s for the workers to end; returns {index: returncode}."""
    indices = range(self.num_workers) if indices is None else indices
    deadline = time.time() + timeout
    while time.time() < deadline:
      codes = self.poll()
      if all(i in codes for i in indices):
        break
      time.sleep(0.2)
    return self.poll()

  def wait_for(self, predicate, timeout, what):
    """Polls `predicate()` until true; AssertionError naming `what` (and the logs) if not."""
    deadline = time.time() + timeout
    while time.time() < deadline:
      if predicate():
        return
      if self.poll():
        break  # a worker ended early: the condition will not come
      time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; worker ends {self.poll()}\n"
                         + self.tails())

  def send(self, index, sig):
    self.procs[index].send_signal(sig)

  def tails(self, lines=25):
    out = []
    for i in range(len(self.procs)):
      text = self.log(i).splitlines()[-lines:]
      out.append(f"--- worker {i} ---\n" + "\n".join(text))
    return "\n".join(out)

  def kill_all(self):
    for p in self.procs:
      if p.poll() is None:
        p.send_signal(signal.SIGKILL)
    for p in self.procs:
      try:
        p.wait(timeout=30)
      except subprocess.TimeoutExpired:
        pass

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.kill_all()
    return False


# ---------------------------------------------------------------- the worker's test doubles


def _install_doubles():
  """Applies the test doubles named by this process's environment (module docstring)."""
  from hamgan import checkpoints  # pylint: disable=import-outside-toplevel
  damaged = {n.strip() for n in os.environ.get(DAMAGED_ENV, "").split(",") if n.strip()}
  if damaged:
    real_problem = checkpoints.checkpoint_problem

    def checkpoint_problem(path, *args, **kwargs):
      if os.path.basename(path) in damaged:
        return f"DataLossError: injected damage of {os.path.basename(path)} (test double)"
      return real_problem(path, *args, **kwargs)
    checkpoints.checkpoint_problem = checkpoint_problem
    print(f"test double: this worker sees {sorted(damaged)} as damaged", flush=True)

  report = os.environ.get(REPORT_ENV)
  if report:
    from hamgan.training import cluster  # pylint: disable=import-outside-toplevel
    from hamgan.training import resume  # pylint: disable=import-outside-toplevel
    from hamgan.training import trainer as trainer_lib  # pylint: disable=import-outside-toplevel
    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    os.makedirs(report, exist_ok=True)
    real_agreed = resume.agreed_checkpoint

    def agreed_checkpoint(directory, agreement, *args, **kwargs):
      path, step = real_agreed(directory, agreement, *args, **kwargs)
      with open(os.path.join(report, f"restore-{task}.json"), "w") as f:
        json.dump({"path": path, "step": step}, f)
      return path, step
    resume.agreed_checkpoint = agreed_checkpoint

    def copy(trainer, name):
      trainer.checkpoint.write(os.path.join(report, str(cluster.task_id(trainer.strategy)),
                                            name))

    # pylint: disable=protected-access
    real_restore = trainer_lib.Trainer._restore_or_initialise

    def restore_or_initialise(self):
      real_restore(self)
      copy(self, "restored")
    trainer_lib.Trainer._restore_or_initialise = restore_or_initialise
    # pylint: enable=protected-access

    real_save = trainer_lib.Trainer.save

    def save(self, step, milestone=False):
      path = real_save(self, step, milestone)
      copy(self, f"ckpt-{step}")
      return path
    trainer_lib.Trainer.save = save


if __name__ == "__main__":
  # As `python -m` would: the repository first, not this file's folder.
  sys.path[0] = REPO
  _install_doubles()
  runpy.run_module("hamgan.cli.train", run_name="__main__", alter_sys=True)
