"""The settings of a training run (gin scope `train`), checked before any work starts."""
import dataclasses
import math
import numbers
from typing import Any, Callable, Optional

import gin

from hamgan import validation
from hamgan.training import diffaugment
from hamgan.training import losses as losses_lib
from hamgan.training import optimizers as optimizers_lib

POLICIES = ("auto", "float32", "mixed_bfloat16")
RESUME_INPUT = ("skip", "fresh")
INPUT_SHARDING = ("by_host", "by_batch_row")


def _positive_seconds(name, value, hint, allow_none=False):
  if allow_none and value is None:
    return
  if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0):
    raise ValueError(f"train.{name}={value!r} is not a number of seconds > 0; {hint}")


def _check_regularisers(config):
  """accumulation_steps, diffaugment and the LeCam settings (the Trainer checks k
  against the batch per replica)."""
  validation.check_int("train", "accumulation_steps", config.accumulation_steps,
                       hint="pass 1 (no accumulation) or the number of micro-batches, "
                            "e.g. 4.")
  if config.batch_size % config.accumulation_steps:
    raise ValueError(
        f"train.accumulation_steps={config.accumulation_steps} does not divide "
        f"train.batch_size={config.batch_size}; pass a divisor of the batch (per "
        "replica), e.g. 2 or 4.")
  diffaugment.parse_policy(config.diffaugment)
  weight = config.lecam_weight
  if (isinstance(weight, bool) or not isinstance(weight, numbers.Real)
      or not math.isfinite(weight) or weight < 0):
    raise ValueError(f"train.lecam_weight={weight!r} must be a number >= 0; pass 0 (off) "
                     "or e.g. 0.01.")
  decay = config.lecam_decay
  if (isinstance(decay, bool) or not isinstance(decay, numbers.Real)
      or not 0.0 <= decay < 1.0):
    raise ValueError(f"train.lecam_decay={decay!r} is outside [0, 1); pass e.g. 0.99.")


