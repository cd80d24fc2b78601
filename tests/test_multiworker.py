"""Training on several processes: real `hamgan-train` workers on 127.0.0.1 (slow).

Each test starts two workers with a two-worker TF_CONFIG (MultiWorkerMirroredStrategy,
one CPU replica each) on a shared model_dir, as two hosts share a bucket, with the
tiny demo_digits model of test_train_cli. Workers read their data with
`train.input_sharding = 'by_batch_row'` (each keeps its rows of every global batch),
which makes the two-process run comparable with a one-process run.
"""
import glob
import json
import os
import signal
import time

import math

import gin
import numpy as np
import pytest
import tensorflow as tf

from hamgan import checkpoints
from hamgan.cli import train as train_cli
from hamgan import run_dir
from hamgan.training import resume
from hamgan.training import trainer as trainer_lib
import multiworker_harness as harness

TINY = ["Generator.ch = 2", "Discriminator.ch = 2", "Generator.z_dim = 8",
        "Generator.context_settings = {'rank': 2, 'steps': 2}",
        "Discriminator.context_settings = {'rank': 2, 'steps': 2}",
        "train.batch_size = 4", "train.input_sharding = 'by_batch_row'",
        "train.ema_start_step = 0"]
# Generous on a loaded 2-core machine: two processes trace the GAN step at once.
START_TIMEOUT = 900


def _args(model_dir, *params):
  return (["--gin_file=demo_digits", f"--model_dir={model_dir}"]
          + [f"--gin_param={p}" for p in TINY + list(params)])


def _log_steps(model_dir):
  path = os.path.join(model_dir, "train_log.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line)["step"] for line in f if line.strip()]


def _saved_steps(model_dir):
  return [s for s, _ in checkpoints.list_checkpoints(model_dir)]


def _float_tensors(path):
  reader = tf.train.load_checkpoint(path)
  return {k: reader.get_tensor(k) for k, d in reader.get_variable_to_dtype_map().items()
          if d.is_floating}


@pytest.fixture(autouse=True)
def _clean_gin():
  yield
  gin.clear_config()


@pytest.mark.slow
def test_two_workers_write_once_and_match_one_process(tmp_path):
  """Acceptance 1 and 2: one writer, whole checkpoints, the one-process weights."""
  two = str(tmp_path / "two")
  scratch = tmp_path / "scratch"
  scratch.mkdir()
  # SGD with momentum: its update is linear in the gradient, so the all-reduce's other
  # summation order stays at float32 rounding. (Adam's first steps are about
  # lr * sign(gradient): an element whose gradient is near 0 may then move by 2 * lr
  # differently, 1.99e-3 after 20 steps here, which says nothing about the trainer.)
  params = ["train.num_steps = 20", "train.steps_per_loop = 5", "train.log_every = 5",
            "train.summary_every = 10", "train.checkpoint_every = 10",
            "train.optimizer_fn = @sgd_momentum"]
  with harness.Cluster(tmp_path / "logs") as cluster:
    cluster.start(_args(two, *params), env={"TMPDIR": str(scratch)})
    # Meanwhile, the same run in this process on one device (the default strategy).
    train_cli.parse_gin(["demo_digits"], TINY + params)
    one = trainer_lib.Trainer(str(tmp_path / "one"), trainer_lib.TrainConfig())
    one.train()
    codes = cluster.wait(START_TIMEOUT)
    assert codes == {0: 0, 1: 0}, cluster.tails()

  # Each step logged once, by the chief; one event file; one config per launch.
  assert _log_steps(two) == [5, 10, 15, 20]
  assert len(os.listdir(os.path.join(two, "summaries"))) == 1
  assert sorted(os.listdir(two)) == sorted([
      "checkpoints", "milestones", "summaries", "samples", "train_log.jsonl",
      run_dir.DONE_FILE, run_dir.OPERATIVE_CONFIG, run_dir.launch_config_name(0)])
  assert [s for s, _ in checkpoints.list_milestones(two)] == [10, 20]
  assert sorted(os.listdir(os.path.join(two, "samples"))) == ["step_10.png", "step_20.png"]
  # Nothing of the non-chief: no files of its own in model_dir, its scratch copy removed.
  assert sorted(os.listdir(os.path.join(two, "checkpoints"))) == [
      "checkpoint", "ckpt-10.data-00000-of-00001", "ckpt-10.index",
      "ckpt-20.data-00000-of-00001", "ckpt-20.index"]
  assert os.listdir(scratch) == [], os.listdir(scratch)
  for step, path in checkpoints.list_checkpoints(two):
    assert checkpoints.checkpoint_problem(path) is None, (step, path)

  # The two-process weights are the one-process weights to float32 rounding (measured
  # 1.5e-7 at most; another seed, data order or init gives differences of the weights'
  # own size), and all differences together are a tiny part of what 10 steps moved.
  got = _float_tensors(os.path.join(two, "checkpoints", "ckpt-20"))
  one = os.path.join(str(tmp_path / "one"), "checkpoints")
  want = _float_tensors(os.path.join(one, "ckpt-20"))
  earlier = _float_tensors(os.path.join(one, "ckpt-10"))
  assert sorted(got) == sorted(want)
  weights = [k for k in got if "optimizer" not in k]
  worst = max(float(np.max(np.abs(got[k] - want[k]))) for k in weights)
  for name in weights:
    np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-5, err_msg=name)
  apart = np.sqrt(sum(np.sum((got[k] - want[k]) ** 2) for k in weights))
  moved = np.sqrt(sum(np.sum((want[k] - earlier[k]) ** 2) for k in weights))
  assert apart < 1e-4 * moved, (apart, moved)
  print(f"two vs one process: largest difference {worst:.2e}; all weights apart "
        f"{apart:.3e} vs moved {moved:.3e} in the last 10 steps")


