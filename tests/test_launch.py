"""The launchers: shellcheck, exact commands of dry runs, real runs against fakes.

The TPU path cannot run on a real TPU here: gcloud, pip and TensorFlow on the VM are
fakes that record what they are asked to do (see launch/README.md).
"""
import ctypes
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
import time

import pytest

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


def test_shellcheck_passes():
  shellcheck = os.path.join(BIN, "shellcheck")
  scripts = ["launch/tpu.sh", "launch/tpu_types.sh", "launch/tpu_v3.sh",
             "launch/tpu_vm_install.sh", "launch/gpu.sh", "launch/multihost.sh",
             "launch/common.sh"]
  res = subprocess.run([shellcheck, "-x", *scripts], cwd=REPO, capture_output=True, text=True)
  assert res.returncode == 0, res.stdout + res.stderr
  # The checker does find faults (the test could fail).
  res = subprocess.run([shellcheck, "-"], input="#!/bin/bash\nrm $1/*\n", capture_output=True,
                       text=True)
  assert res.returncode != 0 and "SC2086" in res.stdout


def test_tpu_train_dry_run_exact_commands(tmp_path):
  res = _run(TPU, "train", *BASE, "--spot", "--gin_param=train.num_steps = 10", "--dry_run",
             tmp_path=tmp_path)
  assert res.returncode == 0, res.stderr
  cmds = _commands(res.stdout)
  assert len(cmds) == 6, res.stdout
  vm = "hamgan-tpu"
  assert cmds[0] == GCLOUD + ["describe", vm] + WHERE + ["--format=value(state)"]
  assert cmds[1] == GCLOUD + ["create", vm] + WHERE + [
      "--accelerator-type=v3-8", "--version=tpu-vm-tf-2.15.1-pjrt", "--spot"]
  tarball = os.path.join(str(tmp_path), "hamgan-src.tar.gz")
  assert cmds[2] == ["git", "-C", REPO, "archive", "--format=tar.gz", f"--output={tarball}",
                     "HEAD"]
  assert cmds[3] == GCLOUD + ["scp", tarball, f"{vm}:hamgan-src.tar.gz"] + WHERE + ["--worker=all"]
  assert cmds[4][:-1] == GCLOUD + ["ssh", vm] + WHERE + ["--worker=all"]
  assert _remote(cmds[4]) == (
      "set -e; rm -rf ~/hamgan && mkdir -p ~/hamgan && tar -xzf ~/hamgan-src.tar.gz -C ~/hamgan; "
      + INSTALL_RUNTIME)
  # One host: the training command goes to worker 0, its only host.
  assert cmds[5][:-1] == GCLOUD + ["ssh", vm] + WHERE + ["--worker=0"]
  env, train, log, pid = _started(_remote(cmds[5]))
  assert env == PJRT_ENV
  assert train == [
      "hamgan-train", "--gin_file=gin_configs/imagenet128_hamgan_baby.gin",
      "--model_dir=gs://bkt/runs/imagenet128_hamgan_baby", "--tpu=local",
      "--gin_param=train.data_dir = 'gs://bkt/tfds'",
      "--gin_param=train.num_steps = 10"]
  assert (log, pid) == (f"~/hamgan-logs/{RUN}.train.log", f"~/hamgan-logs/{RUN}.train.pid")
  # How to follow it goes to stderr, with the bucket's TensorBoard path.
  assert "tensorboard --logdir=gs://bkt/runs/imagenet128_hamgan_baby" in res.stderr
  assert f"tail -f ~/hamgan-logs/{RUN}.train.log" in res.stderr


def test_tpu_settings_from_environment_match_flags(tmp_path):
  by_flags = _run(TPU, "train", *BASE, "--preemptible", "--tpu_name=vm2", "--run_name=r7",
                  "--accelerator=v4-32", "--dry_run", tmp_path=tmp_path)
  by_env = _run(TPU, "train", tmp_path=tmp_path, HAMGAN_PROJECT="p1",
                HAMGAN_ZONE="europe-west4-a", HAMGAN_BUCKET="bkt",
                HAMGAN_EXPERIMENT="imagenet128_hamgan_baby", HAMGAN_PREEMPTIBLE="1",
                HAMGAN_TPU_NAME="vm2", HAMGAN_RUN_NAME="r7", HAMGAN_ACCELERATOR="v4-32",
                HAMGAN_DRY_RUN="1")
  assert by_flags.returncode == 0 and by_env.returncode == 0, by_env.stderr
  assert _commands(by_flags.stdout) == _commands(by_env.stdout)
  cmds = _commands(by_env.stdout)
  assert cmds[1][-1] == "--preemptible" and cmds[1][5] == "vm2"
  _, train, _, _ = _started(_ssh(cmds, 0)[0])
  assert "--model_dir=gs://bkt/runs/r7" in train and "--tpu=vm2" in train


