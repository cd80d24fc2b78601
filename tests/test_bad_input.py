"""Bad input never destroys a file or returns a number (issue 20): one table, every tool.

Each row runs a tool in this process through its hamgan.cli.errors.Tool (what the console
script runs, minus absl's process set-up) and checks the exit status, that the one-line
message names the offending value or file, that no traceback is printed, and that every
input file is byte-identical afterwards. A few tests at the end run real console scripts.
The rows on damaged run directories (truncated checkpoint, garbage config, corrupt state
file, a changed network shape, a `checkpoints` file) were fixed by the run-directory work
(issue 19); they stay here so that every tool's refusals are in one table.
"""
import json
import os
import subprocess
import sys
import time

from absl.testing import flagsaver
import gin
import numpy as np
import pytest
import tensorflow as tf

from hamgan import images as image_io
from hamgan.cli import bench as bench_cli
from hamgan.cli import compare as compare_cli
from hamgan.cli import eval as eval_cli
from hamgan.cli import sample as sample_cli
from hamgan.cli import train as train_cli
from test_evaluation import _real_images
import bad_input_world

TOOLS = {"eval": eval_cli, "sample": sample_cli, "train": train_cli,
         "compare": compare_cli, "bench": bench_cli}
BIN = os.path.dirname(sys.executable)
TINY = bad_input_world.TINY