def _wait_for_step(cluster, model_dir, step, timeout):
  cluster.wait_for(lambda: any(s >= step for s in _log_steps(model_dir)), timeout,
                   f"step {step} in {model_dir}/train_log.jsonl")


@pytest.mark.slow
def test_sigterm_to_the_non_chief_saves_one_step_everywhere_and_resumes_there(tmp_path):
  """Acceptance 3."""
  run = str(tmp_path / "run")
  params = ["train.num_steps = 100000", "train.log_every = 1", "train.summary_every = 100000",
            "train.checkpoint_every = 100000", "train.max_loop_seconds = 2.0"]
  with harness.Cluster(tmp_path / "logs") as cluster:
    cluster.start(_args(run, *params))
    _wait_for_step(cluster, run, 3, START_TIMEOUT)
    sent = time.time()
    cluster.send(1, signal.SIGTERM)
    codes = cluster.wait(60)
    assert codes == {0: 0, 1: 0}, cluster.tails()
    took = max(cluster.ended_at.values()) - sent
  saved = _saved_steps(run)
  assert len(saved) == 1, saved
  stopped_at = saved[0]
  for i in range(2):
    assert f"stopped by SIGTERM at step {stopped_at}" in cluster.log(i) or (
        f"agreed to stop at step {stopped_at}" in cluster.log(i)), cluster.tails()
  # 2 s loops here: the bound of 10 s + one save holds with room for a loaded machine.
  assert took < 2.0 + 30, took
  assert _log_steps(run)[-1] == stopped_at

  with harness.Cluster(tmp_path / "logs2") as cluster:
    cluster.start(_args(run, *params[1:], f"train.num_steps = {stopped_at + 3}"))
    codes = cluster.wait(START_TIMEOUT)
    assert codes == {0: 0, 1: 0}, cluster.tails()
    assert f"starting at step {stopped_at}" in cluster.log(0)
  steps = _log_steps(run)
  assert steps == sorted(set(steps)), steps  # no step logged twice
  assert steps[-3:] == [stopped_at + 1, stopped_at + 2, stopped_at + 3]
  print(f"SIGTERM to both workers exited: {took:.1f} s; saved step {stopped_at}")