def test_tpu_pod_slice_has_one_client_on_worker_0(tmp_path):
  """A v3-32 slice: code on every host, one TensorFlow client (hamgan-train) on worker 0."""
  res = _run(TPU, "train", *BASE, "--accelerator=v3-32", "--tpu_name=hg-pod", "--dry_run",
             tmp_path=tmp_path)
  assert res.returncode == 0, res.stderr
  cmds = _commands(res.stdout)
  assert cmds[1] == GCLOUD + ["create", "hg-pod"] + WHERE + [
      "--accelerator-type=v3-32", "--version=tpu-vm-tf-2.15.1-pod-pjrt"]
  # The copy and the install go to every host.
  assert cmds[3][:5] == GCLOUD + ["scp"] and cmds[3][-1] == "--worker=all"
  assert [r.endswith(INSTALL_RUNTIME) for r in _ssh(cmds, "all")] == [True]
  # The client runs once, on worker 0, addressing the slice by name without loading
  # the TPU library itself.
  (client,) = _ssh(cmds, 0)
  assert "hamgan-train" not in " ".join(_ssh(cmds, "all"))
  env, train, _, _ = _started(client)
  assert env == ["TPU_LOAD_LIBRARY=0"]
  assert train[:4] == ["hamgan-train", "--gin_file=gin_configs/imagenet128_hamgan_baby.gin",
                       "--model_dir=gs://bkt/runs/imagenet128_hamgan_baby", "--tpu=hg-pod"]
  # The watcher runs beside it on worker 0's host CPU (it must not take the TPU either).
  res = _run(TPU, "eval", *BASE, "--accelerator=v3-32", "--tpu_name=hg-pod", "--dry_run",
             tmp_path=tmp_path)
  (watcher,) = _ssh(_commands(res.stdout), 0)
  env, evaluate, _, _ = _started(watcher)
  assert env == ["TPU_LOAD_LIBRARY=0"] and "--tpu" not in " ".join(evaluate)
  # stop signals the client (and the watcher) on worker 0, nothing else.
  res = _run(TPU, "stop", *BASE, "--accelerator=v3-32", "--tpu_name=hg-pod", "--dry_run",
             tmp_path=tmp_path)
  cmds = _commands(res.stdout)
  assert len(cmds) == 1 and cmds[0][:-1] == GCLOUD + ["ssh", "hg-pod"] + WHERE + ["--worker=0"]
  assert f"kill -TERM $(cat ~/hamgan-logs/{RUN}.train.pid)" in _remote(cmds[0])


@pytest.mark.parametrize("accelerator, runtime, env, tpu, install", [
    ("v3-8", "tpu-vm-tf-2.15.1-pjrt", PJRT_ENV, "local", INSTALL_RUNTIME),
    ("v5litepod-8", "tpu-vm-tf-2.15.1-pjrt", PJRT_ENV, "local", INSTALL_RUNTIME),
    ("v5litepod-16", "tpu-vm-tf-2.15.1-pod-pjrt", ["TPU_LOAD_LIBRARY=0"], "vm", INSTALL_RUNTIME),
    ("v4-8", "tpu-vm-tf-2.15.1-pjrt", PJRT_ENV, "local", INSTALL_RUNTIME),
    ("v4-32", "tpu-vm-tf-2.15.1-pod-pjrt", ["TPU_LOAD_LIBRARY=0"], "vm", INSTALL_RUNTIME),
    ("v5p-8", "tpu-vm-tf-2.15.1-pjrt", PJRT_ENV, "local", INSTALL_RUNTIME),
    ("v5p-16", "tpu-vm-tf-2.15.1-pod-pjrt", ["TPU_LOAD_LIBRARY=0"], "vm", INSTALL_RUNTIME),
    ("v6e-8", "v2-alpha-tpuv6e", [
        "NEXT_PLUGGABLE_DEVICE_USE_C_API=true",
        "TF_PLUGGABLE_DEVICE_LIBRARY_PATH=$(python3 -c 'import libtpu, os; "
        "print(os.path.dirname(libtpu.__file__))')/libtpu.so"], "local", INSTALL_WHEEL),
])
def test_tpu_types_name_their_runtimes(tmp_path, accelerator, runtime, env, tpu, install):
  res = _run(TPU, "train", *BASE, f"--accelerator={accelerator}", "--tpu_name=vm", "--dry_run",
             tmp_path=tmp_path)
  assert res.returncode == 0, res.stderr
  cmds = _commands(res.stdout)
  assert cmds[1] == GCLOUD + ["create", "vm"] + WHERE + [
      f"--accelerator-type={accelerator}", f"--version={runtime}"]
  assert _ssh(cmds, "all")[0].endswith(install)
  got_env, train, _, _ = _started(_ssh(cmds, 0)[0])
  assert got_env == env and f"--tpu={tpu}" in train


@pytest.mark.parametrize("accelerator, fragment", [
    ("v7-8", "is not a TPU type this launcher knows"),
    ("v3-16", "is not a TPU type this launcher knows"),
    ("v4-12", "is not a TPU type this launcher knows"),
    ("v3", "is not a TPU type this launcher knows"),
    ("v5e-8", "v5e types are named v5litepod-N, e.g. --accelerator=v5litepod-8"),
    ("v6e-16", "Use --accelerator=v6e-8 (one host)"),
])
def test_tpu_unknown_type_is_refused_with_the_list(tmp_path, accelerator, fragment):
  res = _run(TPU, "create", *BASE, f"--accelerator={accelerator}", "--dry_run", tmp_path=tmp_path)
  assert res.returncode == 2 and res.stdout == ""
  assert fragment in res.stderr and f"--accelerator={accelerator}" in res.stderr
  if "knows" in fragment:
    for known in ("v3-8, v3-32", "v4-N and v5p-N", "v5litepod-8", "v6e-8"):
      assert known in res.stderr


@pytest.mark.parametrize("args, fragments", [
    (["--runtime_version=tpu-vm-tf-2.16.1-pjrt"],
     ["carries TensorFlow 2.16.1", "tpu stack is TensorFlow 2.15.1",
      "--runtime_version=tpu-vm-tf-2.15.1-pjrt"]),
    (["--accelerator=v3-32", "--runtime_version=tpu-vm-tf-2.15.1-pjrt"],
     ["not a -pod runtime", "--runtime_version=tpu-vm-tf-2.15.1-pod-pjrt"]),
    (["--accelerator=v4-8", "--runtime_version=tpu-vm-tf-2.15.1-pod-pjrt"],
     ["is a -pod runtime", "--runtime_version=tpu-vm-tf-2.15.1-pjrt"]),
    (["--accelerator=v5p-16", "--runtime_version=v2-alpha-tpuv5"],
     ["base image without TensorFlow", "--runtime_version=tpu-vm-tf-2.15.1-pod-pjrt"]),
    (["--accelerator=v4-32", "--eval_tpu_name=ev", "--eval_accelerator=v4-16"],
     ["--eval_accelerator=v4-16 is a slice", "--eval_accelerator=v4-8"]),
])
def test_tpu_runtime_that_cannot_serve_is_refused(tmp_path, args, fragments):
  res = _run(TPU, "train", *BASE, *args, "--dry_run", tmp_path=tmp_path)
  assert res.returncode == 2 and res.stdout == "", res.stdout
  for fragment in fragments:
    assert fragment in res.stderr