@pytest.fixture(scope="module")
def world(tmp_path_factory):
  """Every input the rows name, under one folder (W in the rows)."""
  return bad_input_world.build(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def trained_run(world):
  """world/trained: two steps of hamgan-train with TINY (ch=2), for the resume rows."""
  argv = ["hamgan-train", "--gin_file=demo_digits", f"--model_dir={world / 'trained'}",
          f"--gin_param=train.data_dir = '{world / 'tfds'}'"] + [
              f"--gin_param={p}" for p in TINY]
  with flagsaver.flagsaver():
    try:
      assert train_cli.TOOL.call(argv) == 0
    finally:
      gin.clear_config()
  return world / "trained"


def _call(tool, argv, capfd, env=None, monkeypatch=None):
  """(status, stdout + stderr) of TOOLS[tool].TOOL.call(argv), as the console prints."""
  for key, value in (env or {}).items():
    monkeypatch.setenv(key, value)
  capfd.readouterr()
  with flagsaver.flagsaver():
    try:
      status = TOOLS[tool].TOOL.call([f"hamgan-{tool}", *argv])
    finally:
      gin.clear_config()
  out, err = capfd.readouterr()
  return status, out + err


def row(case_id, tool, args, status, names, inputs=(), env=None, marks=()):
  return pytest.param(tool, args, status, names, inputs, env or {}, id=case_id, marks=marks)


IMG = ["--images={W}/v.npz", "--classifier_path={W}/clf"]
REAL = IMG + ["--real_images={W}/real.npz"]
RUN_EVAL = ["--model_dir={W}/run", "--classifier_path={W}/clf", "--real_dataset=digits"]
SAMPLE = ["--model_dir={W}/run"]
TRAIN = ["--gin_file=demo_digits", "--model_dir={W}/never_made"] + [
    f"--gin_param={p}" for p in TINY]
WORKERS_1 = {"TF_CONFIG": json.dumps({"cluster": {"worker": ["localhost:1"]},
                                      "task": {"type": "worker", "index": 1}})}
WORKERS_2 = {"TF_CONFIG": json.dumps({"cluster": {"worker": ["localhost:1", "localhost:2"]},
                                      "task": {"type": "worker", "index": 2}})}
CHIEF = {"TF_CONFIG": json.dumps({"cluster": {"worker": ["localhost:1", "localhost:2"]},
                                  "task": {"type": "chief", "index": 0}})}
# Resumes {W}/trained (2 steps of TINY, made on first use) with a wider G; a dry run.
RESUME = ["--gin_file=demo_digits", "--model_dir={W}/trained", "--dry_run",
          "--gin_param=train.data_dir = '{W}/tfds'"] + [f"--gin_param={p}" for p in TINY] + [
              "--gin_param=Generator.ch = 4", "--gin_param=train.num_steps = 4"]
STRING_INDEX = {"TF_CONFIG": json.dumps({"cluster": {"worker": ["localhost:1"]},
                                         "task": {"type": "worker", "index": "0"}})}

CASES = [
    # hamgan-eval --images: outputs never inputs, nothing non-finite scored.
    row("eval-out-is-images", "eval", REAL + ["--out={W}/v.npz"], 1,
        ["--out=", "v.npz", "same file as --images"], ["v.npz"]),
    row("eval-out-symlink-to-images", "eval", REAL + ["--out={W}/link_to_v.json"], 1,
        ["link_to_v.json", "same file as --images"], ["v.npz"]),
    row("eval-export-stats-is-images", "eval", REAL + ["--export_stats={W}/v.npz"], 1,
        ["--export_stats=", "v.npz", "same file as --images"], ["v.npz", "real.npz"]),
    row("eval-export-stats-is-real-images", "eval", REAL + ["--export_stats={W}/real.npz"],
        1, ["same file as --real_images", "real.npz"], ["v.npz", "real.npz"]),
    row("eval-export-stats-without-npz-suffix", "eval", REAL + ["--export_stats={W}/v"], 1,
        ["--export_stats=", "/v'", "does not end in .npz"], ["v.npz"]),
    row("eval-out-is-real-stats", "eval", IMG + ["--real_stats={W}/good.npz",
                                                 "--out={W}/good.npz"], 1,
        ["same file as --real_stats", "good.npz"], ["good.npz", "v.npz"]),
    row("eval-out-inside-images-folder", "eval",
        ["--images={W}/pngs", "--classifier_path={W}/clf", "--real_images={W}/real.npz",
         "--out={W}/pngs/row.json"], 1, ["pngs/row.json", "lies in --images="], ["pngs"]),
    row("eval-out-is-a-folder", "eval", REAL + ["--out={W}/adir"], 1,
        ["--out=", "adir", "is a folder"], ["v.npz", "adir"]),
    row("eval-out-not-json", "eval", REAL + ["--out={W}/afile.txt"], 1,
        ["afile.txt", "does not end in .json"], ["afile.txt"]),
    row("eval-out-without-images", "eval",
        ["--export_stats={W}/new_stats.npz", "--real_images={W}/real.npz",
         "--out={W}/x.json"], 1, ["--out=", "x.json", "no --images"], ["real.npz"]),
    row("eval-nan-images", "eval", ["--images={W}/nan.npz", "--classifier_path={W}/clf",
                                    "--real_images={W}/real.npz"], 1,
        ["nan.npz", "NaN or infinite", "(4, 1, 2, 0)"], ["nan.npz"]),
    row("eval-inf-images", "eval", ["--images={W}/inf.npz", "--classifier_path={W}/clf",
                                    "--real_images={W}/real.npz"], 1,
        ["inf.npz", "NaN or infinite"], ["inf.npz"]),
    row("eval-nan-real-images", "eval", IMG + ["--real_images={W}/nan.npz"], 1,
        ["nan.npz", "NaN or infinite"], ["nan.npz", "v.npz"]),
    row("eval-stats-not-symmetric", "eval", IMG + ["--real_stats={W}/asym.npz"], 1,
        ["asym.npz", "not symmetric"], ["asym.npz"]),
    row("eval-stats-not-psd", "eval", IMG + ["--real_stats={W}/nonpsd.npz"], 1,
        ["nonpsd.npz", "not positive semi-definite", "-2"], ["nonpsd.npz"]),
    row("eval-stats-nan-mu", "eval", IMG + ["--real_stats={W}/nanmu.npz"], 1,
        ["nanmu.npz", "mu holds 10 NaN"], ["nanmu.npz"]),
    row("eval-stats-inf-sigma", "eval", IMG + ["--real_stats={W}/infsigma.npz"], 1,
        ["infsigma.npz", "sigma holds 1 NaN"], ["infsigma.npz"]),
    row("eval-stats-is-a-folder", "eval", IMG + ["--real_stats={W}/adir"], 1,
        ["adir", "is a folder"], []),
    row("eval-images-missing", "eval", ["--images={W}/missing.npz", "--classifier_path=x",
                                        "--real_images={W}/real.npz"], 1,
        ["missing.npz", "does not exist"], ["real.npz"]),
    row("eval-num-samples-above-count", "eval", REAL + ["--num_samples=500"], 1,
        ["--num_samples=500", "holds 20 images"], ["v.npz"]),
    row("eval-num-samples-7-too-few-to-score", "eval", REAL + ["--num_samples=7"], 2,
        ["--num_samples=7", "integer >= 20", "10-split Inception Score"], ["v.npz"]),
    row("eval-images-too-few-to-score", "eval", ["--images={W}/pngs", "--classifier_path=x",
                                                 "--real_images={W}/real.npz"], 1,
        ["pngs", "holds 4 images", "at least 20"], ["pngs"]),
    row("eval-num-samples-without-images", "eval",
        ["--export_stats={W}/new_stats.npz", "--real_images={W}/real.npz",
         "--num_samples=50"], 1, ["--num_samples=50", "--real_num_samples"], ["real.npz"]),
    # hamgan-eval flags: refused when parsed (status 2), before any work.
    row("eval-num-samples-0", "eval", REAL + ["--num_samples=0"], 2,
        ["--num_samples=0", "integer >= 20"], ["v.npz"]),
    row("eval-batch-size-0", "eval", REAL + ["--batch_size=0"], 2,
        ["--batch_size=0", "integer >= 1"], ["v.npz"]),
    row("eval-run-batch-size-negative", "eval", RUN_EVAL + ["--batch_size=-5"], 2,
        ["--batch_size=-5"], ["run"]),
    row("eval-real-num-samples-0", "eval", REAL + ["--real_num_samples=0"], 2,
        ["--real_num_samples=0"], ["real.npz"]),
    row("eval-standing-batches-negative", "eval", RUN_EVAL + ["--standing_batches=-1"], 2,
        ["--standing_batches=-1", "integer >= 0"], ["run"]),
    row("eval-truncation-tiny", "eval", RUN_EVAL + ["--truncation=1e-9"], 2,
        ["--truncation=1e-09", "below the floor 0.05", "before any work"], ["run"]),
    row("eval-truncation-nan", "eval", RUN_EVAL + ["--truncation=nan"], 2,
        ["--truncation=nan", "finite number > 0"], ["run"]),
    row("eval-poll-s-0", "eval", RUN_EVAL + ["--watch", "--poll_s=0"], 2,
        ["--poll_s=0", "a number > 0"], ["run"]),
    row("eval-flag-typo", "eval", REAL + ["--num_sample=3"], 2,
        ["'num_sample'", "Did you mean: num_samples"], ["v.npz"]),
    row("eval-flag-wrong-type", "eval", REAL + ["--num_samples=many"], 2,
        ["--num_samples=many"], ["v.npz"]),
    row("eval-positional-argument", "eval", ["{W}/run"], 2,
        ["unexpected argument", "/run'", "--model_dir="], ["run"]),
    # hamgan-eval on a run directory.
    row("eval-truncated-newest-checkpoint", "eval", [
        "--model_dir={W}/run_truncated", "--classifier_path={W}/clf", "--num_samples=20",
        "--real_dataset=digits"], 1,
        ["run_truncated/checkpoints/ckpt-20 is damaged", "--checkpoint="], ["run_truncated"]),
    row("eval-garbage-operative-config", "eval", [
        "--model_dir={W}/run_bad_config", "--classifier_path={W}/clf",
        "--real_dataset=digits"], 1, ["run_bad_config/operative_config.gin",
                                      "not a readable gin config"], ["run_bad_config"]),
    row("eval-corrupt-checkpoint-state-file", "eval", [
        "--model_dir={W}/run_bad_state", "--classifier_path={W}/clf", "--num_samples=20",
        "--batch_size=10", "--standing_batches=0", "--real_dataset=digits",
        "--data_dir={W}/tfds", "--cache_dir={W}/cache"], 0, ['"step": 20', "fid20/digits"],
        ["run_bad_state/checkpoints"]),
    # hamgan-sample.
    row("sample-truncation-tiny", "sample", SAMPLE + ["--out={W}/s.npz", "--truncation=1e-9"],
        2, ["--truncation=1e-09", "below the floor 0.05", "refused before any work"], ["run"]),
    row("sample-truncation-0", "sample", SAMPLE + ["--out={W}/s.npz", "--truncation=0"], 2,
        ["--truncation=0", "finite number > 0"], ["run"]),
    row("sample-truncation-inf", "sample", SAMPLE + ["--out={W}/s.npz", "--truncation=inf"],
        2, ["--truncation=inf", "finite number > 0"], ["run"]),
    row("sample-num-samples-0", "sample", SAMPLE + ["--out={W}/s.npz", "--num_samples=0"], 2,
        ["--num_samples=0"], ["run"]),
    row("sample-batch-size-0", "sample", SAMPLE + ["--out={W}/s.npz", "--batch_size=0"], 2,
        ["--batch_size=0"], ["run"]),
    row("sample-out-is-an-existing-file", "sample", SAMPLE + ["--out={W}/afile.txt"], 1,
        ["--out=", "afile.txt", "is an existing file"], ["afile.txt", "run"]),
    row("sample-out-npz-is-a-folder", "sample", SAMPLE + ["--out={W}/adir.npz"], 1,
        ["adir.npz", "is a folder"], ["adir.npz", "run"]),
    row("sample-out-is-the-run-config", "sample",
        SAMPLE + ["--out={W}/run/operative_config.gin"], 1,
        ["operative_config.gin", "is an existing file"], ["run"]),
    row("sample-out-inside-checkpoints", "sample",
        SAMPLE + ["--out={W}/run/checkpoints/s.npz"], 1,
        ["checkpoints/s.npz", "lies in the checkpoints of --model_dir"], ["run"]),
    row("sample-out-names-one-png", "sample", SAMPLE + ["--out={W}/one.png"], 1,
        ["--out=", "one.png", "names one file"], ["run"]),
    row("sample-out-under-a-file", "sample", SAMPLE + ["--out={W}/afile.txt/s.npz"], 1,
        ["afile.txt/s.npz", "is a file, not a folder"], ["afile.txt", "run"]),
    row("sample-classes-out-of-range", "sample", SAMPLE + ["--out={W}/c.npz", "--classes=12"],
        1, ["--classes", "[12]", "outside 0..9"], ["run"]),
    row("sample-flag-typo", "sample", SAMPLE + ["--out={W}/s.npz", "--trunction=1"], 2,
        ["'trunction'", "Did you mean: truncation"], ["run"]),
    row("sample-missing-model-dir", "sample", ["--out={W}/s.npz"], 2,
        ["--model_dir", "must have a value"], []),
    row("sample-positional-argument", "sample", SAMPLE + ["--out={W}/s.npz", "extra"], 2,
        ["unexpected argument", "'extra'"], ["run"]),
    row("sample-garbage-operative-config", "sample",
        ["--model_dir={W}/run_bad_config", "--out={W}/bc.npz"], 1,
        ["run_bad_config/operative_config.gin", "not a readable gin config"],
        ["run_bad_config"]),
    row("sample-corrupt-checkpoint-state-file", "sample",
        ["--model_dir={W}/run_bad_state", "--out={W}/bs.npz", "--num_samples=2",
         "--standing_batches=0"], 0,
        ["wrote 1 file(s)"], ["run_bad_state"]),
    # hamgan-compare.
    row("compare-out-is-an-existing-file", "compare", ["{W}/run", "--out={W}/afile.txt"], 1,
        ["--out=", "afile.txt", "is an existing file"], ["afile.txt", "run"]),
    row("compare-out-holds-a-folder-of-an-output-name", "compare",
        ["{W}/run", "--out={W}/out_with_dir"], 1,
        ["out_with_dir", "'comparison.md'", "holds a folder"], ["run", "out_with_dir"]),
    row("compare-out-missing", "compare", ["{W}/run"], 2, ["--out is required"], ["run"]),
    row("compare-not-a-run-directory", "compare", ["{W}/adir", "--out={W}/cmp"], 1,
        ["adir", "is not a run directory"], ["adir"]),
    row("compare-flag-typo", "compare", ["{W}/run", "--outt={W}/cmp"], 2,
        ["'outt'", "Did you mean: out"], ["run"]),
    # hamgan-train.
    row("train-task-index-outside-one-worker-cluster", "train", TRAIN, 2,
        ["TF_CONFIG", '"index": 1', "outside its cluster", "task indices 0..0"], env=WORKERS_1),
    row("train-task-index-beyond-two-worker-cluster", "train", TRAIN, 2,
        ["TF_CONFIG", '"index": 2', "task indices 0..1"], env=WORKERS_2),
    row("train-task-type-not-in-cluster", "train", TRAIN, 2,
        ["TF_CONFIG", "'chief' is not in its cluster"], env=CHIEF),
    row("train-task-index-not-an-integer", "train", TRAIN, 2,
        ["TF_CONFIG", 'index "0" is not an integer'], env=STRING_INDEX),
    row("train-flag-typo", "train", TRAIN + ["--gin_fil=x"], 2,
        ["'gin_fil'", "Did you mean"]),
    row("train-positional-argument", "train", TRAIN + ["extra"], 2,
        ["unexpected arguments", "'extra'"]),
    row("train-checkpoints-path-is-a-file", "train",
        ["--gin_file=demo_digits", "--model_dir={W}/checkpoints_file_run", "--dry_run"] + [
            f"--gin_param={p}" for p in TINY], 2,
        ["checkpoints_file_run/checkpoints is a file"], ["checkpoints_file_run"]),
    row("train-resume-changed-networks", "train", RESUME, 2,
        ["changes the networks' settings", "Generator.ch: 2 -> 4", "--allow_config_change"],
        ["trained"]),
    row("train-resume-changed-shape-allowed", "train", RESUME + ["--allow_config_change"], 2,
        ["trained/checkpoints/ckpt-2", "another shape", "new --model_dir"], ["trained"]),
    # hamgan-bench.
    row("bench-unknown-subcommand", "bench", ["modulez"], 2, ["'modulez'", "expected one of"]),
]


@pytest.mark.parametrize("tool,args,status,names,inputs,env", CASES)
def test_bad_input_is_refused_in_one_line_and_destroys_nothing(
    world, capfd, monkeypatch, request, tool, args, status, names, inputs, env):
  if "trained" in inputs:
    request.getfixturevalue("trained_run")
  argv = [a.replace("{W}", str(world)) for a in args]
  before = {p: bad_input_world.digest(world / p) for p in inputs}
  got, output = _call(tool, argv, capfd, env, monkeypatch)
  assert got == status, output[-3000:]
  assert "Traceback" not in output, output[-3000:]
  if status:
    line = next(l for l in output.splitlines() if l.startswith(f"hamgan-{tool}: "))
    for name in names:
      assert name in line, (name, line)
    assert "not a refusal hamgan foresaw" not in line, line  # a bug's message
  else:
    assert all(name in output for name in names), output[-3000:]
  assert {p: bad_input_world.digest(world / p) for p in inputs} == before
  assert not (world / "never_made").exists()


def test_num_samples_in_images_mode_is_honoured_and_recorded(world, capfd, monkeypatch):
  out = world / "first21.json"
  np.savez(world / "many.npz", images=image_io.to_uint8(_real_images(30, seed=6)))
  status, output = _call("eval", [
      f"--images={world / 'many.npz'}", f"--classifier_path={world / 'clf'}",
      f"--real_images={world / 'real.npz'}", "--num_samples=21", f"--out={out}"], capfd,
      monkeypatch=monkeypatch)
  assert status == 0, output[-2000:]
  row = json.loads(out.read_text())
  assert row["num_samples"] == 21 and row["images_count"] == 30
  assert "fid21/real" in row["metrics"] and row["protocol"].startswith("21/real")


@pytest.mark.parametrize("how", ["flag", "env"])
def test_verbose_or_env_adds_the_traceback(world, capfd, monkeypatch, how):
  argv = [a.replace("{W}", str(world)) for a in REAL] + ["--num_samples=0"]
  status, output = _call("eval", argv + (["--verbose"] if how == "flag" else []), capfd,
                         {"HAMGAN_TRACEBACK": "1"} if how == "env" else {}, monkeypatch)
  assert status == 2 and "Traceback (most recent call last)" in output
  assert output.rstrip().splitlines()[-1].startswith("hamgan-eval: error: flag "
                                                     "--num_samples=0")


def test_an_unforeseen_error_is_one_line_that_says_so(world, capfd, monkeypatch):
  from hamgan.evaluation import image_eval  # pylint: disable=g-import-not-at-top

  def broken(*args, **kwargs):
    raise KeyError("boom")

  monkeypatch.setattr(image_eval, "evaluate_images", broken)
  status, output = _call("eval", [a.replace("{W}", str(world)) for a in REAL], capfd,
                         monkeypatch=monkeypatch)
  assert status == 1 and "Traceback" not in output
  assert ("hamgan-eval: error: unexpected KeyError: 'boom' (not a refusal hamgan foresaw; "
          "rerun with --verbose or HAMGAN_TRACEBACK=1") in output


def test_every_console_script_and_the_demo_run_through_one_error_wrapper():
  import importlib  # pylint: disable=g-import-not-at-top
  import re  # pylint: disable=g-import-not-at-top
  from hamgan.cli import errors  # pylint: disable=g-import-not-at-top
  setup = open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "setup.py")).read()
  scripts = re.findall(r'"(hamgan-[a-z]+)=([\w.]+):(\w+)"', setup)
  assert len(scripts) >= 5
  for name, module_name, attr in scripts + [("hamgan demo", "hamgan.cli.demo", "run")]:
    module = importlib.import_module(module_name)
    assert isinstance(module.TOOL, errors.Tool) and module.TOOL.name == name
    assert getattr(module, attr) == module.TOOL.run, (name, "must be TOOL.run")