@gin.configurable("train", module="hamgan.training")
@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything a training run needs besides the models (gin scope `train`).

  Attributes:
    batch_size: global batch per D step and per G step (a multiple of the replicas).
    num_steps: training iterations of the whole run (TRAINING_DONE when reached).
    dataset: a hamgan.data data set name (used when no dataset_fn is given).
    data_dir: tfds data directory (local or gs://), None for tfds's default.
    split: the split to train on; None takes the data set's train split.
    loss_fn: `fn(d_real, d_fake) -> (d_loss_per_example, g_loss_per_example)`,
      in gin `@hinge` or `@non_saturating`.
    optimizer_fn: `fn(learning_rate, beta1, beta2, epsilon, name) -> optimizer`,
      in gin `@adam` (the default) or `@sgd_momentum` (hamgan.training.optimizers).
    g_lr, d_lr, beta1, beta2, epsilon: optimizer settings (TTUR: D learns 4x faster).
      A learning rate changed between launches of a run is applied on restart (a
      log line says so); the checkpoint's rate is not kept over the config's.
    d_steps: D updates per G update.
    mode_seeking_weight: weight of the mode-seeking term in G's loss (0: off). With it,
      rows i and i + B/2 of the G batch share their classes, and G is charged for
      image distances small against latent distances (see mode_seeking_form): it
      counters samples of one class that look alike whatever z is.
    mode_seeking_form: "per_pair" (hamgan's variant, the default: the mean over pairs of
      1 / (image distance / latent distance + eps), losses.mode_seeking) or "msgan"
      (MSGAN's own: one ratio of the batch's mean distances, losses.mode_seeking_msgan;
      its gradient costs one more backward pass through G).
    accumulation_steps: k micro-batches per optimizer step: each replica's batch is
      split into k slices whose gradients are summed before one update of D (and of
      G), so a batch that does not fit trains as if it did; k must divide the batch
      per replica. Steps, logs and checkpoints count optimizer steps.
    diffaugment: DiffAugment policies applied to every image D sees, in D's and G's
      step: a comma-separated subset of "color", "translation", "cutout", or ""
      (off); hamgan.training.diffaugment.
    lecam_weight: weight of the LeCam penalty in D's loss (0: off), against EMAs of
      D's mean output on real and fake images (losses.lecam).
    lecam_decay: decay of those EMAs, in [0, 1).
    ema_decay: decay of the EMA generator.
    ema_start_step: before this step the EMA generator is a copy of G.
    steps_per_loop: the most iterations per tf.function call.
    max_loop_seconds: a loop lasts at most this long: its size comes from the
      measured step time (SIGTERM is seen between loops, so this bounds the
      reaction to a preemption notice). Changing the size never retraces.
    log_every, summary_every, checkpoint_every: intervals in steps.
    checkpoint_every_secs: also save when this many seconds passed since the last
      save (None: by steps only). Bounds the work a hard kill loses.
    max_checkpoints: checkpoints kept (older ones are deleted).
    grid_columns: samples per class row of the sample grid.
    mixed_precision: "auto" (mixed_bfloat16 on TPU, float32 elsewhere),
      "float32" or "mixed_bfloat16".
    jit_compile: compile the replica step with XLA (implied on TPU).
    seed: seeds the initial weights, the random draws, the input order and the
      sample grid.
    resume_input: on restart, "skip" fast-forwards the (seeded) input pipeline
      past the batches already used, so a resumed run sees the data an
      uninterrupted one would (costs a read of those batches); "fresh" starts
      the pipeline anew with its order seeded by (seed, resume step), so it does
      not replay the order the run began with (cheap, for very large data sets).
    input_sharding: on several hosts, "by_host" gives each host its own share of
      the split (tfds even splits, every n-th file of a folder); "by_batch_row"
      has every host read the whole split in one seeded order and keep its rows of
      each global batch, so the run sees exactly a one-host run's batches (each
      host then reads all the data: for small data sets and reproducibility).
    worker_timeout_secs: on several hosts, a collective that waits longer than this
      for another worker fails, and hamgan-train exits (status 3) saying to restart
      the job, instead of hanging behind a dead host.
    save_timeout_secs: on several hosts, how long the workers wait for one another
      around checkpoints (the chief's save to a bucket, every task's read of a large
      checkpoint at a restore: minutes) before giving up; worker_timeout_secs does not
      count those waits.
  """
  batch_size: int = 256
  num_steps: int = 1_000_000
  dataset: str = "digits"
  data_dir: Optional[str] = None
  split: Optional[str] = None
  loss_fn: Callable[..., Any] = losses_lib.hinge
  optimizer_fn: Callable[..., Any] = optimizers_lib.adam
  g_lr: float = 1e-4
  d_lr: float = 4e-4
  beta1: float = 0.0
  beta2: float = 0.999
  epsilon: float = 1e-8
  d_steps: int = 1
  mode_seeking_weight: float = 0.0
  mode_seeking_form: str = "per_pair"
  accumulation_steps: int = 1
  diffaugment: str = ""
  lecam_weight: float = 0.0
  lecam_decay: float = 0.99
  ema_decay: float = 0.9999
  ema_start_step: int = 1000
  steps_per_loop: int = 100
  max_loop_seconds: float = 10.0
  log_every: int = 100
  summary_every: int = 1000
  checkpoint_every: int = 5000
  checkpoint_every_secs: Optional[float] = None
  max_checkpoints: int = 5
  grid_columns: int = 8
  mixed_precision: str = "auto"
  jit_compile: bool = False
  seed: int = 0
  resume_input: str = "fresh"
  input_sharding: str = "by_host"
  worker_timeout_secs: float = 100.0
  save_timeout_secs: float = 1800.0

  def __post_init__(self):
    check = validation.check_int
    check("train", "batch_size", self.batch_size, hint="pass the global batch, e.g. 256.")
    check("train", "num_steps", self.num_steps, hint="pass the run length, e.g. 100000.")
    check("train", "d_steps", self.d_steps, hint="pass 1 (one D step per G step) or more.")
    for name in ("steps_per_loop", "log_every", "summary_every", "checkpoint_every",
                 "max_checkpoints", "grid_columns"):
      check("train", name, getattr(self, name), hint="pass a step count >= 1.")
    check("train", "ema_start_step", self.ema_start_step, minimum=0,
          hint="pass the step from which the EMA averages, e.g. 1000.")
    if not 0.0 <= self.ema_decay < 1.0:
      raise ValueError(f"train.ema_decay={self.ema_decay!r} is outside [0, 1); "
                       "pass e.g. 0.9999.")
    for name in ("g_lr", "d_lr", "epsilon"):
      if not getattr(self, name) > 0:
        raise ValueError(f"train.{name}={getattr(self, name)!r} must be > 0; "
                         "e.g. g_lr=1e-4, d_lr=4e-4, epsilon=1e-8.")
    if not self.mode_seeking_weight >= 0:
      raise ValueError(f"train.mode_seeking_weight={self.mode_seeking_weight!r} must be "
                       ">= 0; pass 0 (off) or e.g. 1.0.")
    _check_regularisers(self)
    for name in ("beta1", "beta2"):
      if not 0.0 <= getattr(self, name) < 1.0:
        raise ValueError(f"train.{name}={getattr(self, name)!r} is outside [0, 1); "
                         "the SAGAN setting is beta1=0, beta2=0.999.")
    _positive_seconds("max_loop_seconds", self.max_loop_seconds,
                      "pass e.g. 10 (well inside a preemption notice of 30 s).")
    _positive_seconds("checkpoint_every_secs", self.checkpoint_every_secs,
                      "pass e.g. 600, or None to save by steps only.", allow_none=True)
    _positive_seconds("worker_timeout_secs", self.worker_timeout_secs,
                      "pass e.g. 100 (a collective between two loops).")
    _positive_seconds("save_timeout_secs", self.save_timeout_secs,
                      "pass e.g. 1800 (longer than the chief's checkpoint save takes).")
    for name, allowed in (("mixed_precision", POLICIES), ("resume_input", RESUME_INPUT),
                          ("input_sharding", INPUT_SHARDING),
                          ("mode_seeking_form", losses_lib.MODE_SEEKING_FORMS)):
      if getattr(self, name) not in allowed:
        raise ValueError(f"train.{name}={getattr(self, name)!r}; expected one of "
                         f"{allowed}.")
    object.__setattr__(self, "loss_fn", losses_lib.get_loss(self.loss_fn))
    object.__setattr__(self, "optimizer_fn",
                       optimizers_lib.get_optimizer_fn(self.optimizer_fn))
