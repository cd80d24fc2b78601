"""hamgan-train: trains a GAN from gin experiment files, resuming by itself.

  hamgan-train --gin_file=gin_configs/demo_digits.gin --model_dir=runs/demo
  hamgan-train --gin_file=imagenet128_hamgan_baby --model_dir=gs://b/run --tpu=local \
      --gin_param="train.data_dir='gs://b/tfds'"
  hamgan-train --gin_file=demo_digits --print_config
  hamgan-train --gin_file=demo_digits --model_dir=runs/demo --dry_run

Several hosts: run the same command on each with its TF_CONFIG (launch/multihost.sh
does it); the chief (worker 0) writes model_dir, a SIGTERM to any worker saves one
checkpoint on all of them, and a lost worker stops the others with exit status 3.

Everything that can be wrong with a run's set-up (the gin files, a binding, the
data set, the model_dir, the batch for the number of replicas) is checked
before the first training step and reported as one message that says what to
fix, with a non-zero exit status.
"""
import contextlib
import logging as std_logging
import os
import pathlib
import sys

from absl import app
from absl import flags
from absl import logging
import gin

from hamgan.cli import errors

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("gin_file", [], "gin experiment file(s): a path, or a name in "
                          "gin_configs/ such as 'demo_digits' (later files override).")
flags.DEFINE_multi_string("gin_param", [], "extra gin bindings, e.g. "
                          "\"train.batch_size = 64\" (applied after the files).")
flags.DEFINE_string("model_dir", None, "run directory (local or gs://): checkpoints, "
                    "summaries, samples, train_log.jsonl. Training resumes from it.")
flags.DEFINE_string("tpu", None, "TPU to train on: 'local' on a TPU VM, or the TPU's "
                    "name. Unset: several GPUs, a multi-worker TF_CONFIG, or one device.")
flags.DEFINE_bool("print_config", False, "print the resolved configuration (every "
                  "setting of train, fault_tolerance and the models, defaults included) "
                  "and exit; touches no device and no model_dir.")
flags.DEFINE_bool("dry_run", False, "check everything up to the first step (gin, data, "
                  "model_dir, strategy, models and optimizers built, checkpoint found) "
                  "and exit 0; writes nothing, model_dir included.")
flags.DEFINE_bool("allow_config_change", False, "resume although the networks' settings "
                  "(Generator, Discriminator, context modules) differ from the previous "
                  "launch's; each step is still evaluated under its own launch's config.")

GIN_CONFIG_DIR = pathlib.Path(__file__).resolve().parents[2] / "gin_configs"


_SEARCH_PATHS = set()


class SetupError(Exception):
  """A run cannot start; the message says what to fix."""


def _available_configs():
  if not GIN_CONFIG_DIR.is_dir():
    return []
  return sorted(p.stem for p in GIN_CONFIG_DIR.glob("*.gin") if not p.stem.startswith("base_"))


def resolve_gin_file(name):
  """A gin file path from a path or a config name; SetupError if there is none."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  candidates = [name]
  if not os.path.isabs(name) and "://" not in name:
    candidates += [str(GIN_CONFIG_DIR / name)]
    if not name.endswith(".gin"):
      candidates += [name + ".gin", str(GIN_CONFIG_DIR / (name + ".gin"))]
  for candidate in candidates:
    if tf.io.gfile.exists(candidate) and not tf.io.gfile.isdir(candidate):
      return candidate
  raise SetupError(
      f"gin file {name!r} not found (looked for {', '.join(candidates)}). Pass an existing "
      f"file with --gin_file, or one of the experiments in {GIN_CONFIG_DIR}: "
      f"{', '.join(_available_configs()) or '(none)'}.")


class _DropGinProbes(std_logging.Filter):
  """Hides gin's 'Path not found' errors for search-path prefixes that miss."""

  def filter(self, record):
    return not str(record.msg).startswith("Path not found")


@contextlib.contextmanager
def _quiet_gin_search():
  root, quiet = std_logging.getLogger(), _DropGinProbes()
  root.addFilter(quiet)
  try:
    yield
  finally:
    root.removeFilter(quiet)