def _console(*args, timeout=60):
  start = time.time()
  res = subprocess.run([os.path.join(BIN, args[0]), *args[1:]], capture_output=True,
                       text=True, timeout=timeout, check=False)
  return res, time.time() - start


@pytest.mark.parametrize("script,args,names", [
    ("hamgan-eval", ["--images=x.npz", "--num_sample=3"], ["'num_sample'", "num_samples"]),
    ("hamgan-sample", ["--model_dir=r", "--out=s.npz", "--clases=3"], ["'clases'", "classes"]),
    ("hamgan-train", ["--gin_fil=demo_digits"], ["'gin_fil'", "gin_file"]),
    ("hamgan-compare", ["r", "--outt=o"], ["'outt'", "Did you mean: out"]),
])
def test_console_script_flag_typo_is_one_line(script, args, names):
  res, _ = _console(script, *args)
  assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
  line = res.stderr.strip().splitlines()[-1]
  assert line.startswith(f"{script}: error: Unknown command line flag"), line
  assert all(n in line for n in names), line
  verbose, _ = _console(script, *args, "--verbose")
  assert verbose.returncode == 2 and "Traceback (most recent call last)" in verbose.stderr


def test_console_sample_with_a_tiny_truncation_returns_within_seconds(world):
  res, seconds = _console("hamgan-sample", f"--model_dir={world / 'run'}",
                          f"--out={world / 'hang.npz'}", "--truncation=1e-9", timeout=30)
  assert res.returncode == 2 and "below the floor 0.05" in res.stderr, res.stderr[-2000:]
  assert seconds < 20 and not (world / "hang.npz").exists()