def test_tpu_eval_and_delete_dry_run(tmp_path):
  res = _run(TPU, "eval", *BASE, "--run_name=r1", "--eval_args=--num_samples=10000 --force",
             "--dry_run", tmp_path=tmp_path)
  assert res.returncode == 0, res.stderr
  cmds = _commands(res.stdout)
  assert len(cmds) == 1 and cmds[0][:-1] == GCLOUD + ["ssh", "hamgan-tpu"] + WHERE + [
      "--worker=0"]
  env, evaluate, log, _ = _started(_remote(cmds[0]))
  assert env == ["TPU_LOAD_LIBRARY=0"]   # the training VM's host CPU
  assert evaluate == ["hamgan-eval", "--model_dir=gs://bkt/runs/r1", "--watch",
                      "--data_dir=gs://bkt/tfds", "--num_samples=10000", "--force"]
  assert log == "~/hamgan-logs/r1.eval.log"

  # A separate evaluation VM (one host, also for a slice) is created and installed first.
  res = _run(TPU, "eval", *BASE, "--accelerator=v4-32", "--eval_tpu_name=ev", "--dry_run",
             tmp_path=tmp_path)
  cmds = _commands(res.stdout)
  assert [c[4] if c[0] == "gcloud" else c[0] for c in cmds] == [
      "describe", "create", "git", "scp", "ssh", "ssh"]
  assert cmds[1] == GCLOUD + ["create", "ev"] + WHERE + [
      "--accelerator-type=v4-8", "--version=tpu-vm-tf-2.15.1-pjrt"]
  assert cmds[-1][:6] == GCLOUD + ["ssh", "ev"]
  env, evaluate, _, _ = _started(_remote(cmds[-1]))
  assert env == PJRT_ENV and evaluate[-1] == "--tpu=local"

  res = _run(TPU, "delete", "--project=p1", "--zone=europe-west4-a", "--tpu_name=vm9",
             "--dry_run", tmp_path=tmp_path)
  assert res.returncode == 0
  assert _commands(res.stdout) == [GCLOUD + ["delete", "vm9"] + WHERE + ["--quiet"]]


def test_tpu_git_source(tmp_path):
  res = _run(TPU, "create", "--project=p1", "--zone=europe-west4-a", "--source=git",
             "--repo=https://example.org/hamgan.git", "--ref=v1", "--dry_run", tmp_path=tmp_path)
  assert res.returncode == 0, res.stderr
  cmds = _commands(res.stdout)
  assert [c[4] for c in cmds] == ["describe", "create", "ssh"]
  assert _remote(cmds[2]) == ("set -e; rm -rf ~/hamgan && git clone --depth=1 --branch=v1 "
                              "https://example.org/hamgan.git ~/hamgan; " + INSTALL_RUNTIME)


def test_tpu_v3_script_still_runs_the_old_commands(tmp_path):
  """launch/tpu_v3.sh is tpu.sh with the VM name it always had."""
  old = _run(TPU_V3, "train", *BASE, "--spot", "--dry_run", tmp_path=tmp_path)
  new = _run(TPU, "train", *BASE, "--spot", "--tpu_name=hamgan-v3", "--dry_run",
             tmp_path=tmp_path)
  assert old.returncode == 0, old.stderr
  assert old.stdout == new.stdout and "create hamgan-v3" in old.stdout
  assert "launch/tpu_v3.sh is launch/tpu.sh" in old.stderr
  res = _run(TPU_V3, "--help", tmp_path=tmp_path)
  assert res.returncode == 0 and "--accelerator=TYPE" in res.stdout


@pytest.mark.parametrize("missing", ["project", "zone", "bucket"])
def test_tpu_missing_setting_is_named(tmp_path, missing):
  args = [a for a in BASE if not a.startswith(f"--{missing}=")]
  res = _run(TPU, "train", *args, "--dry_run", tmp_path=tmp_path)
  assert res.returncode != 0
  assert f"missing required setting '{missing}'" in res.stderr
  assert f"--{missing}=" in res.stderr and f"HAMGAN_{missing.upper()}" in res.stderr
  assert res.stdout == ""   # nothing was run or printed as a command


def test_tpu_bad_arguments(tmp_path):
  res = _run(TPU, "launch", *BASE, tmp_path=tmp_path)
  assert res.returncode != 0 and "unknown command 'launch'" in res.stderr
  res = _run(TPU, "train", *BASE, "--zonee=x", tmp_path=tmp_path)
  assert res.returncode != 0 and "unknown flag '--zonee'" in res.stderr
  res = _run(TPU, "train", *BASE, "--spot", "--preemptible", tmp_path=tmp_path)
  assert res.returncode != 0 and "only one" in res.stderr
  res = _run(TPU, "train", *BASE[:3], "--experiment=no_such_exp", tmp_path=tmp_path)
  assert res.returncode != 0 and "gin_configs/no_such_exp.gin" in res.stderr
  res = _run(TPU, "train", *BASE, "--tpu_name=hg_sagan", tmp_path=tmp_path)
  assert res.returncode != 0 and "TPU VM name 'hg_sagan' is not valid" in res.stderr
  res = _run(TPU, "train", *BASE, "--run_name=my run", "--dry_run", tmp_path=tmp_path)
  assert res.returncode != 0 and "run name 'my run' is not valid" in res.stderr
  res = _run(TPU, "create", *BASE, "--source=git", tmp_path=tmp_path)
  assert res.returncode != 0 and "missing required setting 'repo'" in res.stderr
  res = _run(TPU, "--help", tmp_path=tmp_path)
  assert res.returncode == 0
  for flag in ("--project", "--zone", "--bucket", "--experiment", "--spot", "--dry_run",
               "--accelerator", "stop", "HAMGAN_PROJECT", "HAMGAN_BUCKET"):
    assert flag in res.stdout


