"""A run's history: milestones that survive, each step scored under its own launch's
config, no silent restart from an older step, dry runs that write nothing."""
import hashlib
import json
import os
import shutil

from absl import flags
from absl.testing import flagsaver
import gin
import numpy as np
import pytest
import tensorflow as tf

from hamgan import checkpoints
from hamgan import run_dir
from hamgan.cli import eval as eval_cli
from hamgan.cli import train as train_cli
from hamgan.evaluation import digits_classifier
from hamgan.evaluation import evaluator

FLAGS = flags.FLAGS
TINY = ["Generator.ch = 2", "Discriminator.ch = 2", "Generator.z_dim = 8",
        "Generator.context = 'ham_nmf'", "Discriminator.context = 'none'",
        "train.batch_size = 4", "train.steps_per_loop = 5", "train.log_every = 5",
        "train.summary_every = 1000", "train.checkpoint_every = 20",
        "train.max_checkpoints = 1", "train.checkpoint_every_secs = 1.0"]


def _nmf(steps):
  return f"Generator.context_settings = {{'rank': 2, 'steps': {steps}}}"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def classifier_path(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("digits_cnn"))
  digits_classifier.train_and_save(path)
  return path


def _train(model_dir, data_dir, *params, **flag_values):
  if not FLAGS.is_parsed():
    FLAGS(["hamgan-train"])
  gin_param = TINY + [f"train.data_dir = '{data_dir}'", *params]
  with flagsaver.flagsaver(gin_file=["demo_digits"], gin_param=gin_param,
                           model_dir=str(model_dir), **flag_values):
    train_cli.main(["hamgan-train"])


def _tree(path):
  """{relative path: sha256} of every file under `path` (empty if it does not exist)."""
  found = {}
  for root, _, names in os.walk(path):
    for name in names:
      full = os.path.join(root, name)
      with open(full, "rb") as f:
        found[os.path.relpath(full, path)] = hashlib.sha256(f.read()).hexdigest()
  return found


def _sha(path):
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def test_milestones_survive_and_each_step_is_scored_under_its_launch_config(
    tmp_path, data_dir, classifier_path, capsys):
  run = tmp_path / "run"
  _train(run, data_dir, _nmf(2), "train.num_steps = 40")
  assert [s for s, _ in checkpoints.list_milestones(str(run))] == [20, 40]
  assert [s for s, _ in checkpoints.list_checkpoints(str(run))] == [40]  # max_checkpoints 1
  # A hard kill after step 40 had logged steps it never saved: they are logged again.
  with open(run / run_dir.TRAIN_LOG, "a") as f:
    f.write(json.dumps({"step": 45}) + "\n" + json.dumps({"step": 50}) + "\n")

  # A changed network setting stops the resumed launch before anything is written.
  before = _tree(run)
  with pytest.raises(SystemExit) as info:
    _train(run, data_dir, _nmf(3), "train.num_steps = 60")
  assert info.value.code == 2
  err = capsys.readouterr().err
  assert "Generator.context_settings" in err and "--allow_config_change" in err, err
  assert _tree(run) == before

  _train(run, data_dir, _nmf(3), "train.num_steps = 60", allow_config_change=True)
  assert [s for s, _ in checkpoints.list_milestones(str(run))] == [20, 40, 60]
  assert [s for s, _ in checkpoints.list_checkpoints(str(run))] == [60]
  logged = [json.loads(line)["step"] for line in open(run / run_dir.TRAIN_LOG)]
  assert len(logged) == len(set(logged)) and max(logged) == 60, logged

  def evaluate(*extra):
    args = eval_cli.parse_flags([
        "hamgan-eval", f"--model_dir={run}", "--num_samples=20", f"--data_dir={data_dir}",
        f"--classifier_path={classifier_path}", f"--cache_dir={tmp_path / 'cache'}", *extra])
    return eval_cli.evaluate(args, write=lambda _: None)

  rows = evaluate("--all", "--batch_size=10")
  assert sorted(r["step"] for r in rows) == [20, 40, 60]
  first = _sha(run / run_dir.launch_config_name(0))
  second = _sha(run / run_dir.launch_config_name(40))
  assert first != second
  by_step = {r["step"]: r for r in run_dir.read_results(str(run))}
  assert {s: by_step[s]["config_sha256"] for s in by_step} == {20: first, 40: first,
                                                               60: second}
  assert all(by_step[s]["batch_size"] == 10 for s in by_step)
  # Again with another eval batch: a new key (it changes standing statistics).
  assert evaluate("--all", "--batch_size=10") == []  # all done under these settings
  assert [r["step"] for r in evaluate("--checkpoint=60", "--batch_size=20")] == [60]