def parse_gin(gin_files, gin_params):
  """Parses the experiment; unknown configurables or parameters fail here."""
  # Registers every configurable a gin file may name.
  import hamgan.data  # pylint: disable=import-outside-toplevel,unused-import
  import hamgan.models  # pylint: disable=import-outside-toplevel,unused-import
  import hamgan.training  # pylint: disable=import-outside-toplevel,unused-import
  import hamgan.training.fault_tolerance  # pylint: disable=import-outside-toplevel,unused-import
  if not gin_files:
    raise SetupError("no --gin_file given; pass an experiment, e.g. "
                     f"--gin_file=demo_digits (available: {', '.join(_available_configs())}).")
  paths = [resolve_gin_file(f) for f in gin_files]
  gin.clear_config()
  # `include 'base_x.gin'` lines resolve next to the including file or in gin_configs/.
  for directory in [str(GIN_CONFIG_DIR)] + [os.path.dirname(p) for p in paths]:
    if directory and directory not in _SEARCH_PATHS:
      gin.add_config_file_search_path(directory)
      _SEARCH_PATHS.add(directory)
  for path in paths:
    try:
      with _quiet_gin_search():
        gin.parse_config_file(path)
    except (SyntaxError, ValueError, KeyError, IOError) as e:
      raise SetupError(
          f"gin file {path} could not be parsed: {type(e).__name__}: {e}. Fix that line "
          "(bindings read `Configurable.parameter = value`; configurables include "
          "train, Generator, Discriminator, make_dataset).") from e
  try:
    gin.parse_config(list(gin_params))
  except (SyntaxError, ValueError, KeyError) as e:
    raise SetupError(f"--gin_param {list(gin_params)!r} could not be parsed: "
                     f"{type(e).__name__}: {e}. Bindings read `train.batch_size = 64`.") from e
  return paths


def resolved_config(gin_files, gin_params):
  """The operative configuration of an experiment: every setting the run would use.

  Builds the settings and the (unbuilt, weightless) models so that gin records
  every parameter, defaults included; no device work, nothing written.
  """
  from hamgan import models  # pylint: disable=import-outside-toplevel
  from hamgan.training import fault_tolerance  # pylint: disable=import-outside-toplevel
  from hamgan.training import trainer as trainer_lib  # pylint: disable=import-outside-toplevel
  parse_gin(gin_files, gin_params)
  try:
    trainer_lib.TrainConfig()
    fault_tolerance.FaultToleranceConfig()
    models.Generator(name="generator")
    models.Discriminator(name="discriminator")
  except (ValueError, TypeError) as e:
    raise SetupError(str(e)) from e
  return gin.operative_config_str()


def build_trainer(gin_files, gin_params, model_dir, tpu=None, strategy=None, dry_run=False,
                  allow_config_change=False):
  """Parses the config, resolves the strategy and builds the Trainer (no step yet)."""
  from hamgan.training import strategy as strategy_lib  # pylint: disable=import-outside-toplevel
  from hamgan.training import trainer as trainer_lib  # pylint: disable=import-outside-toplevel
  from hamgan.training import fault_tolerance  # pylint: disable=import-outside-toplevel
  from hamgan import checkpoints  # pylint: disable=import-outside-toplevel
  if not model_dir:
    raise SetupError("--model_dir is required: the run directory (local or gs://), "
                     "e.g. --model_dir=runs/my_run.")
  parse_gin(gin_files, gin_params)
  try:
    config = trainer_lib.TrainConfig()
    fault_tolerance.FaultToleranceConfig()  # its bindings fail here, before any device work
    if strategy is None:
      strategy = strategy_lib.resolve_strategy(tpu, config.worker_timeout_secs)
    return trainer_lib.Trainer(model_dir, config, strategy=strategy, dry_run=dry_run,
                               allow_config_change=allow_config_change)
  except (ValueError, TypeError, checkpoints.StorageError) as e:
    raise SetupError(str(e)) from e


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}; pass settings as --gin_param.")
  try:
    if FLAGS.print_config:
      print(resolved_config(FLAGS.gin_file, FLAGS.gin_param))
      return
    trainer = build_trainer(FLAGS.gin_file, FLAGS.gin_param, FLAGS.model_dir, FLAGS.tpu,
                            dry_run=FLAGS.dry_run,
                            allow_config_change=FLAGS.allow_config_change)
  except SetupError as e:
    logging.error("hamgan-train cannot start: %s", e)
    sys.exit(TOOL.report(e, errors.traceback_wanted()))  # one line, status 2
  except Exception as e:  # pylint: disable=broad-except
    if not (os.environ.get("TF_CONFIG") and isinstance(e, _lost_worker_errors())):
      raise
    _exit_lost_worker("during start-up", e)
  if FLAGS.dry_run:
    print(f"hamgan-train: dry run passed: {trainer.describe()}; nothing was trained or "
          "saved. Run without --dry_run to train.")
    return
  _train_with_fault_handling(trainer, FLAGS.model_dir)
  print(f"hamgan-train: done; checkpoints, summaries and samples are in {FLAGS.model_dir}")


