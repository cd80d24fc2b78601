"""Fault tolerance: kills, SIGTERM, NaN, damaged checkpoints, the watcher, bad configs.

The subprocess tests (slow) run the real `python -m hamgan.cli.train` on a tiny
model and interrupt it; they print a `FAULT` line per event, which is what
docs/reliability.md tabulates.
"""
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

from absl import flags
from absl.testing import flagsaver
import gin
import numpy as np
import pytest
import tensorflow as tf

import glob

from hamgan import checkpoints
from hamgan import models
from hamgan import run_dir
from hamgan.cli import train as train_cli
from hamgan.evaluation import evaluator
from hamgan.training import fault_tolerance as ft
from hamgan.training import trainer as trainer_lib
from hamgan.training.hooks import Action, Hook
import fault_injection

FLAGS = flags.FLAGS
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 3

# demo_digits shrunk to a few milliseconds a step (no context module, ch 2).
TINY = ["Generator.context = 'none'", "Discriminator.context = 'none'",
        "Generator.ch = 2", "Discriminator.ch = 2", "Generator.z_dim = 8",
        "train.batch_size = 4", "train.steps_per_loop = 2", "train.log_every = 2",
        "train.summary_every = 1000", "train.checkpoint_every = 2",
        "train.max_checkpoints = 3"]


@pytest.fixture(autouse=True)
def _clean_gin():
  yield
  gin.clear_config()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """One tfds directory for the digits data set, prepared on first use."""
  return str(tmp_path_factory.mktemp("tfds"))


# ------------------------------------------------------------------ helpers


def _read_all(path):
  """Every tensor of a checkpoint, read back independently of the code under test."""
  reader = tf.train.load_checkpoint(path)
  return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}


def _all_finite(path):
  return all(np.all(np.isfinite(v)) for v in _read_all(path).values()
             if np.issubdtype(np.asarray(v).dtype, np.floating))


def _listed(model_dir):
  """The checkpoint prefixes the `checkpoint` state file names, oldest first."""
  state = tf.train.get_checkpoint_state(os.path.join(model_dir, "checkpoints"))
  return list(state.all_model_checkpoint_paths) if state else []


def _step_of(path):
  return int(_read_all(path)[checkpoints.STEP_KEY])


def _data_file(path):
  return path + ".data-00000-of-00001"


