"""The launchers: shellcheck, exact commands of dry runs, real runs against fakes."""
import json
import os
import shlex
import subprocess
import sys
import tarfile
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TPU = os.path.join(REPO, "launch", "tpu_v3.sh")
GPU = os.path.join(REPO, "launch", "gpu.sh")
MULTIHOST = os.path.join(REPO, "launch", "multihost.sh")
BIN = os.path.dirname(sys.executable)
GCLOUD = ["gcloud", "compute", "tpus", "tpu-vm"]
WHERE = ["--project=p1", "--zone=europe-west4-a"]
BASE = ["--project=p1", "--zone=europe-west4-a", "--bucket=gs://bkt/",
        "--experiment=imagenet128_hamgan_baby"]


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


def _tmux_inner(remote, session):
  """The command line tmux runs detached, from the remote shell command."""
  words = shlex.split(remote)
  i = words.index("new-session")
  assert words[i + 1:i + 4] == ["-d", "-s", session]
  return words[i + 4]


def _tool_argv(inner, tool):
  """The argv of `tool` in a `cd ... && tool ARGS 2>&1 | tee -a LOG` line."""
  words = shlex.split(inner)
  start = words.index(tool)
  return words[start:words.index("2>&1")], words[words.index("tee"):]


def test_shellcheck_passes():
  shellcheck = os.path.join(BIN, "shellcheck")
  scripts = ["launch/tpu_v3.sh", "launch/gpu.sh", "launch/multihost.sh", "launch/common.sh"]
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
  vm = "hamgan-v3"
  assert cmds[0] == GCLOUD + ["describe", vm] + WHERE + ["--format=value(state)"]
  assert cmds[1] == GCLOUD + ["create", vm] + WHERE + [
      "--accelerator-type=v3-8", "--version=tpu-vm-tf-2.15.1-pjrt", "--spot"]
  tarball = os.path.join(str(tmp_path), "hamgan-src.tar.gz")
  assert cmds[2] == ["git", "-C", REPO, "archive", "--format=tar.gz", f"--output={tarball}",
                     "HEAD"]
  assert cmds[3] == GCLOUD + ["scp", tarball, f"{vm}:hamgan-src.tar.gz"] + WHERE + ["--worker=all"]
  assert cmds[4][:-1] == GCLOUD + ["ssh", vm] + WHERE + ["--worker=all"]
  install = _remote(cmds[4])
  assert "tar -xzf ~/hamgan-src.tar.gz -C ~/hamgan" in install
  assert "python3 -m pip install --user -q -c constraints.txt -e ." in install

  assert cmds[5][:-1] == GCLOUD + ["ssh", vm] + WHERE + ["--worker=all"]
  session = "hamgan-train-imagenet128_hamgan_baby"
  inner = _tmux_inner(_remote(cmds[5]), session)
  train, tee = _tool_argv(inner, "hamgan-train")
  assert train == [
      "hamgan-train", "--gin_file=gin_configs/imagenet128_hamgan_baby.gin",
      "--model_dir=gs://bkt/runs/imagenet128_hamgan_baby", "--tpu=local",
      "--gin_param=train.data_dir = 'gs://bkt/tfds'",
      "--gin_param=train.num_steps = 10"]
  assert tee == ["tee", "-a", "~/hamgan-logs/imagenet128_hamgan_baby.train.log"]
  # How to follow it goes to stderr, with the bucket's TensorBoard path.
  assert "tensorboard --logdir=gs://bkt/runs/imagenet128_hamgan_baby" in res.stderr
  assert f"tmux attach -t {session}" in res.stderr


def test_tpu_settings_from_environment_match_flags(tmp_path):
  by_flags = _run(TPU, "train", *BASE, "--preemptible", "--tpu_name=vm2", "--run_name=r7",
                  "--dry_run", tmp_path=tmp_path)
  by_env = _run(TPU, "train", tmp_path=tmp_path, HAMGAN_PROJECT="p1",
                HAMGAN_ZONE="europe-west4-a", HAMGAN_BUCKET="bkt",
                HAMGAN_EXPERIMENT="imagenet128_hamgan_baby", HAMGAN_PREEMPTIBLE="1",
                HAMGAN_TPU_NAME="vm2", HAMGAN_RUN_NAME="r7", HAMGAN_DRY_RUN="1")
  assert by_flags.returncode == 0 and by_env.returncode == 0, by_env.stderr
  assert _commands(by_flags.stdout) == _commands(by_env.stdout)
  cmds = _commands(by_env.stdout)
  assert cmds[1][-1] == "--preemptible" and cmds[1][5] == "vm2"
  train, _ = _tool_argv(_tmux_inner(_remote(cmds[-1]), "hamgan-train-r7"), "hamgan-train")
  assert "--model_dir=gs://bkt/runs/r7" in train


