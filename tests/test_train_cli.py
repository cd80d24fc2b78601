"""Tests for hamgan-train: --help, set-up errors before the first step, a tiny run."""
import json
import os
import subprocess
import sys

from absl import flags
from absl.testing import flagsaver
import gin
import pytest

from hamgan import checkpoints
from hamgan.cli import train as train_cli
from hamgan.training import strategy as strategy_lib
from hamgan.training import trainer as trainer_lib

FLAGS = flags.FLAGS
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# demo_digits shrunk to a few seconds of work.
TINY = ["Generator.ch = 2", "Discriminator.ch = 2", "Generator.z_dim = 8",
        "Generator.context_settings = {'rank': 2, 'steps': 2}",
        "Discriminator.context_settings = {'rank': 2, 'steps': 2}",
        "train.batch_size = 4", "train.num_steps = 2", "train.steps_per_loop = 2",
        "train.log_every = 2", "train.summary_every = 2", "train.checkpoint_every = 2"]


def _newest_step(model_dir):
  """The step of the newest listed checkpoint of a run, or 0."""
  found = checkpoints.list_checkpoints(str(model_dir))
  return found[-1][0] if found else 0


@pytest.fixture(autouse=True)
def _clean_gin():
  """The CLI parses gin globally; later tests must not see these bindings."""
  yield
  gin.clear_config()


def _main(**flag_values):
  if not FLAGS.is_parsed():
    FLAGS(["hamgan-train"])
  with flagsaver.flagsaver(**flag_values):
    train_cli.main(["hamgan-train"])


def _expect_setup_error(capsys, model_dir, fragments, **flag_values):
  with pytest.raises(SystemExit) as exit_info:
    _main(model_dir=str(model_dir), **flag_values)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  for fragment in fragments:
    assert fragment in err, err
  # Nothing was trained: no checkpoint, no log rows.
  assert _newest_step(str(model_dir)) == 0
  assert not os.path.exists(os.path.join(str(model_dir), "train_log.jsonl"))
  return err


@pytest.mark.parametrize("command", [
    [sys.executable, "-m", "hamgan.cli.train"],
    # The console script: absl lists __main__'s flags, and there __main__ is the wrapper.
    [os.path.join(os.path.dirname(sys.executable), "hamgan-train")],
])
def test_help_lists_the_flags(command):
  out = subprocess.run(command + ["--help"], cwd=REPO,
                       capture_output=True, text=True, timeout=120, check=False)
  assert out.returncode in (0, 1), out.stderr  # absl's --help exits with 1
  assert "hamgan-train" in out.stdout
  for flag in ("--gin_file", "--gin_param", "--model_dir", "--tpu"):
    assert flag in out.stdout