def _truncate(path):
  data = _data_file(path)
  size = os.path.getsize(data)
  with open(data, "r+b") as f:
    f.truncate(size // 2)


def _model_fns():
  def generator_fn(name):
    return models.Generator(image_size=32, num_classes=NUM_CLASSES, ch=2, z_dim=8,
                            context="none", name=name)

  def discriminator_fn(name):
    return models.Discriminator(image_size=32, num_classes=NUM_CLASSES, ch=2,
                                context="none", name=name)
  return generator_fn, discriminator_fn


def _dataset_fn(input_context, per_replica_batch):
  del input_context
  rng = np.random.RandomState(7)
  images = rng.uniform(-1, 1, (32, 32, 32, 3)).astype(np.float32)
  labels = rng.randint(0, NUM_CLASSES, 32).astype(np.int32)
  ds = tf.data.Dataset.from_tensor_slices((images, labels)).repeat()
  return ds.batch(per_replica_batch, drop_remainder=True)


def _trainer(model_dir, **overrides):
  settings = dict(batch_size=4, num_steps=4, steps_per_loop=2, log_every=1000,
                  summary_every=1000, checkpoint_every=2, ema_start_step=0, ema_decay=0.5,
                  seed=3, g_lr=1e-3, d_lr=2e-3)
  settings.update(overrides)
  g_fn, d_fn = _model_fns()
  return trainer_lib.Trainer(str(model_dir), trainer_lib.TrainConfig(**settings),
                             generator_fn=g_fn, discriminator_fn=d_fn,
                             dataset_fn=_dataset_fn)


def _main(**flag_values):
  if not FLAGS.is_parsed():
    FLAGS(["hamgan-train"])
  with flagsaver.flagsaver(**flag_values):
    train_cli.main(["hamgan-train"])


# ------------------------------------------------------------------ settings, signals


@pytest.mark.parametrize("kwargs,fragment", [
    ({"max_rollbacks": -1}, "max_rollbacks=-1"),
    ({"max_rollbacks": 1.5}, "max_rollbacks=1.5"),
    ({"rollback_lr_factor": 1.0}, "rollback_lr_factor=1.0 is outside (0, 1)"),
    ({"rollback_lr_factor": 0}, "rollback_lr_factor=0 is outside (0, 1)"),
])
def test_settings_rejected_with_the_fix(kwargs, fragment):
  with pytest.raises(ValueError, match=re.escape(fragment)):
    ft.FaultToleranceConfig(**kwargs)


def test_make_hooks_order_guard_first():
  hooks = ft.make_hooks(ft.FaultToleranceConfig())
  assert [type(h) for h in hooks] == [ft.DivergenceGuard, ft.SignalHook]
  assert [type(h) for h in ft.make_hooks(ft.FaultToleranceConfig(handle_signals=False))] == [
      ft.DivergenceGuard]


def test_signal_hook_flags_the_signal_and_restores_handlers():
  before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
  with ft.SignalHook() as hook:
    assert hook.after_loop(None, 3, {}) is Action.CONTINUE
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)  # the handler runs at the next bytecode boundary
    assert hook.received == signal.SIGTERM and hook.signal_name == "SIGTERM"
    assert hook.after_loop(None, 3, {}) is Action.STOP
    os.kill(os.getpid(), signal.SIGTERM)  # a second one gives the old handler back
    time.sleep(0.05)
    assert signal.getsignal(signal.SIGTERM) is before[signal.SIGTERM]
    assert hook.received == signal.SIGTERM
  assert {s: signal.getsignal(s) for s in before} == before


# ------------------------------------------------------------------ checkpoint fallback


def test_newest_good_checkpoint_skips_damaged_ones_and_deletes_nothing(tmp_path, caplog):
  w = tf.Variable(np.arange(1000, dtype=np.float32))
  step = tf.Variable(0, dtype=tf.int64)
  directory = str(tmp_path / "checkpoints")
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(w=w, step=step), directory,
                                       max_to_keep=10)
  for s in (1, 2, 3, 4):
    step.assign(s)
    manager.save(checkpoint_number=s)
  paths = {s: os.path.join(directory, f"ckpt-{s}") for s in (1, 2, 3, 4)}
  assert checkpoints.newest_good_checkpoint(directory) == (paths[4], 4)

  _truncate(paths[4])  # a half-written data file
  with caplog.at_level(logging.WARNING):
    assert checkpoints.newest_good_checkpoint(directory) == (paths[3], 3)
  text = caplog.text
  assert f"{paths[4]} is damaged" in text and "left on disk" in text
  assert f"using checkpoint {paths[3]} instead of the newer, damaged ckpt-4" in text

  os.remove(paths[3] + ".index")  # a missing index
  os.remove(_data_file(paths[2]))  # a missing shard
  assert checkpoints.newest_good_checkpoint(directory) == (paths[1], 1)
  assert checkpoints.checkpoint_problem(paths[2]) is not None

  w.assign(tf.fill([1000], np.nan))  # a non-finite checkpoint is never used either
  step.assign(5)
  manager.save(checkpoint_number=5)
  assert "w/.ATTRIBUTES/VARIABLE_VALUE holds NaN/Inf" in checkpoints.checkpoint_problem(
      os.path.join(directory, "ckpt-5"))
  assert checkpoints.newest_good_checkpoint(directory) == (paths[1], 1)

  # A damaged `checkpoint` state file: the ckpt-N.index files are looked at instead.
  with open(os.path.join(directory, "checkpoint"), "w") as f:
    f.write("model_checkpoint_path: {{{ garbage")
  assert checkpoints.newest_good_checkpoint(directory) == (paths[1], 1)
  # Nothing was deleted.
  assert os.path.exists(_data_file(paths[4])) and os.path.exists(_data_file(paths[3]))
  for s in (1, 3, 4):
    os.remove(_data_file(paths[s]))
  os.remove(os.path.join(directory, "ckpt-5.index"))
  assert checkpoints.newest_good_checkpoint(directory) == (None, 0)