def test_tpu_eval_and_delete_dry_run(tmp_path):
  res = _run(TPU, "eval", *BASE, "--run_name=r1", "--eval_args=--num_samples=10000 --force",
             "--dry_run", tmp_path=tmp_path)
  assert res.returncode == 0, res.stderr
  cmds = _commands(res.stdout)
  assert len(cmds) == 1 and cmds[0][:-1] == GCLOUD + ["ssh", "hamgan-v3"] + WHERE + [
      "--worker=all"]
  evaluate, tee = _tool_argv(_tmux_inner(_remote(cmds[0]), "hamgan-eval-r1"), "hamgan-eval")
  assert evaluate == ["hamgan-eval", "--model_dir=gs://bkt/runs/r1", "--watch",
                      "--data_dir=gs://bkt/tfds", "--num_samples=10000", "--force"]
  assert tee == ["tee", "-a", "~/hamgan-logs/r1.eval.log"]

  # A separate evaluation VM is created (or reused) and installed first.
  res = _run(TPU, "eval", *BASE, "--eval_tpu_name=ev", "--dry_run", tmp_path=tmp_path)
  cmds = _commands(res.stdout)
  assert [c[4] if c[0] == "gcloud" else c[0] for c in cmds] == [
      "describe", "create", "git", "scp", "ssh", "ssh"]
  assert cmds[0][:6] == GCLOUD + ["describe", "ev"] and cmds[1][:6] == GCLOUD + ["create", "ev"]
  assert cmds[-1][:6] == GCLOUD + ["ssh", "ev"]
  evaluate, _ = _tool_argv(_tmux_inner(_remote(cmds[-1]), "hamgan-eval-imagenet128_hamgan_baby"),
                           "hamgan-eval")
  assert evaluate[-1] == "--tpu=local"

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
  assert ("git clone --depth=1 --branch=v1 https://example.org/hamgan.git ~/hamgan"
          in _remote(cmds[2]))


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
  res = _run(TPU, "create", *BASE, "--source=git", tmp_path=tmp_path)
  assert res.returncode != 0 and "missing required setting 'repo'" in res.stderr
  res = _run(TPU, "--help", tmp_path=tmp_path)
  assert res.returncode == 0
  for flag in ("--project", "--zone", "--bucket", "--experiment", "--spot", "--dry_run",
               "HAMGAN_PROJECT", "HAMGAN_BUCKET"):
    assert flag in res.stdout


def _fake_gcloud(tmp_path, state):
  """A gcloud that logs its argv; `describe` answers `state` or fails if None."""
  fake = tmp_path / "fakebin"
  fake.mkdir(exist_ok=True)
  script = fake / "gcloud"
  script.write_text(
      f"#!{sys.executable}\n"
      "import json, os, sys\n"
      "with open(os.environ['FAKE_LOG'], 'a') as f:\n"
      "  f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
      "if 'describe' in sys.argv:\n"
      f"  state = {state!r}\n"
      "  if state is None:\n"
      "    sys.exit('ERROR: (gcloud) NOT_FOUND')\n"
      "  print(state)\n")
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
  assert "hamgan/compare/paper_figures.json" in names


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


def _alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  # A zombie (exited, not yet reaped) counts as gone.
  with open(f"/proc/{pid}/stat") as f:
    return f.read().split(")")[-1].split()[0] != "Z"


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


def test_tpu_pod_slice_dry_run_runs_the_same_command_on_every_host(tmp_path):
  res = _run(TPU, "train", *BASE, "--accelerator=v3-32", "--dry_run", tmp_path=tmp_path)
  assert res.returncode == 0, res.stderr
  cmds = _commands(res.stdout)
  vm = "hamgan-v3"
  assert cmds[1] == GCLOUD + ["create", vm] + WHERE + [
      "--accelerator-type=v3-32", "--version=tpu-vm-tf-2.15.1-pod-pjrt"]
  # Copy, install and train: each on every host of the slice, one command for all.
  assert cmds[3][-1] == "--worker=all" and cmds[4][-2] == "--worker=all"
  assert cmds[5][:-1] == GCLOUD + ["ssh", vm] + WHERE + ["--worker=all"]
  train, _ = _tool_argv(_tmux_inner(_remote(cmds[5]), "hamgan-train-imagenet128_hamgan_baby"),
                        "hamgan-train")
  assert f"--tpu={vm}" in train  # the slice by name, not one host's local TPU
  # The evaluation watcher runs once, on host 0.
  res = _run(TPU, "eval", *BASE, "--accelerator=v3-32", "--dry_run", tmp_path=tmp_path)
  assert _commands(res.stdout)[-1][:-1] == GCLOUD + ["ssh", vm] + WHERE + ["--worker=0"]
  # A single-host slice keeps the plain runtime; a pod with it is refused with the fix.
  res = _run(TPU, "create", *BASE, "--accelerator=v3-32",
             "--runtime_version=tpu-vm-tf-2.15.1-pjrt", "--dry_run", tmp_path=tmp_path)
  assert res.returncode == 2 and "--runtime_version=tpu-vm-tf-2.15.1-pod-pjrt" in res.stderr
  res = _run(TPU, "create", *BASE, "--accelerator=v3", "--dry_run", tmp_path=tmp_path)
  assert res.returncode == 2 and "not a TPU type" in res.stderr


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
