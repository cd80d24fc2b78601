"""launch/tpu.sh: shellcheck, exact commands of dry runs, real runs against a fake gcloud.

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

from launch_harness import (BASE, BIN, GCLOUD, INSTALL_RUNTIME, INSTALL_WHEEL, PJRT_ENV,
                            PR_SET_CHILD_SUBREAPER, REPO, RUN, TPU, TPU_V3, WHERE, _alive,
                            _commands, _remote, _run, _ssh, _started)


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
