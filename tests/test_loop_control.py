"""Loops bounded by time, time-based checkpoints, and the bound in every shipped config."""
import pathlib

import gin
import numpy as np
import pytest

from hamgan.cli import train as train_cli
from hamgan.training import loop_control
from hamgan.training import trainer as trainer_lib

CONFIGS = sorted(pathlib.Path(train_cli.GIN_CONFIG_DIR).glob("*.gin"))
# The paper's slowest training speed (ImageNet 128 on a v3-8): 1.31 iterations per second.
SLOWEST_SECONDS_PER_STEP = 1 / 1.31
# A preemptible/spot TPU VM gets 30 s of notice; a loop must end well inside it.
GRACE_LOOP_SECONDS = 10.0


@pytest.mark.parametrize("seconds_per_step, max_seconds, cap, want", [
    (None, 10.0, 500, 1),       # not measured yet: one step
    (1 / 1.31, 10.0, 500, 13),  # 13 steps = 9.9 s; 14 would be 10.7 s
    (0.001, 10.0, 500, 500),    # fast steps: the steps_per_loop cap
    (30.0, 10.0, 500, 1),       # a step slower than the bound: still one step
    (0.5, 10.0, 7, 7),
])
def test_loop_steps(seconds_per_step, max_seconds, cap, want):
  assert loop_control.loop_steps(seconds_per_step, max_seconds, cap) == want


def test_clock_ignores_the_compiling_loop_and_follows_a_slowdown_at_once():
  clock = loop_control.LoopClock(max_loop_seconds=10.0, steps_per_loop=1000)
  clock.start()
  assert clock.stop(1) is None  # the first loop traces and compiles
  clock.update(None)
  assert clock.steps() == 1
  clock.update(0.1)
  assert clock.steps() == 100
  clock.update(0.5)  # slower: taken as is
  assert clock.steps() == 20
  clock.update(0.1)  # faster: only halfway
  assert clock.steps() == 33


def test_checkpoint_timer(monkeypatch):
  now = [1000.0]
  monkeypatch.setattr(loop_control.time, "monotonic", lambda: now[0])
  timer = loop_control.CheckpointTimer(600)
  now[0] += 599
  assert not timer.due()
  now[0] += 1
  assert timer.due()
  timer.saved()
  assert not timer.due()
  assert not loop_control.CheckpointTimer(None).due()


@pytest.fixture
def _clean_gin():
  yield
  gin.clear_config()


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_config_bounds_its_loops_and_tpu_configs_save_every_15_minutes(path, _clean_gin):
  train_cli.parse_gin([str(path)], [])
  cfg = trainer_lib.TrainConfig()
  assert cfg.max_loop_seconds <= GRACE_LOOP_SECONDS
  # The longest loop the trainer can choose at the slowest speed (after the one-step
  # loops that come before any measurement).
  steps = loop_control.loop_steps(SLOWEST_SECONDS_PER_STEP, cfg.max_loop_seconds,
                                  cfg.steps_per_loop)
  assert steps * SLOWEST_SECONDS_PER_STEP <= cfg.max_loop_seconds
  # The TPU configs: the ones whose command line says --tpu, and the ImageNet runs.
  if "--tpu" in path.read_text() or cfg.dataset == "imagenet2012":
    assert cfg.checkpoint_every_secs is not None and cfg.checkpoint_every_secs <= 15 * 60, (
        f"{path.name}: a TPU config must save at least every 15 minutes")


def test_decide_takes_any_stop_any_due_and_the_slowest_time():
  from hamgan.training import train_loop  # pylint: disable=import-outside-toplevel
  # Three tasks: (stop asked, checkpoint due, seconds per step).
  facts = np.array([[0, 0, 0.2], [1, 0, 0.5], [0, 1, 0.3]])
  d = train_loop.decide(facts)
  assert (d.stop, d.checkpoint_due, d.seconds_per_step) == (True, True, 0.5)
  d = train_loop.decide(np.array([[0, 0, 0.2], [0, 0, np.nan]]))  # one not measured yet
  assert (d.stop, d.checkpoint_due, d.seconds_per_step) == (False, False, None)


def test_milestones_are_every_interval_and_the_last_step():
  from hamgan.training import train_loop  # pylint: disable=import-outside-toplevel
  assert [s for s in range(1, 56) if train_loop.is_milestone(s, 55, 20)] == [20, 40, 55]
