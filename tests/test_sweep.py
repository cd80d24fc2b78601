"""hamgan-sweep: the grid (--vary, --seeds, run directory names), its errors, --dry_run
and --print_commands, the runner (resume, failures, --max_runs, progress, SIGTERM) with
a stand-in trainer, and a real tiny sweep stopped half-way and resumed (slow)."""
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from scipy import stats as sp_stats

from hamgan import run_dir
from hamgan.cli import sweep as sweep_cli
from hamgan.compare import grid
from hamgan.compare import sweep as sweep_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONTEXTS = ("Generator.context,Discriminator.context=none,ham_nmf;"
            "Generator.context_settings,Discriminator.context_settings="
            "None,{'rank': 2, 'steps': 2}")


# ---------------------------------------------------------------- the grid


def test_vary_forms_and_values():
  one = grid.parse_vary("train.g_lr=1e-4, 2e-4")
  assert one.segments[0][0] == ("train.g_lr",)
  assert [v.text for v in one.segments[0][1]] == ["0.0001", "0.0002"]
  linked = grid.parse_vary("Generator.context,Discriminator.context=none,'sagan',@ham_nmf")
  assert linked.bindings == ("Generator.context", "Discriminator.context")
  # A bare word is a string; quotes give the same; a reference stays a reference.
  assert [v.text for v in linked.segments[0][1]] == ["'none'", "'sagan'", "@ham_nmf"]
  assert [v.label for v in linked.segments[0][1]] == ["none", "sagan", "ham_nmf"]
  zipped = grid.parse_vary(CONTEXTS)
  assert len(zipped) == 2 and len(zipped.segments) == 2
  # Commas inside brackets belong to the value; None is Python's None.
  assert [v.text for v in zipped.segments[1][1]] == ["None", "{'rank': 2, 'steps': 2}"]
  assert grid.parse_vary("G.x=None,none").segments[0][1][1].text == "'none'"
  assert [v.text for v in grid.parse_vary("G.s=(1, 2),[3],True").segments[0][1]] == [
      "(1, 2)", "[3]", "True"]


def test_points_names_and_order():
  axes = [grid.parse_vary(CONTEXTS), grid.parse_vary("train.g_lr=1e-4,2e-4")]
  points = grid.make_points(axes, [0, 1])
  assert [p.name for p in points] == [
      "context-none__g_lr-0.0001__seed-0", "context-none__g_lr-0.0002__seed-0",
      "context-ham_nmf__g_lr-0.0001__seed-0", "context-ham_nmf__g_lr-0.0002__seed-0",
      "context-none__g_lr-0.0001__seed-1", "context-none__g_lr-0.0002__seed-1",
      "context-ham_nmf__g_lr-0.0001__seed-1", "context-ham_nmf__g_lr-0.0002__seed-1"]
  assert points[2].gin_params() == [
      "Generator.context = 'ham_nmf'", "Discriminator.context = 'ham_nmf'",
      "Generator.context_settings = {'rank': 2, 'steps': 2}",
      "Discriminator.context_settings = {'rank': 2, 'steps': 2}",
      "train.g_lr = 0.0001", "train.seed = 0"]
  # Two axes ending alike are named by their whole bindings.
  same = grid.make_points([grid.parse_vary("Generator.ch=4"),
                           grid.parse_vary("Discriminator.ch=8")], [3])
  assert same[0].name == "Generator.ch-4__Discriminator.ch-8__seed-3"
  # Values a directory name cannot hold are made safe; long ones keep a hash.
  odd = grid.make_points([grid.parse_vary("train.dataset='imagenet_resized/32x32'")], [0])
  assert odd[0].name == "dataset-imagenet_resized_32x32__seed-0"
  long = grid.sanitize("x" * 100)
  assert len(long) == 60 and long != grid.sanitize("x" * 99)
  # A zipped axis whose first values repeat is named by all of its values.
  both = grid.make_points([grid.parse_vary("G.a=1,1;G.b=2,3")], [0])
  assert [p.name for p in both] == ["a-1_2__seed-0", "a-1_3__seed-0"]
  assert [p.name for p in grid.make_points([], [0, 1])] == ["seed-0", "seed-1"]