def _lost_worker_errors():
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
          tf.errors.CancelledError, tf.errors.AbortedError, tf.errors.InternalError)


def _exit_lost_worker(when, error):
  """A collective failed or timed out: another worker died or hangs; exit 3."""
  from hamgan.training import cluster  # pylint: disable=import-outside-toplevel
  text = str(error).strip()
  first = text.splitlines()[0][:300] if text else type(error).__name__
  message = (f"lost contact with another worker {when} ({type(error).__name__}: {first}); "
             f"{cluster.RESTART_HINT}.")
  logging.error("hamgan-train stopped: %s", message)
  print(f"hamgan-train: error: {message}", file=sys.stderr)
  sys.stderr.flush()
  # The collective runtime may still hold threads blocked on the dead peer.
  os._exit(3)  # pylint: disable=protected-access


def _train_with_fault_handling(trainer, model_dir):
  """Trains with the fault_tolerance hooks; exits 0 on SIGTERM, 130 on SIGINT, 1 on NaN."""
  from hamgan.training import cluster  # pylint: disable=import-outside-toplevel
  from hamgan import checkpoints  # pylint: disable=import-outside-toplevel
  from hamgan.training import fault_tolerance  # pylint: disable=import-outside-toplevel
  hooks = fault_tolerance.make_hooks(fault_tolerance.FaultToleranceConfig())
  signals = [h for h in hooks if isinstance(h, fault_tolerance.SignalHook)]
  several = cluster.num_workers(trainer.strategy) > 1
  with signals[0] if signals else contextlib.nullcontext():
    try:
      trainer.train(hooks=hooks)
    except (fault_tolerance.DivergenceError, checkpoints.StorageError) as e:
      logging.error("hamgan-train stopped: %s", e)
      print(f"hamgan-train: error: {e}", file=sys.stderr)
      sys.exit(1)
    except Exception as e:  # pylint: disable=broad-except
      if not (several and isinstance(e, _lost_worker_errors())):
        raise
      _exit_lost_worker(f"at step {trainer.last_step}", e)
  if signals and signals[0].received is not None:
    name = signals[0].signal_name
    print(f"hamgan-train: stopped by {name} at step {trainer.last_step}; the "
          f"checkpoint is in {model_dir}; run the same command to resume.")
    sys.exit(0 if name == "SIGTERM" else 130)
  if trainer.stopped_by == "another worker":
    print(f"hamgan-train: another worker asked to stop: agreed to stop at step "
          f"{trainer.last_step}; the checkpoint is in {model_dir}; {cluster.RESTART_HINT}.")
    sys.exit(0)


TOOL = errors.Tool("hamgan-train", main, doc=__doc__, error_status=2, expected=(SetupError,),
                   key_flags=("gin_file", "gin_param", "model_dir", "tpu", "print_config",
                              "dry_run", "allow_config_change"))
run = TOOL.run  # the console entry point: every error becomes one line


if __name__ == "__main__":
  run()