def test_truncation_redraws_are_bounded_and_the_floor_is_cheap():
  from hamgan.evaluation import features  # pylint: disable=g-import-not-at-top
  from hamgan.evaluation import latent  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match=r"truncation=1e-09 is below the floor 0\.05"):
    features.latent_inputs(10, 2, 3, truncation=1e-9)  # the library refuses it too
  z = np.random.default_rng(0).standard_normal((100, 50)).astype(np.float32)
  with pytest.raises(ValueError, match=r"still outside \+-0\.1 after 3 rounds .*bound"):
    latent.truncate(np.random.default_rng(1), z, 0.1, max_rounds=3)
  start = time.time()
  z, _ = features.latent_inputs(2000, 10, 128, seed=0, truncation=latent.MIN_TRUNCATION)
  assert np.abs(z).max() <= latent.MIN_TRUNCATION and time.time() - start < 10


def test_statistics_tolerances_accept_float32_covariances_of_few_samples(tmp_path):
  from hamgan.evaluation import stats_file  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(3)
  x = np.maximum(rng.normal(size=(20, 64)) @ rng.normal(size=(64, 64)), 0).astype(np.float32)
  sigma = np.cov(x, rowvar=False).astype(np.float32)  # rank 19 of 64: 45 zero eigenvalues
  np.savez(tmp_path / "few.npz", mu=x.mean(0), sigma=sigma)
  mu, read_sigma, _ = stats_file.read(str(tmp_path / "few.npz"))
  assert read_sigma.shape == (64, 64) and np.isfinite(mu).all()
  top = np.linalg.eigvalsh(sigma.astype(np.float64))[-1]
  np.savez(tmp_path / "dented.npz", mu=mu, sigma=sigma - 1e-3 * top * np.eye(64))
  with pytest.raises(ValueError, match="dented.npz.*not positive semi-definite"):
    stats_file.read(str(tmp_path / "dented.npz"))


