"""Tests for hamgan.training.hooks: every hook is asked, answers are explicit actions."""
import pytest

from hamgan.training import hooks


class _Recorder(hooks.Hook):
  def __init__(self, log, name, after=hooks.Action.CONTINUE, save=hooks.Action.SAVE):
    self.log, self.name, self.after, self.save = log, name, after, save

  def after_loop(self, trainer, step, metrics):
    self.log.append(("after_loop", self.name, step))
    return self.after

  def before_save(self, trainer, step, metrics):
    self.log.append(("before_save", self.name, step))
    return self.save


def test_every_hook_is_asked_even_after_one_stops_or_vetoes():
  log = []
  chain = [_Recorder(log, "a", after=hooks.Action.STOP, save=hooks.Action.SKIP_SAVE),
           _Recorder(log, "b"), _Recorder(log, "c")]
  assert hooks.should_stop(chain, None, 7, {}) is True
  assert hooks.may_save(chain, None, 7, {}) is False
  assert log == [("after_loop", n, 7) for n in "abc"] + [("before_save", n, 7) for n in "abc"]


def test_the_default_hook_neither_stops_nor_vetoes():
  chain = [hooks.Hook(), hooks.Hook()]
  assert hooks.should_stop(chain, None, 1, {}) is False
  assert hooks.may_save(chain, None, 1, {}) is True
  assert hooks.should_stop([], None, 1, {}) is False and hooks.may_save([], None, 1, {})


@pytest.mark.parametrize("answer", [True, False, None, hooks.Action.SAVE])
def test_an_answer_that_is_not_an_after_loop_action_is_refused(answer):
  with pytest.raises(TypeError, match=r"_Recorder.after_loop returned .*Action.CONTINUE"):
    hooks.should_stop([_Recorder([], "x", after=answer)], None, 1, {})


def test_a_save_answer_must_be_save_or_skip_save():
  with pytest.raises(TypeError, match=r"before_save returned .*Action.SKIP_SAVE"):
    hooks.may_save([_Recorder([], "x", save=hooks.Action.STOP)], None, 1, {})