def _fake_gcloud(tmp_path, state, vm_home=None):
  """A gcloud that logs its argv; `describe` answers `state` or fails if None. With
  vm_home, `ssh ... --command=CMD` runs CMD here with HOME=vm_home, as a VM would."""
  fake = tmp_path / "fakebin"
  fake.mkdir(exist_ok=True)
  script = fake / "gcloud"
  script.write_text(
      f"#!{sys.executable}\n"
      "import json, os, subprocess, sys\n"
      "with open(os.environ['FAKE_LOG'], 'a') as f:\n"
      "  f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
      "if 'describe' in sys.argv:\n"
      f"  state = {state!r}\n"
      "  if state is None:\n"
      "    sys.exit('ERROR: (gcloud) NOT_FOUND')\n"
      "  print(state)\n"
      f"home = {str(vm_home) if vm_home else None!r}\n"
      "if home and 'ssh' in sys.argv:\n"
      "  command = sys.argv[-1][len('--command='):]\n"
      "  env = dict(os.environ, HOME=home, PATH='/usr/bin:/bin')\n"
      "  sys.exit(subprocess.run(['bash', '-c', command], env=env, cwd=home).returncode)\n")
  script.chmod(0o755)
  return str(fake)


@pytest.mark.parametrize("state,expected", [
    (None, ["describe", "create", "scp", "ssh", "ssh"]),
    ("READY", ["describe", "scp", "ssh", "ssh"]),
    ("STOPPED", ["describe", "start", "scp", "ssh", "ssh"]),
    ("PREEMPTED", ["describe", "delete", "create", "scp", "ssh", "ssh"]),
])
def test_tpu_real_run_against_fake_gcloud(tmp_path, state, expected):
  fake = _fake_gcloud(tmp_path, state)
  log = tmp_path / "gcloud.log"
  res = _run(TPU, "train", *BASE, tmp_path=tmp_path, FAKE_LOG=str(log),
             PATH=fake + os.pathsep + os.environ["PATH"])
  assert res.returncode == 0, res.stderr
  calls = [json.loads(l) for l in log.read_text().splitlines()]
  assert [c[3] for c in calls] == expected
  # The real run makes the same ssh commands as the dry run prints.
  dry = _commands(_run(TPU, "train", *BASE, "--dry_run", tmp_path=tmp_path).stdout)
  assert [c[1:] for c in dry if c[0] == "gcloud" and c[4] == "ssh"] == [
      c for c in calls if c[3] == "ssh"]
  # The copied source is a git archive of HEAD: a package that pip can install.
  with tarfile.open(tmp_path / "hamgan-src.tar.gz") as tar:
    names = tar.getnames()
  assert "setup.py" in names and "constraints.txt" in names
  assert "launch/tpu_vm_install.sh" in names and "constraints-tpu-wheel.txt" in names
  assert "hamgan/compare/paper_figures.json" in names


def _alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  # A zombie (exited, not yet reaped) counts as gone.
  with open(f"/proc/{pid}/stat") as f:
    return f.read().split(")")[-1].split()[0] != "Z"


def test_tpu_pod_client_gets_sigterm_from_stop(tmp_path):
  """train/eval/status/stop on a v3-32 slice, the ssh commands run by a real shell on a
  fake worker 0: the client starts with TPU_LOAD_LIBRARY=0 and --tpu=NAME, a second
  train is refused, and stop's SIGTERM reaches the client itself (not a pipe or a
  shell in front of it), which is what a shutting-down host sends too."""
  home = tmp_path / "worker0"
  tools = home / ".local" / "bin"
  tools.mkdir(parents=True)
  (home / "hamgan").mkdir()
  for name in ("hamgan-train", "hamgan-eval"):
    (tools / name).write_text(
        "#!/bin/bash\n"
        f"out=$HOME/{name}\n"
        "printf '%s\\n' \"TPU_LOAD_LIBRARY=${TPU_LOAD_LIBRARY-unset}\" \"$@\" > \"$out.args\"\n"
        "trap 'echo TERM > \"$out.term\"; exit 0' TERM\n"
        "while true; do sleep 0.1; done\n")
    (tools / name).chmod(0o755)
  fake = _fake_gcloud(tmp_path, "READY", vm_home=home)
  env = dict(FAKE_LOG=str(tmp_path / "gcloud.log"), PATH=fake + os.pathsep + os.environ["PATH"])
  args = [*BASE, "--accelerator=v3-32", "--tpu_name=hg-pod", "--skip_install"]
  pids = []
  # The started processes outlive the shell that started them; as on a VM, where init
  # reaps them when they exit, this process adopts (and reaps) them.
  libc = ctypes.CDLL(None, use_errno=True)
  assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
  try:
    res = _run(TPU, "train", *args, tmp_path=tmp_path, **env)
    assert res.returncode == 0, res.stderr
    res = _run(TPU, "eval", *args, tmp_path=tmp_path, **env)
    assert res.returncode == 0, res.stderr
    logs = home / "hamgan-logs"
    pids = [int((logs / f"{RUN}.{n}.pid").read_text()) for n in ("train", "eval")]
    deadline = time.time() + 30
    while time.time() < deadline and not all((home / f"{n}.args").exists()
                                              for n in ("hamgan-train", "hamgan-eval")):
      time.sleep(0.1)
    train = (home / "hamgan-train.args").read_text().splitlines()
    assert train[0] == "TPU_LOAD_LIBRARY=0" and "--tpu=hg-pod" in train
    assert (home / "hamgan-eval.args").read_text().splitlines()[0] == "TPU_LOAD_LIBRARY=0"
    again = _run(TPU, "train", *args, tmp_path=tmp_path, **env)
    assert again.returncode != 0 and "already runs on hg-pod" in again.stderr
    status = _run(TPU, "status", *args, tmp_path=tmp_path, **env)
    assert f"{RUN}.train: running (process {pids[0]})" in status.stdout

    res = _run(TPU, "stop", *args, tmp_path=tmp_path, **env)
    assert res.returncode == 0, res.stderr
    assert f"SIGTERM sent to hamgan-train of run {RUN} on hg-pod" in res.stdout
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in pids):
      time.sleep(0.1)
    assert not any(_alive(p) for p in pids)
    assert (home / "hamgan-train.term").exists() and (home / "hamgan-eval.term").exists()
    for p in pids:
      os.waitpid(p, 0)
    status = _run(TPU, "status", *args, tmp_path=tmp_path, **env)
    assert f"{RUN}.train: not running" in status.stdout
  finally:
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
    # Only the processes this test started: those in the pid files, and any that run
    # a tool of this test's own folder (should a broken launcher lose their ids).
    for entry in os.listdir("/proc"):
      if entry.isdigit():
        try:
          with open(f"/proc/{entry}/cmdline", "rb") as f:
            if str(tools).encode() in f.read():
              pids.append(int(entry))
        except OSError:
          pass
    for p in pids:
      if _alive(p):
        os.kill(p, 9)