def test_dry_run_changes_nothing_on_disk(tmp_path, trained, data_dir, capsys):
  absent = tmp_path / "absent"
  _train(absent, data_dir, "train.num_steps = 20", dry_run=True)
  assert not absent.exists()
  run = tmp_path / "run"
  shutil.copytree(trained, run)
  assert run_dir.is_done(str(run))
  before = _tree(run)
  # A longer run's dry run would remove TRAINING_DONE in a real launch; not in a dry run.
  _train(run, data_dir, "train.num_steps = 40", dry_run=True)
  assert "dry run passed" in capsys.readouterr().out
  assert _tree(run) == before


# ------------------------------------------------------------------ unreadable vs damaged


def _saved(directory, steps):
  w = tf.Variable(np.arange(100, dtype=np.float32))
  step = tf.Variable(0, dtype=tf.int64)
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(w=w, step=step), directory,
                                       max_to_keep=10)
  for s in steps:
    step.assign(s)
    manager.save(checkpoint_number=s)
  return {s: os.path.join(directory, f"ckpt-{s}") for s in steps}


@pytest.mark.parametrize("error", [tf.errors.UnavailableError,
                                   tf.errors.FailedPreconditionError,
                                   tf.errors.DeadlineExceededError])
def test_unreadable_checkpoint_is_retried_then_stops_without_fallback(
    tmp_path, monkeypatch, error):
  paths = _saved(str(tmp_path / "checkpoints"), (1, 2))
  real_load = tf.train.load_checkpoint
  calls = []

  def flaky(path):
    calls.append(path)
    if path == paths[2]:
      raise error(None, None, "storage hiccup")
    return real_load(path)

  monkeypatch.setattr(tf.train, "load_checkpoint", flaky)
  monkeypatch.setattr(checkpoints, "RETRY_SECONDS", 1.5)
  monkeypatch.setattr(checkpoints, "_FIRST_RETRY_SECONDS", 0.2)
  with pytest.raises(checkpoints.StorageError, match=r"ckpt-2 after \d+ tries.*no sign of "
                     r"damage, so no older checkpoint is used"):
    checkpoints.newest_good_checkpoint(str(tmp_path / "checkpoints"))
  assert calls.count(paths[2]) >= 3  # retried
  assert paths[1] not in calls  # never fell back to the older one

  # A hiccup that passes: the newest is used.
  calls.clear()
  failures = iter([True, True, False])

  def recovers(path):
    if path == paths[2] and next(failures, False):
      raise error(None, None, "storage hiccup")
    return real_load(path)

  monkeypatch.setattr(tf.train, "load_checkpoint", recovers)
  assert checkpoints.newest_good_checkpoint(str(tmp_path / "checkpoints")) == (paths[2], 2)


def test_data_loss_on_the_newest_uses_the_older_one(tmp_path, monkeypatch):
  paths = _saved(str(tmp_path / "checkpoints"), (1, 2))
  real_load = tf.train.load_checkpoint

  def damaged(path):
    if path == paths[2]:
      raise tf.errors.DataLossError(None, None, "checksum mismatch")
    return real_load(path)

  monkeypatch.setattr(tf.train, "load_checkpoint", damaged)
  assert checkpoints.newest_good_checkpoint(str(tmp_path / "checkpoints")) == (paths[1], 1)