def test_truncated_latest_checkpoint_restart_uses_the_one_before(tmp_path, caplog):
  """Acceptance 4, in process: the restart logs which checkpoint it used."""
  run = tmp_path / "run"
  first = _trainer(run, num_steps=4)
  first.train()
  good = _read_all(str(run / "checkpoints" / "ckpt-2"))
  assert (run / run_dir.DONE_FILE).exists()
  _truncate(str(run / "checkpoints" / "ckpt-4"))

  with caplog.at_level(logging.INFO, logger="absl"):  # absl's level, whatever ran before
    second = _trainer(run, num_steps=6)  # a longer run: the old TRAINING_DONE is stale
  ckpt2 = str(run / "checkpoints" / "ckpt-2")
  assert f"using checkpoint {ckpt2} instead of the newer, damaged ckpt-4" in caplog.text
  assert f"Restored {ckpt2} (step 2)" in caplog.text
  assert int(second.step.numpy()) == 2
  # The restored weights are ckpt-2's: G's values equal the checkpoint's, as a multiset.
  stored = sorted(v.tobytes() for k, v in good.items() if k.startswith("generator/")
                  and "OPTIMIZER_SLOT" not in k and k.endswith("VARIABLE_VALUE"))
  assert stored == sorted(v.numpy().tobytes() for v in second.generator.variables)
  assert not (run / run_dir.DONE_FILE).exists()

  second.train()
  assert json.loads((run / run_dir.DONE_FILE).read_text())["step"] == 6
  for path in _listed(str(run)):  # ckpt-4 was written again, whole
    assert _all_finite(path)
  assert [_step_of(p) for p in _listed(str(run))] == [2, 4, 6]


# ------------------------------------------------------------------ divergence


class _NaNWeightOnce(Hook):
  """Test fault: after the loop that reaches `step`, one D weight becomes NaN, once."""

  def __init__(self, step):
    self.step, self.done = step, False

  def after_loop(self, trainer, step, metrics):
    if step >= self.step and not self.done:
      self.done = True
      v = trainer.discriminator.trainable_variables[0]
      v.assign(tf.fill(tf.shape(v), np.float32("nan")))
    return Action.CONTINUE