def _fake_vm(tmp_path, tf_version=None, clobber=False):
  """A TPU VM host's Python: the test's interpreter, with a fake `tensorflow` module (or
  none) and a fake pip (`python3 -m pip`) that records its argv and installs nothing,
  except that `tensorflow-tpu==V` makes the fake TensorFlow V and clobber=True makes
  every install replace it (as pip replacing the TPU build would)."""
  site = tmp_path / "site"
  (site / "pip").mkdir(parents=True)
  tf = site / "tensorflow" / "__init__.py"
  tf.parent.mkdir()
  if tf_version:
    tf.write_text(f"__version__ = {tf_version!r}\n")
  else:   # hides the test environment's own TensorFlow
    tf.write_text("raise ModuleNotFoundError(\"No module named 'tensorflow'\")\n")
  (site / "pip" / "__init__.py").write_text("")
  (site / "pip" / "__main__.py").write_text(
      "import json, os, sys\n"
      "args = sys.argv[1:]\n"
      "with open(os.environ['FAKE_PIP_LOG'], 'a') as f:\n"
      "  f.write(json.dumps(args) + '\\n')\n"
      f"tf = {str(tf)!r}\n"
      "if args[:1] == ['list']:\n"
      "  print('absl-py==2.0.0')\n"
      "  print('tensorflow-gan==2.1.0' if os.path.exists(tf + '.gan') else 'six==1.16.0')\n"
      "elif args[:1] == ['install']:\n"
      "  if 'tensorflow-gan' in args:\n"
      "    open(tf + '.gan', 'w').close()\n"
      "  for a in args:\n"
      "    if a.startswith('tensorflow-tpu=='):\n"
      "      os.makedirs(os.path.dirname(tf), exist_ok=True)\n"
      "      open(tf, 'w').write('__version__ = %r\\n' % a.split('==')[1])\n"
      f"  if {clobber!r}:\n"
      "    open(tf, 'w').write(\"__version__ = '2.21.0'\\n\")\n")
  bindir = tmp_path / "vmbin"
  bindir.mkdir()
  (bindir / "python3").write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} \"$@\"\n")
  (bindir / "python3").chmod(0o755)
  env = dict(PYTHONPATH=str(site), FAKE_PIP_LOG=str(tmp_path / "pip.log"),
             PATH=str(bindir) + os.pathsep + os.environ["PATH"])
  return env, tf


def _pip_calls(tmp_path):
  log = tmp_path / "pip.log"
  return [json.loads(l) for l in log.read_text().splitlines()] if log.exists() else []


# A requirement that would install or replace TensorFlow: any TensorFlow distribution.
TF_REQUIREMENT = re.compile(r"^(tensorflow|tensorflow-tpu|tensorflow-cpu|tf-nightly\S*)"
                            r"(\s*[=<>!~\[;].*)?$", re.IGNORECASE)


def _no_tensorflow_touched(installs):
  for call in installs:
    assert "--user" in call
    assert not {"-U", "--upgrade", "--force-reinstall", "--ignore-installed"} & set(call), call
    assert not [a for a in call if TF_REQUIREMENT.match(a)], call


def test_vm_install_stops_on_the_wrong_tensorflow(tmp_path):
  env, _ = _fake_vm(tmp_path, tf_version="2.16.1")
  res = _run(VM_INSTALL, tmp_path=tmp_path, **env)
  assert res.returncode == 2, res.stdout + res.stderr
  for fragment in ("this host's TensorFlow is 2.16.1", "expects 2.15.1",
                   "tensorflow==2.15.1 in constraints.txt", "Nothing was installed",
                   "--runtime_version=tpu-vm-tf-2.15.1-pjrt"):
    assert fragment in res.stderr
  assert [c for c in _pip_calls(tmp_path) if c[0] == "install"] == []
  # No TensorFlow at all on a runtime VM: the same stop, saying it does not import.
  env, _ = _fake_vm(tmp_path / "none")
  res = _run(VM_INSTALL, tmp_path=tmp_path, **env)
  assert res.returncode == 2 and "TensorFlow does not import" in res.stderr
  assert "ModuleNotFoundError" in res.stderr