def test_missing_gin_file_exits_non_zero_in_a_subprocess(tmp_path):
  out = subprocess.run(
      [sys.executable, "-m", "hamgan.cli.train", "--gin_file=no_such_experiment",
       f"--model_dir={tmp_path / 'run'}"],
      cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
  assert out.returncode == 2
  assert "gin file 'no_such_experiment' not found" in out.stderr
  assert "demo_digits" in out.stderr  # it lists the experiments one can pass


def test_tpu_flag_without_a_tpu_says_how_to_fix_it(tmp_path):
  # A subprocess: connecting to a TPU cluster resets this process's TF context.
  out = subprocess.run(
      [sys.executable, "-m", "hamgan.cli.train", "--gin_file=demo_digits",
       f"--model_dir={tmp_path / 'run'}", "--tpu=local"],
      cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
  assert out.returncode == 2
  assert "--tpu='local': could not connect to or initialise the TPU" in out.stderr
  assert "leave --tpu unset" in out.stderr
  assert not (tmp_path / "run" / "checkpoints").exists()


def test_gin_syntax_error(tmp_path, capsys):
  bad = tmp_path / "bad.gin"
  bad.write_text("include 'base_train.gin'\ntrain.batch_size = = 4\n")
  _expect_setup_error(capsys, tmp_path / "run", ["could not be parsed", "SyntaxError",
                                                 "line 2"], gin_file=[str(bad)])


@pytest.mark.parametrize("binding,fragments", [
    ("Trainr.batch_size = 4", ["No configurable matching 'Trainr'"]),
    ("train.batchsize = 4", ["doesn't have a parameter named 'batchsize'"]),
])
def test_unknown_binding(tmp_path, capsys, binding, fragments):
  _expect_setup_error(capsys, tmp_path / "run", fragments, gin_file=["demo_digits"],
                      gin_param=[binding])


def test_missing_data_set(tmp_path, capsys):
  empty = tmp_path / "tfds"
  empty.mkdir()
  _expect_setup_error(
      capsys, tmp_path / "run", ["'cifar10' is not prepared", "tfds build cifar10"],
      gin_file=["demo_digits"],
      gin_param=TINY + ["train.dataset = 'cifar10'", f"train.data_dir = '{empty}'"])


def test_unwritable_model_dir(tmp_path, capsys):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  _expect_setup_error(capsys, blocker / "run", ["is not writable", "--model_dir"],
                      gin_file=["demo_digits"], gin_param=TINY)


def test_batch_not_divisible_by_replicas(tmp_path, capsys, monkeypatch, two_cpu_strategy):
  monkeypatch.setattr(strategy_lib, "resolve_strategy",
                      lambda tpu=None, worker_timeout_secs=None: two_cpu_strategy)
  _expect_setup_error(capsys, tmp_path / "run", ["batch_size=5", "multiple of 2"],
                      gin_file=["demo_digits"], gin_param=TINY + ["train.batch_size = 5"])


def test_tiny_run_end_to_end(tmp_path, capsys, caplog):
  model_dir = tmp_path / "run"
  with caplog.at_level("INFO"):
    _main(gin_file=["demo_digits"], model_dir=str(model_dir),
          gin_param=TINY + [f"train.data_dir = '{tmp_path / 'tfds'}'"])
  assert str(model_dir) in capsys.readouterr().out
  assert json.loads((model_dir / "TRAINING_DONE").read_text())["step"] == 2
  assert _newest_step(str(model_dir)) == 2
  rows = [json.loads(r) for r in (model_dir / "train_log.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows] == [2]
  operative = (model_dir / "operative_config.gin").read_text()
  assert "ham_nmf" in operative and "batch_size = 4" in operative
  progress = [r.getMessage() for r in caplog.records if "it/s" in r.getMessage()]
  assert progress and "step 2/2" in progress[-1] and "ETA" in progress[-1]
  assert (model_dir / "samples" / "step_2.png").exists()


def test_print_config_prints_every_resolved_setting_and_touches_nothing(tmp_path, capsys):
  model_dir = tmp_path / "run"
  _main(gin_file=["demo_digits"], model_dir=str(model_dir), gin_param=TINY,
        print_config=True)
  out = capsys.readouterr().out
  # Bound values, values from the experiment file, and defaults nobody bound.
  for line in ("train.batch_size = 4", "Generator.ch = 2", "train.g_lr = 0.0002",
               "train.max_loop_seconds = 10.0", "train.loss_fn = @hinge",
               "fault_tolerance.max_rollbacks = 0", "Discriminator.image_size = %IMAGE_SIZE"):
    assert line in out, line
  assert not model_dir.exists()


def test_dry_run_checks_everything_and_trains_nothing(tmp_path, capsys):
  model_dir = tmp_path / "run"
  _main(gin_file=["demo_digits"], model_dir=str(model_dir), gin_param=TINY, dry_run=True)
  out = capsys.readouterr().out
  assert "dry run passed" in out and "starting at step 0" in out
  assert _newest_step(model_dir) == 0
  assert not model_dir.exists()  # nothing written: no directory, config, log or checkpoint
  # A problem that only shows when the data set is opened is still caught.
  with pytest.raises(SystemExit) as exit_info:
    _main(gin_file=["demo_digits"], model_dir=str(model_dir), dry_run=True,
          gin_param=TINY + ["train.dataset = 'cifar10'",
                            f"train.data_dir = '{tmp_path / 'empty'}'"])
  assert exit_info.value.code == 2
  assert "not prepared" in capsys.readouterr().err