@pytest.mark.slow
def test_kill_9_of_a_worker_stops_the_other_with_a_message_and_a_restart_resumes(tmp_path):
  """Acceptance 4."""
  run = str(tmp_path / "run")
  params = ["train.num_steps = 100000", "train.log_every = 1", "train.summary_every = 100000",
            "train.checkpoint_every = 2", "train.max_loop_seconds = 2.0",
            "train.worker_timeout_secs = 100"]
  with harness.Cluster(tmp_path / "logs") as cluster:
    cluster.start(_args(run, *params))
    cluster.wait_for(lambda: len(_saved_steps(run)) >= 2, START_TIMEOUT, "two checkpoints")
    killed = time.time()
    cluster.send(1, signal.SIGKILL)
    codes = cluster.wait(120, indices=[0])
    assert 0 in codes and codes[0] not in (0, None), cluster.tails()
    took = cluster.ended_at[0] - killed
    assert took < 120
    assert "restart every worker" in cluster.log(0), cluster.tails()
  path, last_good = checkpoints.newest_good_checkpoint(checkpoints.checkpoint_dir(run))
  assert path is not None and last_good >= 2

  with harness.Cluster(tmp_path / "logs2") as cluster:
    cluster.start(_args(run, *params[1:], f"train.num_steps = {last_good + 2}"))
    codes = cluster.wait(START_TIMEOUT)
    assert codes == {0: 0, 1: 0}, cluster.tails()
    assert f"starting at step {last_good}" in cluster.log(0)
  assert max(_saved_steps(run)) == last_good + 2
  assert not glob.glob(os.path.join(run, "checkpoints", "*temp*"))
  print(f"kill -9 of worker 1: worker 0 exited after {took:.1f} s")


def _first_launch_with_checkpoints_at_2_and_4(run, params):
  """checkpoints/ckpt-2 and ckpt-4 (and their milestones) of the tiny model, written by
  a Trainer in this process without training (no step to trace: seconds, not minutes);
  ckpt-4's weights differ from ckpt-2's. Returns the float tensors of ckpt-2."""
  train_cli.parse_gin(["demo_digits"], TINY + params)
  trainer = trainer_lib.Trainer(run, trainer_lib.TrainConfig())
  run_dir.write_launch_config(run, 0, gin.operative_config_str())
  trainer.step.assign(2)
  trainer.save(2, milestone=True)
  for model in (trainer.generator, trainer.discriminator, trainer.ema_generator):
    for v in model.trainable_variables:
      v.assign_add(tf.fill(v.shape, 0.01))
  trainer.step.assign(4)
  trainer.save(4, milestone=True)
  gin.clear_config()
  assert _saved_steps(run) == [2, 4]
  assert [s for s, _ in checkpoints.list_milestones(run)] == [2, 4]
  return _float_tensors(os.path.join(run, "checkpoints", "ckpt-2"))


@pytest.mark.slow
def test_only_one_worker_sees_damage_and_both_restore_the_same_step(tmp_path):
  """Acceptance: two real workers where only worker 1 sees the newest checkpoint as
  damaged (a test double of checkpoint_problem in its process only): both restore the
  older one and train on to the end holding the same state."""
  run = str(tmp_path / "run")
  params = ["train.steps_per_loop = 2", "train.log_every = 2",
            "train.summary_every = 100000", "train.checkpoint_every = 2",
            "train.worker_timeout_secs = 60", "train.num_steps = 6"]
  want = _first_launch_with_checkpoints_at_2_and_4(run, params)

  report = tmp_path / "report"
  with harness.Cluster(tmp_path / "logs") as cluster:
    cluster.start(_args(run, *params), env={harness.REPORT_ENV: str(report)},
                  worker_env={1: {harness.DAMAGED_ENV: "ckpt-4"}})
    codes = cluster.wait(START_TIMEOUT)
    assert codes == {0: 0, 1: 0}, cluster.tails()
    logs = [cluster.log(0), cluster.log(1)]
  ckpt_2 = os.path.join(run, "checkpoints", "ckpt-2")
  for task in range(2):
    with open(report / f"restore-{task}.json") as f:
      assert json.load(f) == {"path": ckpt_2, "step": 2}, (task, logs[task][-3000:])
    assert "workers agreed on step 2" in logs[task], logs[task][-3000:]
    assert "starting at step 2" in logs[task], logs[task][-3000:]
    # What each worker holds after its restore is ckpt-2, value for value.
    restored = _float_tensors(str(report / str(task) / "restored"))
    assert sorted(restored) == sorted(want)
    for name in want:
      np.testing.assert_array_equal(restored[name], want[name], err_msg=(task, name))
  # Only worker 1 saw damage; worker 0 read ckpt-4 whole and still went back to 2.
  assert "ckpt-4 is damaged (DataLossError: injected damage" in logs[1], logs[1][-3000:]
  assert "is damaged" not in logs[0], logs[0][-3000:]

  # Trained on from step 2 to the end, each step logged once; after every save of
  # this launch both workers hold the same state, the one the chief saved.
  assert _log_steps(run) == [4, 6]
  assert _saved_steps(run) == [2, 4, 6]
  assert sorted(os.listdir(run)) == sorted([
      "checkpoints", "milestones", "samples", "summaries", "train_log.jsonl",
      run_dir.DONE_FILE, run_dir.OPERATIVE_CONFIG, run_dir.launch_config_name(0),
      run_dir.launch_config_name(2)])
  for step in (4, 6):
    chief = _float_tensors(os.path.join(run, "checkpoints", f"ckpt-{step}"))
    for task in range(2):
      copy = _float_tensors(str(report / str(task) / f"ckpt-{step}"))
      assert sorted(copy) == sorted(chief)
      for name in chief:
        np.testing.assert_array_equal(copy[name], chief[name], err_msg=(step, task, name))
    assert checkpoints.checkpoint_problem(
        os.path.join(run, "checkpoints", f"ckpt-{step}")) is None


