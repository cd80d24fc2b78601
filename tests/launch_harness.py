"""Shared pieces of the launcher tests: the scripts' paths, a clean environment, and
readers of what a dry run printed (tests/test_launch*.py)."""
import os
import shlex
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TPU = os.path.join(REPO, "launch", "tpu.sh")
TPU_V3 = os.path.join(REPO, "launch", "tpu_v3.sh")
VM_INSTALL = os.path.join(REPO, "launch", "tpu_vm_install.sh")
GPU = os.path.join(REPO, "launch", "gpu.sh")
MULTIHOST = os.path.join(REPO, "launch", "multihost.sh")
BIN = os.path.dirname(sys.executable)
GCLOUD = ["gcloud", "compute", "tpus", "tpu-vm"]
WHERE = ["--project=p1", "--zone=europe-west4-a"]
BASE = ["--project=p1", "--zone=europe-west4-a", "--bucket=gs://bkt/",
        "--experiment=imagenet128_hamgan_baby"]
RUN = "imagenet128_hamgan_baby"
PR_SET_CHILD_SUBREAPER = 36   # prctl(2)
PJRT_ENV = ["NEXT_PLUGGABLE_DEVICE_USE_C_API=true", "TF_PLUGGABLE_DEVICE_LIBRARY_PATH=/lib/libtpu.so"]
INSTALL_RUNTIME = ("cd ~/hamgan && bash launch/tpu_vm_install.sh --tensorflow=runtime "
                   "--constraints=constraints.txt --extras=tpu")
INSTALL_WHEEL = ("cd ~/hamgan && bash launch/tpu_vm_install.sh --tensorflow=wheel "
                 "--constraints=constraints-tpu-wheel.txt --extras=current")



def _env(tmp_path, **extra):
  env = {k: v for k, v in os.environ.items() if not k.startswith("HAMGAN_")}
  env["TMPDIR"] = str(tmp_path)
  env.update(extra)
  return env


def _run(script, *args, tmp_path, cwd=None, **env):
  return subprocess.run(["bash", script, *args], capture_output=True, text=True,
                        env=_env(tmp_path, **env), cwd=cwd or str(tmp_path), timeout=60)


def _commands(stdout):
  """The commands a dry run printed, each as an argv list (comments dropped)."""
  return [shlex.split(l) for l in stdout.splitlines() if l.strip() and not l.startswith("#")]


def _remote(argv):
  """The shell command of a `gcloud ... ssh ... --command=CMD`."""
  assert argv[-1].startswith("--command="), argv
  return argv[-1][len("--command="):]


def _ssh(cmds, worker):
  """The remote commands of the dry run's `gcloud ... ssh` lines to --worker=WORKER."""
  return [_remote(c) for c in cmds if c[:5] == GCLOUD + ["ssh"] and f"--worker={worker}" in c]


def _started(remote):
  """(environment, argv, log, pid file) of a `env ... nohup TOOL ARGS >>LOG ... >PID` line."""
  words = shlex.split(remote)
  nohup = words.index("nohup")
  env = len(words) - 1 - words[::-1].index("env", len(words) - nohup)
  log = next(i for i, w in enumerate(words) if w.startswith(">>"))
  assert words[log + 1:log + 5] == ["2>&1", "</dev/null", "&", "echo"], words
  return words[env + 1:nohup], words[nohup + 1:log], words[log][2:], words[-1][1:]


def _alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  # A zombie (exited, not yet reaped) counts as gone.
  with open(f"/proc/{pid}/stat") as f:
    return f.read().split(")")[-1].split()[0] != "Z"
