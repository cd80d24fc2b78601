"""Who does what when one run spans several processes (hosts).

A run under MultiWorkerMirroredStrategy is N copies of the same program, one per
host; they hold the same weights and must take every decision together. This
module answers the two questions that brings:

* Roles. Exactly one task, the chief, writes the run's files (config, logs,
  summaries, sample grids, TRAINING_DONE, checkpoints in model_dir). Every other
  task still takes part in each checkpoint save (TF's multi-worker rule: the
  save may read values through collectives), writing to a temporary folder of
  its own that is removed right after (`scratch_checkpoint_dir`). All tasks
  restore from the chief's model_dir.
* Agreement. Between loops each task knows things the others do not: a SIGTERM
  arrived here, this host's clock says a checkpoint is due, this host measured
  its step time. `Agreement` all-gathers a small vector of such reports, so every
  task stops, saves and sizes its next loop alike (a task that runs a different
  number of steps than the others would hang their collectives).

A single process (one device, MirroredStrategy on one host, a single-client TPU)
is its own chief and needs no agreement; the functions are then free.
"""
import os
import tempfile

import numpy as np
import tensorflow as tf

from hamgan import tpu

RESTART_HINT = ("restart every worker of the job with the same command; training "
                "resumes from the last checkpoint in model_dir")


def _resolver(strategy):
  return getattr(strategy.extended, "_cluster_resolver", None) or getattr(
      strategy, "cluster_resolver", None)


def num_workers(strategy):
  """The processes taking part in the run (1 outside MultiWorkerMirroredStrategy)."""
  if "CollectiveAllReduce" not in type(strategy).__name__ and "MultiWorker" not in type(
      strategy).__name__:
    return 1
  spec = _resolver(strategy).cluster_spec().as_dict()
  return sum(len(spec.get(t, ())) for t in ("chief", "worker"))


def task_id(strategy):
  """This process's index among the training tasks (0 on the chief)."""
  if num_workers(strategy) == 1:
    return _tpu_host_index() if tpu.is_tpu_strategy(strategy) else 0
  resolver = _resolver(strategy)
  spec = resolver.cluster_spec().as_dict()
  if resolver.task_type == "chief":
    return 0
  # With a separate chief task, worker i is task i + 1.
  return int(resolver.task_id) + (1 if spec.get("chief") else 0)


def _tpu_host_index():
  # On a multi-host TPU slice every host runs the same command; the TPU runtime names
  # each host's index in one of these (unset on a single-host TPU VM).
  for name in ("CLOUD_TPU_TASK_ID", "TPU_WORKER_ID"):
    if os.environ.get(name, "").strip().isdigit():
      return int(os.environ[name])
  return 0


def is_chief(strategy):
  """True on the one task that writes the run's files."""
  return task_id(strategy) == 0


def scratch_checkpoint_dir(strategy):
  """A private, local folder where a non-chief task writes its copy of a checkpoint."""
  return tempfile.mkdtemp(prefix=f"hamgan-worker{task_id(strategy)}-ckpt-")


class Agreement:
  """Every task's copy of a small float vector, gathered by one collective.

  `agree(values)` returns an array (tasks, len(values)); every task gets the same
  array, so a decision made from it (any task asked to stop; the slowest task's
  step time) is the same everywhere. With one task it returns values[None] and
  runs nothing.
  """

  def __init__(self, strategy):
    self.strategy = strategy
    self.num_tasks = num_workers(strategy)
    self._gathers = {}

  def _build(self, timeout_s):
    strategy = self.strategy
    options = None
    if timeout_s is not None:  # this collective's own limit, not the strategy's
      options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout_s)

    @tf.function
    def gather(values):
      def replica_fn(v):
        ctx = tf.distribute.get_replica_context()
        return ctx.all_gather(v[None], axis=0, options=options)
      out = strategy.run(replica_fn, args=(values,))
      return strategy.experimental_local_results(out)[0]
    return gather

  def agree(self, values, timeout_s=None):
    """Every task's `values`; `timeout_s` replaces the strategy's collective timeout
    for this call (e.g. while the chief saves to a bucket)."""
    values = np.asarray(values, np.float64)
    if self.num_tasks == 1:
      return values[None]
    if timeout_s not in self._gathers:
      self._gathers[timeout_s] = self._build(timeout_s)
    return self._gathers[timeout_s](tf.constant(values, tf.float64)).numpy()