@pytest.mark.parametrize("spec,fragment", [
    ("Generator.context", "expected BINDING=V1,V2"),
    ("=a,b", "expected BINDING=V1,V2"),
    ("Generator.context=a,,b", "an empty value"),
    ("G.x={'rank': 2", "unclosed bracket"),
    ("G.x='a", "unclosed quote"),
    ("G.x=1 2", "is not a gin literal"),
    ("G.x=a,b,a", "given twice"),
    ("G.a=1,2;G.b=3", "as many values each"),
    ("train.seed=1,2", "set by --seeds"),
    ("G.x=@1bad", "no gin reference"),
])
def test_bad_vary_names_the_value_and_the_fix(spec, fragment):
  with pytest.raises(ValueError, match="--vary") as info:
    grid.parse_vary(spec)
  assert fragment in str(info.value)


@pytest.mark.parametrize("text,fragment", [
    ("", "gives no seed"), (" , ", "gives no seed"), (None, "gives no seed"),
    ("0,x", "integers"), ("1,1", "each seed once"), ("-1", "none negative")])
def test_bad_seeds(text, fragment):
  with pytest.raises(ValueError, match="--seeds") as info:
    grid.parse_seeds(text)
  assert fragment in str(info.value)


def test_bindings_varied_twice_or_also_fixed():
  a, b = grid.parse_vary("G.x=1,2"), grid.parse_vary("G.y,G.x=3,4")
  with pytest.raises(ValueError, match="varied by both"):
    grid.check_axes([a, b], [])
  with pytest.raises(ValueError, match="fixes G.x, which --vary"):
    grid.check_axes([a], ["G.x = 5"])
  with pytest.raises(ValueError, match="set by --seeds"):
    grid.check_axes([a], ["train.seed = 5"])


def test_shell_lines_read_back():
  sweep = sweep_lib.Sweep(["demo_digits"], [grid.parse_vary(CONTEXTS)], [0], "/r x",
                          gin_params=["train.data_dir = '/d'"], eval_args=["--manifold"])
  point = sweep.points[1]
  train, evaluate = sweep.commands(point)
  assert train.split()[1] == "--gin_file=demo_digits"
  assert "--gin_param=\"Generator.context = 'ham_nmf'\"" in train
  assert shlex.split(train) == ["hamgan-train"] + sweep.train_args(point)
  assert shlex.split(evaluate) == ["hamgan-eval", "--model_dir=/r x/context-ham_nmf__seed-0",
                                   "--all", "--manifold"]


# ---------------------------------------------------------------- the command line