def test_training_stops_with_a_message_when_checkpoints_are_unreadable(
    tmp_path, trained, data_dir, monkeypatch, capsys):
  run = tmp_path / "run"
  shutil.copytree(trained, run)
  monkeypatch.setattr(checkpoints, "RETRY_SECONDS", 1.0)
  monkeypatch.setattr(checkpoints, "_FIRST_RETRY_SECONDS", 0.2)

  def unavailable(path):
    raise tf.errors.UnavailableError(None, None, f"{path}: 503 from the bucket")

  monkeypatch.setattr(tf.train, "load_checkpoint", unavailable)
  before = _tree(run)
  with pytest.raises(SystemExit) as info:
    _train(run, data_dir, "train.num_steps = 40")
  assert info.value.code == 2
  err = capsys.readouterr().err
  assert "could not read" in err and "ckpt-20" in err and "no sign of damage" in err, err
  assert _tree(run) == before  # nothing restarted from step 0


# ------------------------------------------------------------------ damaged or changed


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
  """A finished 20-step run (milestone and checkpoint at 20); copy it before changing it."""
  run = tmp_path_factory.mktemp("trained") / "run"
  _train(run, data_dir, "train.num_steps = 20")
  gin.clear_config()
  return run


def _truncate_data(prefix):
  data = prefix + ".data-00000-of-00001"
  with open(data, "r+b") as f:
    f.truncate(os.path.getsize(data) // 2)


def test_damaged_checkpoint_in_eval_is_named_and_skipped_by_all(
    tmp_path, trained, data_dir, classifier_path):
  run = tmp_path / "run"
  shutil.copytree(trained, run)
  _truncate_data(str(run / "milestones" / "ckpt-20"))
  settings = evaluator.EvalSettings(num_samples=20, batch_size=10, data_dir=data_dir,
                                    classifier_path=classifier_path,
                                    cache_dir=str(tmp_path / "cache"))
  ev = evaluator.Evaluator(str(run), settings)
  with pytest.raises(evaluator.DamagedCheckpointError, match=r"milestones/ckpt-20 is "
                     r"damaged \(.*\).*--checkpoint=<another step>"):
    ev.evaluate(checkpoints.find_checkpoint(str(run)))
  assert ev.evaluate_all() == []  # skipped with a warning, nothing scored
  assert run_dir.read_results(str(run)) == []


def test_resume_with_another_model_shape_names_the_checkpoint(
    tmp_path, trained, data_dir, capsys):
  run = tmp_path / "run"
  shutil.copytree(trained, run)
  before = _tree(run)
  with pytest.raises(SystemExit) as info:
    _train(run, data_dir, "train.num_steps = 40", "Generator.ch = 3",
           allow_config_change=True)
  assert info.value.code == 2
  err = capsys.readouterr().err
  assert "checkpoints/ckpt-20 holds networks or optimizers of another shape" in err, err
  assert "operative_config-<step>.gin" in err and "Traceback" not in err
  assert _tree(run) == before


def test_corrupt_checkpoint_state_file_hides_no_checkpoint(tmp_path, trained):
  run = tmp_path / "run"
  shutil.copytree(trained, run)
  with open(run / "checkpoints" / "checkpoint", "w") as f:
    f.write("model_checkpoint_path: {{{ garbage")
  assert [s for s, _ in checkpoints.list_checkpoints(str(run))] == [20]
  assert checkpoints.find_checkpoint(str(run)).endswith("ckpt-20")


def test_garbage_config_is_named(tmp_path, trained):
  run = tmp_path / "run"
  shutil.copytree(trained, run)
  config = run / run_dir.launch_config_name(0)
  config.write_text("Generator.ch = = (((\n")
  with pytest.raises(ValueError, match=r"operative_config-0.gin is not a readable gin config"):
    run_dir.load_config(run_dir.config_for_step(str(run), 20))