def test_guard_vetoes_non_finite_saves_and_rolls_back_with_lower_rates(tmp_path, caplog):
  run = tmp_path / "run"
  trainer = _trainer(run, num_steps=10, steps_per_loop=1)
  trainer.train(num_steps=2)

  # The veto: a non-finite weight is named and nothing is saved.
  guard = ft.DivergenceGuard()
  ok = {"d_loss": 1.0, "g_loss": 0.5, "d_real": 0.1, "d_fake": -0.1}
  assert guard.before_save(trainer, 2, ok) is Action.SAVE
  assert guard.after_loop(trainer, 2, ok) is Action.CONTINUE
  v = trainer.discriminator.trainable_variables[0]
  kept = v.numpy()
  v.assign(tf.fill(tf.shape(v), np.float32("inf")))
  with pytest.raises(ft.DivergenceError) as info:
    guard.before_save(trainer, 4, ok)
  message = str(info.value)
  assert "diverged at step 4" in message and f"discriminator:{v.name} holds NaN/Inf" in message
  assert "ckpt-2 (step 2) is kept" in message and "fault_tolerance.max_rollbacks" in message
  with pytest.raises(ft.DivergenceError, match=r"step 5: g_loss=nan"):  # losses come first
    guard.after_loop(trainer, 5, dict(ok, g_loss=float("nan")))
  assert [_step_of(p) for p in _listed(str(run))] == [2]
  v.assign(kept)

  # The rollback: poisoned after step 5, the loop to step 6 diverges, ckpt-4 comes back.
  guard = ft.DivergenceGuard(max_rollbacks=1, lr_factor=0.5)
  with caplog.at_level(logging.WARNING):
    trainer.train(hooks=[guard, _NaNWeightOnce(5)])
  assert len(guard.rollbacks) == 1
  detected, restored, problem = guard.rollbacks[0]
  assert (detected, restored) == (6, 4) and "nan" in problem.lower()
  assert "rollback 1 of 1: restored" in caplog.text
  assert int(trainer.step.numpy()) == 10
  np.testing.assert_allclose(trainer.g_optimizer.learning_rate.numpy(), 5e-4, rtol=1e-6)
  np.testing.assert_allclose(trainer.d_optimizer.learning_rate.numpy(), 1e-3, rtol=1e-6)
  listed = _listed(str(run))
  assert [_step_of(p) for p in listed] == [2, 4, 6, 8, 10]
  assert all(_all_finite(p) for p in listed)
  latest = _read_all(listed[-1])
  lr_key = next(k for k in latest if k.startswith("g_optimizer/") and "learning_rate" in k)
  np.testing.assert_allclose(latest[lr_key], 5e-4, rtol=1e-6)  # a restart keeps the lower rate

  # With the rollback spent, the next divergence stops the run.
  with pytest.raises(ft.DivergenceError, match=r"at step 12 after 1 rollback\(s\)"):
    trainer.train(num_steps=14, hooks=[guard, _NaNWeightOnce(11)])
  assert _step_of(_listed(str(run))[-1]) == 10


def test_injected_nan_stops_the_run_and_the_latest_checkpoint_is_finite(
    tmp_path, capsys, data_dir, monkeypatch):
  """Acceptance 3, through hamgan-train, with NaN images from step 4 on."""
  run = tmp_path / "run"
  make_hooks = ft.make_hooks
  monkeypatch.setattr(ft, "make_hooks",
                      lambda config: make_hooks(config) + [fault_injection.PoisonData(4)])
  with pytest.raises(SystemExit) as info:
    _main(gin_file=["demo_digits"], model_dir=str(run),
          gin_param=TINY + [f"train.data_dir = '{data_dir}'", "train.num_steps = 20"])
  assert info.value.code == 1
  err = capsys.readouterr().err
  # NaN images: under oneDNN a fused conv+ReLU maps NaN to 0, so the losses may stay
  # finite while the gradients are NaN; the weight check catches it in the same loop.
  assert re.search(r"training diverged at step 6: (d_loss=nan|variable \S+ holds NaN/Inf)",
                   err), err
  assert "ckpt-4 (step 4) is kept" in err
  listed = _listed(str(run))
  assert [_step_of(p) for p in listed] == [2, 4]
  assert all(_all_finite(p) for p in listed)
  assert not (run / run_dir.DONE_FILE).exists()


# ------------------------------------------------------------------ the watcher


def test_watcher_skips_deleted_and_damaged_checkpoints_and_waits_for_restarts(
    tmp_path, caplog):
  model_dir = str(tmp_path / "run")
  directory = os.path.join(model_dir, "checkpoints")
  w, step = tf.Variable(tf.zeros([64])), tf.Variable(0, dtype=tf.int64)
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(w=w, step=step), directory,
                                       max_to_keep=2)

  def save(s):
    step.assign(s)
    manager.save(checkpoint_number=s)

  save(2)
  save(4)
  evaluated, writing = [], threading.Lock()

  def fake_evaluate(path):
    with writing:  # never read a checkpoint the "trainer" is still damaging
      pass
    evaluated.append(_step_of(path))  # reads every tensor, as a restore would
    if len(evaluated) == 1:
      save(6)
      save(8)  # retention (max_to_keep=2) deletes ckpt-4 before the watcher gets to it
    return {"step": evaluated[-1]}

  watcher = evaluator.Evaluator.__new__(evaluator.Evaluator)  # no classifier needed
  watcher.model_dir = model_dir
  watcher.evaluate = fake_evaluate

  def trainer_restarts():
    while 8 not in evaluated:
      time.sleep(0.05)
    time.sleep(0.3)  # the "job" is down for a while, then a new one saves and damages
    with writing:
      save(10)
      _truncate(os.path.join(directory, "ckpt-10"))
    time.sleep(0.3)
    save(12)
    time.sleep(0.3)
    with open(os.path.join(model_dir, "TRAINING_DONE"), "w") as f:
      f.write("{}")

  thread = threading.Thread(target=trainer_restarts)
  thread.start()
  with caplog.at_level(logging.WARNING):
    rows = watcher.watch(poll_s=0.05, timeout_s=60)
  thread.join()
  assert [r["step"] for r in rows] == [2, 6, 8, 12]
  assert "ckpt-4 vanished before evaluation" in caplog.text
  assert "ckpt-10 is damaged" in caplog.text