class _FakeAgreement:
  """Answers `agree` with the given matrices in turn and records what it was asked."""

  def __init__(self, *answers):
    self.num_tasks = 2
    self.answers = [np.asarray(a, np.float64) for a in answers]
    self.asked = []

  def agree(self, values, timeout_s=None):
    del timeout_s
    self.asked.append(list(values))
    return self.answers[len(self.asked) - 1]


def _two_checkpoints(tmp_path):
  directory = str(tmp_path / "checkpoints")
  step = tf.Variable(0, dtype=tf.int64)
  weight = tf.Variable([1.0, 2.0])
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(step=step, w=weight),
                                       directory, max_to_keep=5)
  for n in (2, 4):
    step.assign(n)
    manager.save(checkpoint_number=n)
  return directory


def test_agreed_checkpoint_stops_every_task_when_one_cannot_read(tmp_path, monkeypatch):
  """A task that cannot read the checkpoints still takes part in the agreement (so
  the others do not hang) and raises; a task that read them fine raises too."""
  directory = _two_checkpoints(tmp_path)
  # Task 0 reads ckpt-4 whole; the other task could not read (NaN in its row).
  reader = _FakeAgreement([[4.0], [math.nan]])
  with pytest.raises(checkpoints.StorageError, match="another worker could not read"):
    resume.agreed_checkpoint(directory, reader)
  assert reader.asked == [[4.0]]

  # Task 1: its storage fails (after retries); it sends NaN and stops with its error.
  def unreadable(path, *args, **kwargs):
    raise checkpoints.StorageError(f"could not read {path} (test double)")
  monkeypatch.setattr(checkpoints, "checkpoint_problem", unreadable)
  failing = _FakeAgreement([[4.0], [math.nan]])
  with pytest.raises(checkpoints.StorageError, match="test double"):
    resume.agreed_checkpoint(directory, failing)
  assert len(failing.asked) == 1 and math.isnan(failing.asked[0][0])


def test_agreed_checkpoint_converges_on_the_step_every_task_reads(tmp_path, monkeypatch):
  """Tasks that disagree (4 and 2: the other sees ckpt-4 damaged) go to the older
  step, and each restores that step's checkpoint."""
  directory = _two_checkpoints(tmp_path)
  ckpt = {n: os.path.join(directory, f"ckpt-{n}") for n in (2, 4)}
  sees_all = _FakeAgreement([[4.0], [2.0]], [[2.0], [2.0]])
  assert resume.agreed_checkpoint(directory, sees_all) == (ckpt[2], 2)
  assert sees_all.asked == [[4.0], [2.0]]

  real_problem = checkpoints.checkpoint_problem
  monkeypatch.setattr(checkpoints, "checkpoint_problem",
                      lambda p, *a, **k: "damaged (test double)" if p == ckpt[4]
                      else real_problem(p, *a, **k))
  sees_damage = _FakeAgreement([[4.0], [2.0]], [[2.0], [2.0]])
  assert resume.agreed_checkpoint(directory, sees_damage) == (ckpt[2], 2)
  assert sees_damage.asked == [[2.0], [2.0]]
  # Everyone agreeing at once takes one round.
  agreeing = _FakeAgreement([[4.0], [4.0]])
  monkeypatch.setattr(checkpoints, "checkpoint_problem", real_problem)
  assert resume.agreed_checkpoint(directory, agreeing) == (ckpt[4], 4)
  assert agreeing.asked == [[4.0]]