def test_vm_install_leaves_the_runtime_tensorflow_untouched(tmp_path):
  env, tf = _fake_vm(tmp_path, tf_version="2.15.1")
  before = (tf.read_text(), tf.stat().st_mtime_ns)
  res = _run(VM_INSTALL, "--tensorflow=runtime", "--constraints=constraints.txt",
             "--extras=tpu", tmp_path=tmp_path, **env)
  assert res.returncode == 0, res.stdout + res.stderr
  assert (tf.read_text(), tf.stat().st_mtime_ns) == before
  installs = [c for c in _pip_calls(tmp_path) if c[0] == "install"]
  _no_tensorflow_touched(installs)
  assert installs[0] == ["install", "--user", "-q", "--no-deps", "-c", "constraints.txt",
                         "tf-keras", "tensorflow-hub"]
  assert installs[1][:5] == ["install", "--user", "-q", "-c", "constraints.txt"]
  assert "tensorflow-gan" in installs[1] and "scipy" in installs[1]   # the tpu extra, hamgan's
  assert installs[2] == ["install", "--user", "-q", "--no-deps", "-e", "."]
  assert len(installs) == 3
  assert "TensorFlow 2.15.1 at" in res.stdout and ": unchanged." in res.stdout
  assert "hamgan 0.1.0 installed (editable)" in res.stdout
  assert "pip installed or changed:\n  tensorflow-gan==2.1.0" in res.stdout


def test_vm_install_detects_tensorflow_replaced_during_install(tmp_path):
  env, _ = _fake_vm(tmp_path, tf_version="2.15.1", clobber=True)
  res = _run(VM_INSTALL, tmp_path=tmp_path, **env)
  assert res.returncode == 2
  assert "TensorFlow changed during the install: it was 2.15.1" in res.stderr
  assert "is now 2.21.0" in res.stderr


def test_vm_install_wheel_route_installs_tensorflow_tpu_first(tmp_path):
  env, tf = _fake_vm(tmp_path)   # a base image: no TensorFlow
  res = _run(VM_INSTALL, "--tensorflow=wheel", tmp_path=tmp_path, **env)
  assert res.returncode == 0, res.stdout + res.stderr
  installs = [c for c in _pip_calls(tmp_path) if c[0] == "install"]
  assert installs[0] == ["install", "--user", "-q", "-c", "constraints-tpu-wheel.txt",
                         "tensorflow-tpu==2.20.0"]
  _no_tensorflow_touched(installs[1:])
  assert installs[1] == ["install", "--user", "-q", "--no-deps", "-c",
                         "constraints-tpu-wheel.txt", "tf-keras", "tensorflow-hub"]
  assert "importlib-resources" in installs[2] and "tensorflow-gan" not in installs[2]
  assert "2.20.0" in tf.read_text() and "TensorFlow 2.20.0 at" in res.stdout
  # A base image that has another TensorFlow already is refused, not overwritten.
  env, _ = _fake_vm(tmp_path / "other", tf_version="2.18.0")
  res = _run(VM_INSTALL, "--tensorflow=wheel", tmp_path=tmp_path, **env)
  assert res.returncode == 2 and "this host's TensorFlow is 2.18.0" in res.stderr
  assert "tensorflow-tpu==2.20.0 in constraints-tpu-wheel.txt" in res.stderr


def test_vm_install_help_and_bad_arguments(tmp_path):
  res = _run(VM_INSTALL, "--help", tmp_path=tmp_path)
  assert res.returncode == 0 and "--tensorflow=runtime|wheel" in res.stdout
  res = _run(VM_INSTALL, "--tensorflow=pip", tmp_path=tmp_path)
  assert res.returncode == 2 and "--tensorflow=pip is not one of runtime, wheel" in res.stderr
  res = _run(VM_INSTALL, "--constraints=nope.txt", tmp_path=tmp_path)
  assert res.returncode == 2 and "constraints file 'nope.txt'" in res.stderr


def _doc_commands(path):
  """The launch/tpu*.sh commands of the sh blocks of a Markdown file (continuations
  joined, comments dropped), but for those with shell variables (loops)."""
  with open(os.path.join(REPO, path), encoding="utf-8") as f:
    blocks = re.findall(r"```(?:sh|bash)\n(.*?)```", f.read(), re.S)
  lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
  return [" ".join(shlex.split(l, comments=True)) for l in lines
          if l.strip().startswith("launch/tpu") and "$" not in l]


DOC_ENV = dict(HAMGAN_PROJECT="my-hamgan-project", HAMGAN_ZONE="europe-west4-a",
               HAMGAN_BUCKET="my-hamgan-bucket")
POD_EXAMPLE = ("launch/tpu.sh train --accelerator=v4-32 --zone=us-central2-b "
               "--experiment=imagenet128_hamgan_baby --tpu_name=hg-pod --spot --dry_run")


@pytest.mark.parametrize("path", ["README.md", "launch/README.md"])
def test_tpu_commands_in_the_docs_dry_run(tmp_path, path):
  commands = _doc_commands(path)
  assert any(c.startswith("launch/tpu.sh train") for c in commands), commands
  for command in commands:
    words = shlex.split(command)
    if "--dry_run" not in words:
      words.append("--dry_run")
    res = _run(os.path.join(REPO, words[0]), *words[1:], tmp_path=tmp_path, **DOC_ENV)
    assert res.returncode == 0 and res.stdout, (command, res.stderr)


def test_launch_readme_shows_the_pod_dry_run_as_it_is(tmp_path):
  """launch/README.md shows lines of POD_EXAMPLE's output; they are the real ones."""
  with open(os.path.join(REPO, "launch", "README.md"), encoding="utf-8") as f:
    text = f.read()
  assert POD_EXAMPLE in text
  shown = re.search(r"```text\n(.*?)```", text[text.index(POD_EXAMPLE):], re.S).group(1)
  words = shlex.split(POD_EXAMPLE)
  res = _run(os.path.join(REPO, words[0]), *words[1:], tmp_path=tmp_path, **DOC_ENV)
  assert res.returncode == 0, res.stderr
  printed = res.stdout.replace(REPO, "/path/to/hamgan").replace(str(tmp_path), "/tmp")
  for line in shown.strip().splitlines():
    assert line in printed.splitlines(), line
  assert len(shown.strip().splitlines()) >= 4