# ------------------------------------------------------------------ config validation


@pytest.mark.parametrize("params,fragments", [
    (["train.batch_size = 'four'"], ["train: batch_size='four' is not a positive integer",
                                     "pass the global batch"]),
    (["train.num_steps = 2.5"], ["train: num_steps=2.5 is not a positive integer"]),
    (["fault_tolerance.max_rollbacks = 1.5"], ["fault_tolerance.max_rollbacks=1.5",
                                                "pass 0 to stop"]),
    (["fault_tolerance.rollback_lr_factor = 'half'"], ["rollback_lr_factor='half'"]),
    (["fault_tolernce.max_rollbacks = 1"], ["No configurable matching 'fault_tolernce'"]),
    (["Generator.context = 'ham_nmf'", "Generator.context_resolution = 12"],
     ["context_resolution=12 is never reached", "set context_resolution to one of"]),
    (["Discriminator.context = 'sagan'", "Discriminator.context_resolution = 64"],
     ["context_resolution=64 is never reached", "[8, 16]"]),
    (["IMAGE_SIZE = 64"], ["image_size=64 is larger than data set 'digits' can give",
                           "use image_size<=32"]),
])
def test_bad_config_fails_before_any_device_work(tmp_path, monkeypatch, data_dir, params,
                                                 fragments):
  def no_weights(self):
    raise AssertionError("weights were being built: the check came too late")
  monkeypatch.setattr(trainer_lib.Trainer, "_build_state", no_weights)
  with pytest.raises(train_cli.SetupError) as info:
    train_cli.build_trainer(["demo_digits"],
                            TINY + [f"train.data_dir = '{data_dir}'"] + params,
                            str(tmp_path / "run"))
  for fragment in fragments:
    assert fragment in str(info.value), str(info.value)
  assert not (tmp_path / "run" / "checkpoints").exists()


# ------------------------------------------------------------------ real processes


def _cli(model_dir, data_dir, *params):
  args = [sys.executable, "-m", "hamgan.cli.train", "--gin_file=demo_digits",
          f"--model_dir={model_dir}"]
  for p in TINY + [f"train.data_dir = '{data_dir}'"] + list(params):
    args.append(f"--gin_param={p}")
  return args