def test_valid_tf_configs_pass_the_task_check():
  from hamgan.training import strategy  # pylint: disable=g-import-not-at-top
  for config in ({"cluster": {"worker": {"0": "a:1", "3": "b:1"}},
                  "task": {"type": "worker", "index": 3}},
                 {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "evaluator"}},
                 {"cluster": {"chief": ["a:1"], "worker": ["b:1"]},
                  "task": {"type": "chief", "index": 0}}):
    strategy.check_task(config)


def test_nothing_non_finite_is_scored_even_past_the_file_checks(world):
  from hamgan.evaluation import classifier as classifier_lib  # pylint: disable=g-import-not-at-top
  from hamgan.evaluation import features  # pylint: disable=g-import-not-at-top
  from hamgan.evaluation import metrics  # pylint: disable=g-import-not-at-top
  x = _real_images(10, seed=7)
  x[6] = np.nan  # as a diverged generator would give
  clf = classifier_lib.load_classifier(str(world / "clf"))
  with pytest.raises(ValueError, match=r"1 of 10 real images are NaN or infinite \(first: "
                                       r"image 6\), so no metric"):
    features.dataset_features(tf.data.Dataset.from_tensor_slices(x).batch(5), clf, 10)

  def diverged(inputs, training=False):  # NaN wherever z[:, 0] > 1
    z, _ = inputs
    nan = tf.where(z[:, :1] > 1.0, np.nan, 0.0)
    return tf.zeros((tf.shape(z)[0], 8, 8, 3)) + nan[:, :, None, None]

  with pytest.raises(ValueError, match=r"of 40 generated images are NaN or infinite"):
    features.generated_features(diverged, clf, 40, 2, 4, batch_size=20)
  good = np.random.default_rng(0).normal(size=(30, 4))
  bad = good.copy()
  bad[3, 1] = np.inf
  with pytest.raises(ValueError, match="generated_activations holds 1 NaN or infinite"):
    metrics.frechet_distance(good, bad)
