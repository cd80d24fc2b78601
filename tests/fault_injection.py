"""Fault injection for the tests: never part of a real run."""
from absl import logging
import numpy as np

from hamgan.training import hooks as hooks_lib
from hamgan.training.hooks import Action


class PoisonData(hooks_lib.Hook):
  """From `step` on, every real image is NaN.

  After the loop that reaches `step`, swaps the trainer's input iterator for
  the same pipeline with NaN images, so the next loop's losses are NaN as they
  would be after a corrupt batch. Never use it in a real run.
  """

  def __init__(self, step):
    self.step = int(step)
    self.done = False

  def after_loop(self, trainer, step, metrics):
    del metrics
    if self.done or step < self.step:
      return Action.CONTINUE
    self.done = True
    logging.warning("FAULT INJECTION: real images are NaN from step %d on.", step)

    # Same per-replica (B, S, S, 3) images, all NaN.
    dataset = trainer.make_distributed_dataset(
        lambda ds: ds.map(lambda x, y: (x * np.float32("nan"), y)))
    trainer._iterator = iter(dataset)  # pylint: disable=protected-access
    return Action.CONTINUE
