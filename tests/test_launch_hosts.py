"""launch/gpu.sh and launch/multihost.sh: dry runs and real starts against fake tools."""
import json
import os
import shlex
import sys
import time

import pytest

from launch_harness import GPU, MULTIHOST, REPO, _alive, _commands, _run


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