class _Run:
  """A hamgan-train subprocess whose stderr goes to a file we can poll."""

  def __init__(self, args, log_path):
    self.log_path = log_path
    self._log = open(log_path, "w")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    self.proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE,
                                 stderr=self._log, text=True, env=env)

  def text(self):
    with open(self.log_path) as f:
      return f.read()

  def wait_for(self, pattern, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
      match = re.search(pattern, self.text())
      if match:
        return match
      if self.proc.poll() is not None:
        raise AssertionError(f"exited {self.proc.returncode} before {pattern!r}:\n"
                             + self.text()[-3000:])
      time.sleep(0.01)
    raise AssertionError(f"no {pattern!r} after {timeout} s:\n" + self.text()[-3000:])

  def finish(self, timeout=300):
    out, _ = self.proc.communicate(timeout=timeout)
    self._log.close()
    return self.proc.returncode, out, self.text()


def _start_step(text):
  return int(re.search(r"starting at step (\d+)", text).group(1))


def _check_every_listed_checkpoint_reads(model_dir):
  """Every listed checkpoint with files reads back whole; returns the steps present.

  CheckpointManager.save records the new list, deletes the checkpoints that retention
  drops, then records the list again: a kill between the last two leaves an *older* entry
  whose files are all gone (retention caught mid-sweep, not a damaged checkpoint; restore
  skips it). The newest entry must always be whole.
  """
  listed = _listed(model_dir)
  present = [p for p in listed if tf.io.gfile.glob(p + ".*")]
  if listed:  # (a kill during start-up leaves none)
    assert present and present[-1] == listed[-1], (listed, present)
  for path in present:
    _read_all(path)  # raises if any tensor cannot be read back
  return [_step_of(p) for p in present]


def _temp_dirs(checkpoint_dir):
  """ckpt-N_temp* folders that a kill during a save leaves behind."""
  return sorted(glob.glob(os.path.join(checkpoint_dir, "*_temp*")))


@pytest.mark.slow
def test_kill_9_at_five_points_always_resumes_from_the_last_complete_checkpoint(
    tmp_path, data_dir):
  """Acceptance 1: SIGKILL at different moments; every restart resumes and finishes."""
  rng = random.Random(0)
  model_dir = str(tmp_path / "run")
  target = 60
  args = _cli(model_dir, data_dir, f"train.num_steps = {target}",
              "train.steps_per_loop = 1", "train.log_every = 1")  # every step is logged
  checkpoint_dir = os.path.join(model_dir, "checkpoints")

  def kill_when_a_save_is_in_flight(run):
    # A save writes ckpt-N_temp/ first, then renames; SIGKILL as soon as one shows.
    run.wait_for(r"step \d+/")
    deadline = time.time() + 60
    while time.time() < deadline and not _temp_dirs(checkpoint_dir):
      time.sleep(0.001)
    run.proc.kill()

  kill_points = [
      ("during start-up (before the first step)",
       lambda run: (time.sleep(rng.uniform(1.0, 3.0)), run.proc.kill())),
      ("right after a checkpoint was logged",
       lambda run: (run.wait_for(r"Saved checkpoint"), run.proc.kill())),
      ("at a random moment of training",
       lambda run: (run.wait_for(r"step \d+/"), time.sleep(rng.uniform(0.0, 0.5)),
                    run.proc.kill())),
      ("while a checkpoint write is in flight", kill_when_a_save_is_in_flight),
      ("at a random moment, then the newest data file truncated (a partial write)",
       lambda run: (run.wait_for(r"Saved checkpoint .*ckpt-\d+"),
                    time.sleep(rng.uniform(0.0, 0.3)), run.proc.kill())),
  ]
  expected_start = 0
  for i, (where, kill) in enumerate(kill_points):
    run = _Run(args, str(tmp_path / f"log_{i}.txt"))
    kill(run)
    code, _, text = run.finish()
    assert code == -signal.SIGKILL, (where, code, text[-2000:])
    if "starting at step" in text:
      assert _start_step(text) == expected_start, (where, text[-2000:])
    steps = _check_every_listed_checkpoint_reads(model_dir)  # the pointer names whole files
    temp = _temp_dirs(checkpoint_dir)
    reached = max([int(s) for s in re.findall(r"step (\d+)/", text)] or [0])
    expected_start = steps[-1] if steps else 0
    if i == len(kill_points) - 1:
      truncated = _listed(model_dir)[-1]
      _truncate(truncated)
      expected_start = steps[-2]
    print(f"FAULT kill -9 {where}: last step run {reached}, newest complete checkpoint "
          f"{expected_start}, leftover temp dirs {len(temp)}, lost {reached - expected_start}"
          " steps")
    assert expected_start <= reached

  final = _Run(args, str(tmp_path / "log_final.txt"))
  code, out, text = final.finish()
  assert code == 0, text[-3000:]
  assert _start_step(text) == expected_start
  assert f"instead of the newer, damaged {os.path.basename(truncated)}" in text  # it says which
  assert json.loads(open(os.path.join(model_dir, "TRAINING_DONE")).read())["step"] == target
  assert _check_every_listed_checkpoint_reads(model_dir)[-1] == target
  assert all(_all_finite(p) for p in _listed(model_dir) if tf.io.gfile.glob(p + ".*"))
  assert "done" in out


@pytest.mark.slow
def test_sigterm_saves_the_current_step_exits_0_and_the_restart_continues(
    tmp_path, data_dir):
  """Acceptance 2: a preemption notice mid-run."""
  model_dir = str(tmp_path / "run")
  base = ["train.steps_per_loop = 1", "train.log_every = 1", "train.checkpoint_every = 1000"]
  run = _Run(_cli(model_dir, data_dir, "train.num_steps = 100000", *base),
             str(tmp_path / "log_term.txt"))
  run.wait_for(r"step 5/")
  sent = time.time()
  run.proc.send_signal(signal.SIGTERM)
  code, out, text = run.finish(timeout=60)
  grace = time.time() - sent
  assert code == 0, text[-3000:]
  stopped = int(re.search(r"stopped by SIGTERM at step (\d+)", out).group(1))
  assert stopped >= 5 and "run the same command to resume" in out
  assert "SIGTERM received: writing a checkpoint at step" in text
  # The only checkpoint is the one the signal asked for, at the step it stopped.
  assert [_step_of(p) for p in _listed(model_dir)] == [stopped]
  assert not os.path.exists(os.path.join(model_dir, "TRAINING_DONE"))
  print(f"FAULT SIGTERM: stopped at step {stopped}, exit 0 after {grace:.2f} s, lost 0 steps")
  assert grace < 30  # GCE's preemption notice leaves 30 s

  rerun = _Run(_cli(model_dir, data_dir, f"train.num_steps = {stopped + 3}", *base),
               str(tmp_path / "log_resume.txt"))
  code, _, text = rerun.finish()
  assert code == 0, text[-3000:]
  assert _start_step(text) == stopped
  assert json.loads(open(os.path.join(model_dir, "TRAINING_DONE")).read())["step"] == (
      stopped + 3)


def test_sigint_saves_the_current_step_and_exits_130(tmp_path, data_dir):
  """Ctrl-C: the same save-and-stop as SIGTERM, with the shell's interrupted status."""
  model_dir = str(tmp_path / "run")
  run = _Run(_cli(model_dir, data_dir, "train.num_steps = 100000", "train.steps_per_loop = 1",
                  "train.log_every = 1", "train.checkpoint_every = 1000"),
             str(tmp_path / "log_int.txt"))
  run.wait_for(r"step 3/")
  run.proc.send_signal(signal.SIGINT)
  code, out, text = run.finish(timeout=60)
  assert code == 130, text[-3000:]
  stopped = int(re.search(r"stopped by SIGINT at step (\d+)", out).group(1))
  assert stopped >= 3 and "run the same command to resume" in out
  assert [_step_of(p) for p in _listed(model_dir)] == [stopped]
  assert not os.path.exists(os.path.join(model_dir, "TRAINING_DONE"))


def test_checkpoints_are_found_under_a_relative_model_dir(tmp_path, monkeypatch):
  """`--model_dir=runs/x` (relative, as the README writes it) must resume and evaluate."""
  monkeypatch.chdir(tmp_path)
  step = tf.Variable(0, dtype=tf.int64)
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(step=step),
                                       os.path.join("runs", "x", "checkpoints"), 3)
  for n in (2, 4):
    step.assign(n)
    manager.save(checkpoint_number=n)
  path, found_step = checkpoints.newest_good_checkpoint(os.path.join("runs", "x", "checkpoints"))
  assert os.path.basename(path) == "ckpt-4" and found_step == 4
  assert [s for s, _ in checkpoints.list_checkpoints(os.path.join("runs", "x"))] == [2, 4]
