"""Runs N `hamgan-train` processes on 127.0.0.1 as one MultiWorkerMirroredStrategy cluster.

Not a test module: the multi-worker tests import it. Every worker is a real
`python -m hamgan.cli.train` subprocess with its own TF_CONFIG (free ports on the
loopback), its stdout/stderr in a log file, and a bounded life: `Cluster` kills
whatever is still running when its `with` block ends, whatever happened in it.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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

  def start(self, args, env=None):
    """Starts every worker with `python -m hamgan.cli.train ARGS` (args: list of flags)."""
    ports = free_ports(self.num_workers)
    base = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="1", CUDA_VISIBLE_DEVICES="")
    base.update(env or {})
    self.procs, self.returncodes, self.ended_at = [], {}, {}
    for i in range(self.num_workers):
      worker_env = dict(base, TF_CONFIG=tf_config(ports, i))
      with open(self.log_path(i), "a") as log:
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "hamgan.cli.train", *args], cwd=REPO, env=worker_env,
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