def test_gpu_dry_run_exact_commands(tmp_path):
  res = _run(GPU, "start", "--experiment=imagenet128_sagan", "--gpus=0,1", "--eval_gpu=2",
             "--data_dir=/data/tfds", "--gin_param=train.num_steps = 5", "--bin_dir=",
             "--eval_args=--num_samples=1000", "--dry_run", tmp_path=tmp_path)
  assert res.returncode == 0, res.stderr
  lines = [l for l in res.stdout.splitlines() if l and not l.startswith("#")]
  assert shlex.split(lines[0]) == ["cd", REPO]
  assert lines[1] == "mkdir -p runs/imagenet128_sagan/launch_logs"
  log = "runs/imagenet128_sagan/launch_logs"
  train = shlex.split(lines[2])
  assert train == [
      "env", "TF_FORCE_GPU_ALLOW_GROWTH=true", "CUDA_VISIBLE_DEVICES=0,1", "nohup",
      "hamgan-train", "--gin_file=gin_configs/imagenet128_sagan.gin",
      "--model_dir=runs/imagenet128_sagan", "--gin_param=train.data_dir = '/data/tfds'",
      "--gin_param=train.num_steps = 5", f">>{log}/train.log", "2>&1", "</dev/null", "&",
      "echo", "$!", f">{log}/train.pid"]
  evaluate = shlex.split(lines[3])
  assert evaluate == [
      "env", "TF_FORCE_GPU_ALLOW_GROWTH=true", "CUDA_VISIBLE_DEVICES=2", "nohup",
      "hamgan-eval", "--model_dir=runs/imagenet128_sagan", "--watch", "--data_dir=/data/tfds",
      "--num_samples=1000", f">>{log}/eval.log", "2>&1", "</dev/null", "&",
      "echo", "$!", f">{log}/eval.pid"]
  assert len(lines) == 4

  # A relative --model_dir is taken from the caller's folder; eval on the CPU.
  res = _run(GPU, "eval", "--experiment=x", "--model_dir=m", "--eval_gpu=cpu", "--bin_dir=/b",
             "--dry_run", tmp_path=tmp_path)
  cmds = _commands(res.stdout)
  assert cmds[2][:6] == ["env", "TF_FORCE_GPU_ALLOW_GROWTH=true", "CUDA_VISIBLE_DEVICES=",
                         "nohup", "/b/hamgan-eval", f"--model_dir={tmp_path}/m"]


def test_gpu_missing_or_bad_settings(tmp_path):
  res = _run(GPU, "start", "--dry_run", tmp_path=tmp_path)
  assert res.returncode != 0 and "missing required setting 'experiment'" in res.stderr
  assert "--experiment=" in res.stderr and "HAMGAN_EXPERIMENT" in res.stderr
  res = _run(GPU, "start", "--experiment=does_not_exist_xyz", tmp_path=tmp_path)
  assert res.returncode != 0 and "gin_configs/does_not_exist_xyz.gin" in res.stderr
  res = _run(GPU, "--experiment=x", "--eval_gpu=gpu3", "--dry_run", tmp_path=tmp_path)
  assert res.returncode != 0 and "--eval_gpu=gpu3" in res.stderr
  res = _run(GPU, "--help", tmp_path=tmp_path)
  assert res.returncode == 0 and "--gpus" in res.stdout and "HAMGAN_EVAL_GPU" in res.stdout


def _fake_tool(bindir, name):
  """A stand-in hamgan-* that records its argv and GPU visibility, then waits."""
  path = bindir / name
  path.write_text(
      f"#!{sys.executable}\n"
      "import json, os, sys, time\n"
      f"out = os.path.join(os.environ['FAKE_OUT'], {name!r} + '.json')\n"
      "with open(out + '.tmp', 'w') as f:\n"
      "  json.dump(dict(argv=sys.argv[1:], cwd=os.getcwd(),\n"
      "                 gpus=os.environ.get('CUDA_VISIBLE_DEVICES')), f)\n"
      "os.replace(out + '.tmp', out)\n"
      "time.sleep(120)\n")
  path.chmod(0o755)


def test_gpu_real_start_status_stop(tmp_path):
  bindir = tmp_path / "bin"
  bindir.mkdir()
  for tool in ("hamgan-train", "hamgan-eval"):
    _fake_tool(bindir, tool)
  gin = tmp_path / "exp.gin"
  gin.write_text("train.num_steps = 5\n")
  out = tmp_path / "out"
  out.mkdir()
  args = ["--experiment=exp", f"--gin_file={gin}", "--model_dir=run", f"--bin_dir={bindir}",
          "--gpus=0", "--eval_gpu=1"]
  res = _run(GPU, "start", *args, tmp_path=tmp_path, FAKE_OUT=str(out))
  pids = []
  try:
    assert res.returncode == 0, res.stderr
    logs = tmp_path / "run" / "launch_logs"
    pids = [int((logs / f"{n}.pid").read_text()) for n in ("train", "eval")]
    deadline = time.time() + 30
    while time.time() < deadline and len(list(out.glob("*.json"))) < 2:
      time.sleep(0.1)
    train = json.loads((out / "hamgan-train.json").read_text())
    evaluate = json.loads((out / "hamgan-eval.json").read_text())
    assert train == dict(argv=[f"--gin_file={gin}", f"--model_dir={tmp_path}/run"],
                         cwd=REPO, gpus="0")
    assert evaluate == dict(argv=[f"--model_dir={tmp_path}/run", "--watch"], cwd=REPO, gpus="1")
    assert all(_alive(p) for p in pids)

    res = _run(GPU, "status", *args, tmp_path=tmp_path)
    assert f"train: running (process {pids[0]})" in res.stdout
    assert f"eval: running (process {pids[1]})" in res.stdout
    again = _run(GPU, "train", *args, tmp_path=tmp_path, FAKE_OUT=str(out))
    assert again.returncode != 0 and "already running" in again.stderr

    res = _run(GPU, "stop", *args, tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in pids):
      time.sleep(0.1)
    assert not any(_alive(p) for p in pids)
    assert not (logs / "train.pid").exists()
    assert "not running" in _run(GPU, "status", *args, tmp_path=tmp_path).stdout
  finally:
    for p in pids:   # only the processes this test started
      if _alive(p):
        os.kill(p, 9)


