"""Picks the tf.distribute strategy for the machine a run lands on.

The choice is made in two parts so that it can be tested without the
hardware: `choose_strategy_kind` is a pure function of the `--tpu` flag, the
number of visible GPUs and the TF_CONFIG text; `resolve_strategy` builds the
strategy it names and logs one line with the kind and the replica count.

Order of precedence: an explicit `--tpu` wins; then a TF_CONFIG that
describes more than one task (multi-worker training); then several local
GPUs; otherwise the default strategy (one device: a GPU if there is one,
else the CPU).
"""
import json
import os

from absl import logging
import tensorflow as tf

TPU = "tpu"
MULTI_WORKER = "multi_worker_mirrored"
MIRRORED = "mirrored"
DEFAULT = "default"

# TF_CONFIG task types that take part in multi-worker synchronous training.
_TRAINING_TASK_TYPES = ("chief", "worker")


def parse_tf_config(text):
  """Returns the TF_CONFIG dictionary, {} for empty text; ValueError if it is not JSON."""
  if text is None or not str(text).strip():
    return {}
  try:
    config = json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(
        f"TF_CONFIG={text!r} is not valid JSON ({e}); expected e.g. "
        '{"cluster": {"worker": ["host1:port", "host2:port"]}, '
        '"task": {"type": "worker", "index": 0}}; fix or unset TF_CONFIG.') from e
  if not isinstance(config, dict):
    raise ValueError(f"TF_CONFIG={text!r} is not a JSON object; expected "
                     '{"cluster": {...}, "task": {...}}; fix or unset TF_CONFIG.')
  return config


def num_training_tasks(tf_config):
  """Counts the chief and worker tasks of a parsed TF_CONFIG cluster."""
  cluster = tf_config.get("cluster") or {}
  if not isinstance(cluster, dict):
    raise ValueError(f"TF_CONFIG cluster={cluster!r} is not a JSON object mapping task "
                     'types to address lists, e.g. {"worker": ["host1:port"]}.')
  count = 0
  for task_type in _TRAINING_TASK_TYPES:
    addresses = cluster.get(task_type) or []
    if isinstance(addresses, dict):  # sparse form {index: address}
      addresses = list(addresses.values())
    count += len(addresses)
  return count


def _task_indices(cluster, task_type):
  """The task indices cluster[task_type] lists (a list, or the sparse {index: address})."""
  addresses = cluster.get(task_type) or []
  if isinstance(addresses, dict):  # JSON keys are strings
    return sorted(int(k) for k in addresses if str(k).lstrip("-").isdigit())
  return list(range(len(addresses)))


def check_task(tf_config):
  """Raises ValueError when TF_CONFIG's task is not one of its cluster's tasks.

  A task outside the cluster would otherwise train alone (a one-worker cluster) or fail
  inside TensorFlow with no word of TF_CONFIG. An "evaluator" task is outside the
  cluster by TensorFlow's design; a TF_CONFIG without a task is left to TensorFlow.
  """
  cluster, task = tf_config.get("cluster") or {}, tf_config.get("task")
  if task is None or not cluster:
    return
  fix = ('set TF_CONFIG\'s "task" to this host\'s place in its cluster, e.g. '
         '{"type": "worker", "index": 0} for the first address of cluster.worker, or '
         "unset TF_CONFIG to train on one host")
  if not isinstance(task, dict):
    raise ValueError(f"TF_CONFIG task={json.dumps(task)} is not a JSON object; {fix}.")
  task_type, index = task.get("type"), task.get("index", 0)
  if task_type == "evaluator":
    return
  if task_type not in cluster:
    raise ValueError(f"TF_CONFIG task type {task_type!r} is not in its cluster (task "
                     f"types: {sorted(cluster)}); {fix}.")
  if isinstance(index, bool) or not isinstance(index, int):
    raise ValueError(f"TF_CONFIG task index {json.dumps(index)} is not an integer; {fix}.")
  known = _task_indices(cluster, task_type)
  if index not in known:
    listed = (f"0..{len(known) - 1}" if known == list(range(len(known))) and known
              else str(known))
    raise ValueError(
        f"TF_CONFIG task {json.dumps(task)} is outside its cluster: cluster.{task_type} "
        f"lists {len(known)} address(es), task indices {listed}; {fix}.")


def choose_strategy_kind(tpu=None, num_gpus=0, tf_config_text=None):
  """Returns TPU, MULTI_WORKER, MIRRORED or DEFAULT for the given environment.

  Outside a TPU, TF_CONFIG is checked first (`check_task`): a task outside its
  cluster is refused, never trained alone.
  """
  if tpu:
    return TPU
  tf_config = parse_tf_config(tf_config_text)
  check_task(tf_config)
  if num_training_tasks(tf_config) > 1:
    return MULTI_WORKER
  if num_gpus > 1:
    return MIRRORED
  return DEFAULT


def _tpu_strategy(tpu):
  """Connects to the TPU system named by `tpu` ("local" on a TPU VM)."""
  try:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
  except (ValueError, RuntimeError, tf.errors.OpError) as e:
    raise ValueError(
        f"--tpu={tpu!r}: could not connect to or initialise the TPU ({e}). Pass "
        "--tpu=local on a TPU VM, or the TPU's name on a TPU node; leave --tpu unset "
        "to train on GPUs or the CPU.") from e
  return tf.distribute.TPUStrategy(resolver)


def resolve_strategy(tpu=None, worker_timeout_secs=None):
  """Builds the strategy for this machine and logs which one and how many replicas.

  Under MultiWorkerMirroredStrategy every collective gives up after
  `worker_timeout_secs` (None: waits forever), so a dead or hung worker ends the
  others' runs with an error instead of hanging them.
  """
  gpus = tf.config.list_physical_devices("GPU")
  kind = choose_strategy_kind(tpu, len(gpus), os.environ.get("TF_CONFIG"))
  if kind == TPU:
    strategy = _tpu_strategy(tpu)
  elif kind == MULTI_WORKER:
    options = tf.distribute.experimental.CommunicationOptions(
        timeout_seconds=worker_timeout_secs)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
  elif kind == MIRRORED:
    strategy = tf.distribute.MirroredStrategy()
  else:
    strategy = tf.distribute.get_strategy()
  logging.info("Distribution strategy: %s with %d replica(s)%s.",
               type(strategy).__name__, strategy.num_replicas_in_sync,
               f" (TPU {tpu!r})" if kind == TPU else "")
  return strategy