def _sweep_cli(*args, timeout=300):
  return subprocess.run([sys.executable, "-m", "hamgan.cli.sweep", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=timeout, check=False)


def test_help_console_script_and_module():
  script = os.path.join(os.path.dirname(sys.executable), "hamgan-sweep")
  for command in ([script], [sys.executable, "-m", "hamgan.cli.sweep"]):
    out = subprocess.run(command + ["--help"], cwd=REPO, capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    for flag in ("vary", "seeds", "root", "gin_param", "dry_run", "print_commands",
                 "parallel", "max_runs", "num_samples", "classifier_path", "manifold",
                 "intra_fid", "real_dataset", "batch_size"):
      assert re.search(rf"--(\[no\])?{flag}:", out.stdout), flag


def test_dry_run_checks_every_setting_and_writes_nothing(tmp_path):
  root = tmp_path / "sweep"
  base = ["--gin_file=demo_digits", f"--root={root}", "--seeds=0,1", f"--vary={CONTEXTS}",
          "--num_samples=100"]
  out = _sweep_cli(*base, "--dry_run", "--print_commands")
  assert out.returncode == 0, out.stderr
  assert "4 runs = 2 settings x 2 seeds" in out.stdout
  assert f"[new    ] {root}/context-ham_nmf__seed-1" in out.stdout
  assert out.stdout.count("hamgan-train --gin_file=demo_digits") == 4
  assert f"hamgan-eval --model_dir={root}/context-none__seed-0 --all --num_samples=100" in (
      out.stdout)
  assert not root.exists()
  # A setting the models refuse fails before anything runs, naming the run.
  bad = _sweep_cli("--gin_file=demo_digits", f"--root={root}", "--seeds=0",
                   "--vary=Generator.context,Discriminator.context=sagan", "--dry_run")
  assert bad.returncode != 0 and "run context-sagan__seed-0" in bad.stderr, bad.stderr
  unknown = _sweep_cli("--gin_file=demo_digits", f"--root={root}", "--seeds=0",
                       "--vary=Generatr.ch=2,4", "--dry_run")
  assert unknown.returncode != 0 and "Generatr" in unknown.stderr, unknown.stderr
  no_seeds = _sweep_cli("--gin_file=demo_digits", f"--root={root}", "--dry_run")
  assert no_seeds.returncode != 0 and "--seeds=None gives no seed" in no_seeds.stderr
  bad_eval = _sweep_cli(*base, "--eval_flag=--num_samples=many", "--dry_run")
  assert bad_eval.returncode != 0 and "evaluation flags" in bad_eval.stderr, bad_eval.stderr
  assert not root.exists()


# ---------------------------------------------------------------- the runner

FAKE_TOOLS = """\
#!{python}
# Stands in for `python -m hamgan.cli.train|eval`: a run in milliseconds.
import json, os, signal, sys, time
from hamgan import run_dir
module, args = sys.argv[2], sys.argv[3:]
model_dir = [a.split("=", 1)[1] for a in args if a.startswith("--model_dir=")][0]
params = [a.split("=", 1)[1] for a in args if a.startswith("--gin_param=")]
with open(os.environ["FAKE_CALLS"], "a") as f:
  f.write(json.dumps([module, os.path.basename(model_dir)]) + "\\n")
if module == "hamgan.cli.train":
  if "train.g_lr = 2" in params and "train.seed = 1" in params:
    print("boom: this run fails"); sys.exit(3)
  if os.environ.get("FAKE_SLEEP"):
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    time.sleep(float(os.environ["FAKE_SLEEP"]))
  os.makedirs(model_dir, exist_ok=True)
  with open(os.path.join(model_dir, "operative_config.gin"), "w") as f:
    f.write("\\n".join(params) + "\\n")
  with open(os.path.join(model_dir, "train_log.jsonl"), "a") as f:
    f.write(json.dumps(dict(step=10, steps_per_sec=5.0)) + "\\n")
  run_dir.write_done(model_dir, 10)
else:
  lr = float([p for p in params or open(os.path.join(model_dir, "operative_config.gin"))
              if "g_lr" in p][0].split("=")[1])
  seed = int(os.path.basename(model_dir)[-1])
  run_dir.write_result(model_dir, dict(step=10, protocol="fake", config_sha256=str(seed),
                                       metrics={{"fid10/fake": 10 * lr + seed}}))
"""


@pytest.fixture
def fake_python(tmp_path, monkeypatch):
  path = tmp_path / "fake_python"
  path.write_text(FAKE_TOOLS.format(python=sys.executable))
  path.chmod(0o755)
  calls = tmp_path / "calls.jsonl"
  monkeypatch.setenv("FAKE_CALLS", str(calls))

  def read_calls():
    return [tuple(json.loads(l)) for l in calls.read_text().splitlines()] if (
        calls.exists()) else []
  return str(path), read_calls


def _fake_sweep(root, python, **kwargs):
  return sweep_lib.Sweep(["unused.gin"], [grid.parse_vary("train.g_lr=1,2")], [0, 1],
                         str(root), python=python, **kwargs)


def test_runner_resumes_defers_and_reports_failures(tmp_path, fake_python):
  python, calls = fake_python
  root = tmp_path / "sweep"
  lines = []
  assert sweep_lib.run(_fake_sweep(root, python, max_runs=2), lines.append) == 0
  assert calls() == [("hamgan.cli.train", "g_lr-1__seed-0"), ("hamgan.cli.eval", "g_lr-1__seed-0"),
                     ("hamgan.cli.train", "g_lr-2__seed-0"), ("hamgan.cli.eval", "g_lr-2__seed-0")]
  assert any("2 runs not started (--max_runs=2)" in l for l in lines)
  progress = [l for l in lines if "runs finished" in l]
  assert [l.split()[1] for l in progress] == ["1/2", "2/2"]
  assert "ETA 0h00m00s" in progress[-1] and "elapsed 0h00m0" in progress[0]
  # A half-done run (a directory without TRAINING_DONE) is trained again: it resumes.
  (root / "g_lr-1__seed-1").mkdir()
  assert "[started]" in sweep_lib.describe(_fake_sweep(root, python))[3]
  lines.clear()
  status = sweep_lib.run(_fake_sweep(root, python, parallel=2), lines.append)
  assert status == 1
  trained = [name for module, name in calls() if module == "hamgan.cli.train"]
  # Done runs were not trained again; every run was trained at most once.
  assert sorted(trained) == ["g_lr-1__seed-0", "g_lr-1__seed-1", "g_lr-2__seed-0",
                             "g_lr-2__seed-1"]
  assert any("0 left for a later call" in l and "2 done already" in l for l in lines)
  failed = [l for l in lines if l.startswith("[sweep] failed: g_lr-2__seed-1")]
  assert len(failed) == 1 and "status 3" in failed[0] and "boom" in failed[0]
  assert "g_lr-2__seed-1.train.log" in failed[0]
  data = json.loads((root / "comparison.json").read_text())
  groups = {g["name"]: g for g in data["groups"]}
  assert sorted(groups) == ["g_lr-1", "g_lr-2"]
  assert groups["g_lr-1"]["metrics"]["fid10/fake [fake]"]["values"] == [10.0, 11.0]
  assert groups["g_lr-2"]["n"] == 1   # the failed run has no directory
  assert json.loads((root / ".sweep" / "sweep.json").read_text())["seeds"] == [0, 1]


def test_sigterm_stops_the_children_and_says_how_to_resume(tmp_path, fake_python):
  python, calls = fake_python
  root = tmp_path / "sweep"
  code = textwrap.dedent(f"""
      import sys
      from hamgan.compare import grid, sweep
      s = sweep.Sweep(["unused.gin"], [grid.parse_vary("train.g_lr=1")], [0], {str(root)!r},
                      python={python!r})
      sys.exit(sweep.run(s, write=lambda l: print(l, flush=True)))""")
  env = dict(os.environ, FAKE_SLEEP="60")
  proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                          env=env, cwd=REPO, start_new_session=True)
  deadline = time.time() + 60
  while not calls() and time.time() < deadline:
    time.sleep(0.2)
  time.sleep(1.0)   # the stand-in trainer installs its SIGTERM handler
  start = time.time()
  proc.send_signal(signal.SIGTERM)
  try:
    out, _ = proc.communicate(timeout=60)
  finally:
    if proc.poll() is None:   # the sweep did not stop: end it and its stand-in trainer
      os.killpg(proc.pid, signal.SIGKILL)
  assert time.time() - start < 30   # the 60 s "training" was stopped
  assert proc.returncode == 143, out
  assert "SIGTERM: stopping the running jobs" in out
  assert "run the same command again to resume" in out
  assert not run_dir.is_done(str(root / "g_lr-1__seed-0"))


# ---------------------------------------------------------------- a real tiny sweep

TINY = ["Generator.ch = 2", "Discriminator.ch = 2", "Generator.z_dim = 8",
        "train.batch_size = 4", "train.num_steps = 20", "train.steps_per_loop = 10",
        "train.log_every = 10", "train.summary_every = 10", "train.checkpoint_every = 10"]


@pytest.fixture(scope="module")
def digits_classifier_path(tmp_path_factory):
  from hamgan.evaluation import digits_classifier  # pylint: disable=import-outside-toplevel
  path = str(tmp_path_factory.mktemp("digits_cnn"))
  assert digits_classifier.train_and_save(path)["test_accuracy"] >= 0.9
  return path


def _mtimes(model_dir):
  found = {}
  for sub in ("checkpoints", "milestones"):
    for name in sorted(os.listdir(os.path.join(model_dir, sub))):
      found[f"{sub}/{name}"] = os.stat(os.path.join(model_dir, sub, name)).st_mtime_ns
  return found


def _final_values(model_dir, metric):
  rows = [r for r in run_dir.read_results(model_dir) if metric in r["metrics"]]
  return max(rows, key=lambda r: r["step"])["metrics"][metric], {r["step"] for r in rows}


@pytest.mark.slow
def test_real_sweep_stopped_half_way_resumes_and_compares(tmp_path, digits_classifier_path):
  from hamgan.cli import train as train_cli  # pylint: disable=import-outside-toplevel
  root = tmp_path / "sweep"
  params = TINY + [f"train.data_dir = '{tmp_path / 'tfds'}'"]
  argv = ["hamgan-sweep", "--gin_file=demo_digits", f"--root={root}", "--seeds=0,1",
          f"--vary={CONTEXTS}", *[f"--gin_param={p}" for p in params], "--num_samples=100",
          "--batch_size=50", f"--classifier_path={digits_classifier_path}",
          f"--cache_dir={tmp_path / 'cache'}", "--standing_batches=2"]
  # 1. Stopped after the first two runs (--max_runs=2), trained side by side.
  assert sweep_cli.TOOL.call(argv + ["--max_runs=2", "--parallel=2", "--noevaluate"]) == 0
  sweep = sweep_cli.sweep_from_flags(sweep_cli.parse_flags(argv))
  done = [sweep.model_dir(p) for p in sweep.points[:2]]
  assert [run_dir.is_done(d) for d in done] == [True, True]
  assert not os.path.exists(sweep.model_dir(sweep.points[2]))
  done_files = [_mtimes(d) for d in done]
  done_logs = [open(os.path.join(d, "train_log.jsonl")).read() for d in done]
  # 2. The next run half-done, as a killed one leaves it: a checkpoint at step 10.
  half = sweep.model_dir(sweep.points[2])
  train_cli.build_trainer(["demo_digits"], params + sweep.points[2].gin_params()
                          + ["train.num_steps = 10"], half).train()
  os.remove(os.path.join(half, run_dir.DONE_FILE))
  half_ckpt = _mtimes(half)["milestones/ckpt-10.index"]
  # 3. The same command again finishes the grid and evaluates every run.
  assert sweep_cli.TOOL.call(argv + ["--parallel=2"]) == 0
  assert [_mtimes(d) for d in done] == done_files   # nothing finished was rewritten
  assert [open(os.path.join(d, "train_log.jsonl")).read() for d in done] == done_logs
  for point in sweep.points[:2]:
    with open(sweep.log_path(point, "train")) as f:
      launches = [l for l in f if l.startswith("# ") and "-m hamgan.cli.train" in l]
    assert len(launches) == 1   # the sweep started these trainings once, in the first call
  assert _mtimes(half)["milestones/ckpt-10.index"] == half_ckpt   # resumed at step 10
  assert os.path.exists(os.path.join(half, "operative_config-10.gin"))
  assert all(run_dir.is_done(sweep.model_dir(p)) for p in sweep.points)

  data = json.loads((root / "comparison.json").read_text())
  assert [(g["name"], g["n"], g["runs"]) for g in data["groups"]] == [
      ("context-none", 2, ["context-none__seed-0", "context-none__seed-1"]),
      ("context-ham_nmf", 2, ["context-ham_nmf__seed-0", "context-ham_nmf__seed-1"])]
  for group in data["groups"]:
    fid = [k for k in group["metrics"] if k.startswith("fid100/digits-test [")]
    assert len(fid) == 1
    entry = group["metrics"][fid[0]]
    finals = [_final_values(path, "fid100/digits-test") for path in group["paths"]]
    assert entry["values"] == [v for v, _ in finals]
    assert all(steps == {10, 20} for _, steps in finals) and entry["steps"] == [20, 20]
    values = np.array(entry["values"])
    assert entry["mean"] == pytest.approx(values.mean(), rel=1e-12)
    assert entry["std"] == pytest.approx(values.std(ddof=1), rel=1e-9)
    low, high = sp_stats.t.interval(0.95, len(values) - 1, loc=values.mean(),
                                    scale=sp_stats.sem(values))
    assert entry["ci95"] == pytest.approx([low, high], rel=1e-9)
    assert entry["best"] == values.min()
  assert os.path.exists(root / "comparison.md") and data["band_plots"]