def _worker_env(command):
  """(TF_CONFIG dict, hamgan-train argv) of one `ssh HOST CMD` line of multihost.sh."""
  words = shlex.split(command)
  config = next(w for w in words if w.startswith("TF_CONFIG="))
  start = words.index("nohup") + 1
  end = next(i for i, w in enumerate(words) if w.startswith(">>"))
  return json.loads(config[len("TF_CONFIG="):]), words[start:end]


def test_multihost_dry_run_gives_each_host_its_tf_config(tmp_path):
  res = _run(MULTIHOST, "start", "--hosts=me@gpu-a,gpu-b,gpu-c", "--port=4000",
             "--experiment=imagenet128_sagan", "--model_dir=gs://bkt/runs/s",
             "--gin_param=train.num_steps = 10", "--dry_run", tmp_path=tmp_path)
  assert res.returncode == 0, res.stderr
  cmds = _commands(res.stdout)
  assert [c[:2] for c in cmds] == [["ssh", "me@gpu-a"], ["ssh", "gpu-b"], ["ssh", "gpu-c"]]
  argvs = []
  for i, cmd in enumerate(cmds):
    config, argv = _worker_env(cmd[2])
    assert config == {"cluster": {"worker": ["gpu-a:4000", "gpu-b:4000", "gpu-c:4000"]},
                      "task": {"type": "worker", "index": i}}
    argvs.append(argv)
  # The same command on every host.
  assert argvs[0] == argvs[1] == argvs[2] == [
      "hamgan-train", "--gin_file=gin_configs/imagenet128_sagan.gin",
      "--model_dir=gs://bkt/runs/s", "--gin_param=train.num_steps = 10"]
  stop = _commands(_run(MULTIHOST, "stop", "--hosts=a,b", "--dry_run",
                        tmp_path=tmp_path).stdout)
  assert all("kill -TERM" in c[2] for c in stop) and len(stop) == 2


@pytest.mark.parametrize("args, fragment", [
    (["--hosts=a"], "at least two hosts"),
    (["--hosts=a,b", "--model_dir=runs/x"], "is relative"),
    (["--hosts=a,b", "--port=70000"], "not a TCP port"),
    (["--hosts=a,b", "--model_dir=/x", "--bogus=1"], "unknown flag"),
])
def test_multihost_bad_settings_are_named(tmp_path, args, fragment):
  res = _run(MULTIHOST, "start", "--experiment=e", "--model_dir=/shared/r", *args,
             "--dry_run", tmp_path=tmp_path)
  assert res.returncode == 2 and fragment in res.stderr, res.stderr


def test_multihost_real_start_and_stop_with_fake_ssh(tmp_path):
  """start runs each worker (through a fake ssh: a local shell) with its TF_CONFIG; stop
  sends SIGTERM."""
  bindir = tmp_path / "bin"
  bindir.mkdir()
  ssh = bindir / "fake-ssh"
  ssh.write_text("#!/bin/bash\nshift\nexec bash -c \"$1\"\n")
  train = bindir / "fake-train"
  train.write_text(
      "#!/bin/bash\n"
      "i=$(python3 -c 'import json,os; print(json.loads(os.environ[\"TF_CONFIG\"])"
      "[\"task\"][\"index\"])')\n"
      "echo \"$TF_CONFIG\" > \"$FAKE_OUT/worker-$i.json\"\n"
      "trap 'echo TERM > \"$FAKE_OUT/worker-$i.term\"; exit 0' TERM\n"
      "while true; do sleep 0.1; done\n")
  for f in (ssh, train):
    f.chmod(0o755)
  out = tmp_path / "out"
  out.mkdir()
  args = ["--hosts=h0,h1", f"--ssh={ssh}", f"--remote_bin={train}",
          f"--remote_dir={tmp_path}", "--experiment=e", "--model_dir=/shared/run"]
  env = dict(HOME=str(tmp_path), FAKE_OUT=str(out))
  res = _run(MULTIHOST, "start", *args, tmp_path=tmp_path, **env)
  pids = []
  try:
    assert res.returncode == 0, res.stderr
    logs = tmp_path / "hamgan-logs"
    pids = [int((logs / f"e.worker-{i}.pid").read_text()) for i in range(2)]
    deadline = time.time() + 30
    while time.time() < deadline and len(list(out.glob("*.json"))) < 2:
      time.sleep(0.1)
    for i in range(2):
      config = json.loads((out / f"worker-{i}.json").read_text())
      assert config["task"]["index"] == i
      assert config["cluster"]["worker"] == ["h0:23456", "h1:23456"]
    again = _run(MULTIHOST, "start", *args, tmp_path=tmp_path, **env)
    assert again.returncode != 0 and "already runs" in again.stderr
    res = _run(MULTIHOST, "stop", *args, tmp_path=tmp_path, **env)
    assert res.returncode == 0, res.stderr
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in pids):
      time.sleep(0.1)
    assert not any(_alive(p) for p in pids)
    assert sorted(p.name for p in out.glob("*.term")) == ["worker-0.term", "worker-1.term"]
  finally:
    for p in pids:   # only the processes this test started
      if _alive(p):
        os.kill(p, 9)
