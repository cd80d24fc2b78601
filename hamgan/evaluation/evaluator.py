"""Evaluates a generator, or the checkpoints of a run directory, into results rows.

`evaluate_generator` is the core (a generator callable and cached real statistics in,
metrics out). `Evaluator` adds the run directory (docs/architecture.md): it rebuilds G
from `operative_config.gin`, restores `checkpoints/ckpt-N` (the EMA generator when the
checkpoint has one, unless told otherwise), appends one row per (step, protocol,
classifier, generator variant) to `eval/results.jsonl`, writes
`eval/samples_step_N.png`, and can watch a training run until `TRAINING_DONE`.

Order of work, so that errors come before any costly step: the classifier is loaded
(offline without a local module fails here, in seconds), then the run directory is
checked for checkpoints, then G is built and restored, then real statistics, then
samples.
"""
import dataclasses
import json
import os
import time

from absl import logging
import tensorflow as tf

from hamgan import checkpoints
from hamgan.evaluation import classifier as classifier_lib
from hamgan.evaluation import features as features_lib
from hamgan.evaluation import images as images_lib
from hamgan.evaluation import metrics
from hamgan.evaluation import real_stats
from hamgan.evaluation import run_dir

RESULTS = os.path.join("eval", "results.jsonl")


def evaluate_generator(generator, classifier, real, num_samples, num_classes, z_dim,
                       batch_size=100, strategy=None, seed=0, kid=False, write=None):
  """Metrics of `generator` against `real` (a real_stats.RealStats).

  Returns:
    (metrics dict named by protocol, the generated Features).
  """
  feats = features_lib.generated_features(
      generator, classifier, num_samples, num_classes, z_dim, batch_size=batch_size,
      strategy=strategy, seed=seed, write=write)
  proto = metrics.protocol(num_samples, real.key.dataset, real.key.split)
  values = metrics.all_metrics(real.activations, feats.pool_3, feats.logits, proto, kid=kid)
  return values, feats


# ------------------------------------------------------------------------- results


def read_results(model_dir):
  """All rows of model_dir/eval/results.jsonl (an empty list if there is none)."""
  path = os.path.join(model_dir, RESULTS)
  if not tf.io.gfile.exists(path):
    return []
  with tf.io.gfile.GFile(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _row_key(row):
  return (row.get("step"), row.get("protocol"), row.get("classifier"), row.get("generator"))


def write_result(model_dir, row, replace=False):
  """Adds `row`; with `replace`, rows with the same key go first.

  The file is rewritten whole and renamed into place: atomic on a local disk, and it
  works on gs:// too, where files cannot be appended to.
  """
  path = os.path.join(model_dir, RESULTS)
  tf.io.gfile.makedirs(os.path.dirname(path))
  rows = read_results(model_dir)
  if replace:
    rows = [r for r in rows if _row_key(r) != _row_key(row)]
  rows.append(row)
  tmp = path + ".tmp"
  with tf.io.gfile.GFile(tmp, "w") as f:
    f.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
  tf.io.gfile.rename(tmp, path, overwrite=True)


@dataclasses.dataclass
class EvalSettings:
  """What hamgan-eval's flags set."""
  num_samples: int = 50000
  batch_size: int = 100
  real_dataset: str = None  # None: the run's train.dataset, else imagenet2012
  real_split: str = None  # None: the data set's evaluation split
  real_num_samples: int = None  # None: the same as num_samples
  data_dir: str = None  # None: the run's train.data_dir, else tfds's default
  classifier_path: str = None
  use_ema: bool = None  # None: the EMA generator when the checkpoint has one
  kid: bool = False
  seed: int = 0
  cache_dir: str = None
  force: bool = False
  progress_every_s: float = 10.0


class Evaluator:
  """Evaluates checkpoints of one run directory under one protocol.

  Args:
    model_dir: the training run directory.
    settings: an EvalSettings.
    strategy: the distribution strategy (default: the active one).
    build_generator: callable (model_dir, strategy) -> built generator; the default
      rebuilds hamgan.models.Generator from operative_config.gin.
    make_real_dataset: zero-argument callable returning the batched real data set;
      the default reads settings.real_dataset/real_split with hamgan.data at G's size.
    write: progress sink (default absl logging).

  Settings left None (real data set, split, data_dir) are read from the run's
  operative_config.gin when first needed, i.e. once a checkpoint exists: a watcher
  started beside the trainer may begin before the run directory is there.
  """

  def __init__(self, model_dir, settings, strategy=None, build_generator=None,
               make_real_dataset=None, write=None):
    self.model_dir = model_dir
    self.settings = settings
    self.strategy = strategy or tf.distribute.get_strategy()
    self.write = write
    # 1. The classifier first: offline without a module fails here, in seconds.
    with self.strategy.scope():  # its variables then live where the replicas run
      self.classifier = classifier_lib.load_classifier(settings.classifier_path)
    self._build_generator = build_generator or run_dir.build_generator_from_config
    self._make_real_dataset = make_real_dataset
    self._generator = None
    self._real = None

  @property
  def generator(self):
    if self._generator is None:
      self._generator = self._build_generator(self.model_dir, self.strategy)
    return self._generator

  def real_source(self):
    """(data set, split, data_dir) of the real side, defaults taken from the run."""
    s = self.settings
    dataset = (s.real_dataset or run_dir.config_value(self.model_dir, "train.dataset")
               or "imagenet2012")
    data_dir = s.data_dir or run_dir.config_value(self.model_dir, "train.data_dir")
    split = s.real_split
    if split is None:
      from hamgan import data  # pylint: disable=g-import-not-at-top
      split = data.dataset_info(dataset, data_dir).eval_split
    return dataset, split, data_dir

  def protocol(self):
    """The protocol label of this evaluator's rows (classifier named unless Inception)."""
    dataset, split, _ = self.real_source()
    proto = metrics.protocol(self.settings.num_samples, dataset, split)
    if self.classifier.identity != classifier_lib.INCEPTION_TFHUB:
      proto += f", classifier {os.path.basename(self.classifier.source)}"
    return proto

  def real(self):
    """Real statistics at G's resolution, from the cache when it is valid."""
    if self._real is None:
      s = self.settings
      dataset, split, data_dir = self.real_source()
      resolution = int(getattr(self.generator, "image_size"))
      key = real_stats.RealStatsKey(
          dataset=dataset, split=split, resolution=resolution,
          num_samples=s.real_num_samples or s.num_samples,
          classifier=self.classifier.identity)
      make = self._make_real_dataset or (lambda: _hamgan_dataset(
          dataset, split, data_dir, resolution, s.batch_size, self.strategy))
      self._real, _ = real_stats.load_or_compute(
          key, make, self.classifier, cache_dir=s.cache_dir, strategy=self.strategy,
          write=self.write)
    return self._real

  def checkpoints(self):
    """[(step, path)], raising a clear error when there is none."""
    if not tf.io.gfile.isdir(self.model_dir):
      raise ValueError(f"model_dir={self.model_dir!r} is not a directory; pass the "
                       "directory that hamgan-train wrote (or --watch to wait for it).")
    found = checkpoints.list_checkpoints(self.model_dir)
    if not found:
      raise ValueError(
          f"no checkpoint in {os.path.join(self.model_dir, checkpoints.CHECKPOINT_DIR)}; "
          "expected "
          "ckpt-N files written by hamgan-train. Train first, or pass the right "
          "--model_dir (or --watch to wait for them).")
    return found

  def done_keys(self):
    return {_row_key(r) for r in read_results(self.model_dir)}

  def evaluate(self, checkpoint_path):
    """Evaluates one checkpoint; returns its results row, or None if already done."""
    s = self.settings
    start = time.time()
    key = run_dir.restore_generator(self.generator, checkpoint_path, s.use_ema)
    step = checkpoints.checkpoint_step(checkpoint_path)
    row_key = (step, self.protocol(), self.classifier.identity, key)
    if row_key in self.done_keys() and not s.force:
      logging.info("step %d (%s) already evaluated under %s; skipping (--force redoes it).",
                   step, key, self.protocol())
      return None
    real = self.real()
    g = self.generator
    values, _ = evaluate_generator(
        g, self.classifier, real, s.num_samples, int(g.num_classes), int(g.z_dim),
        batch_size=s.batch_size, strategy=self.strategy, seed=s.seed, kid=s.kid,
        write=self.write)
    png = os.path.join(self.model_dir, "eval", f"samples_step_{step}.png")
    images_lib.write_png(png, images_lib.sample_grid(g, int(g.num_classes), int(g.z_dim)))
    elapsed = time.time() - start
    row = dict(
        step=step, checkpoint=checkpoint_path, generator=key, protocol=self.protocol(),
        classifier=self.classifier.identity, num_samples=s.num_samples, metrics=values,
        real_dataset=real.key.dataset, real_split=real.key.split, real_count=real.count,
        real_inception_score=real.inception_score, seed=s.seed, eval_seconds=elapsed,
        images_per_sec=s.num_samples / elapsed, wall_time=time.time(),
        config_sha256=run_dir.config_sha256(self.model_dir), samples_png=png)
    write_result(self.model_dir, row, replace=s.force)
    logging.info("step %d: %s", step, json.dumps(values, sort_keys=True))
    return row

  def evaluate_all(self):
    """Every checkpoint not yet evaluated; returns the new rows."""
    rows = [self.evaluate(path) for _, path in self.checkpoints()]
    return [r for r in rows if r is not None]

  def watch(self, poll_s=30.0, timeout_s=None):
    """Evaluates each new checkpoint as training writes it; stops after TRAINING_DONE.

    A checkpoint deleted by the trainer's max_to_keep before we reach it, or one that
    does not read back whole, is skipped with a log line. A restarted trainer is just
    more polling; the trainer removes a TRAINING_DONE left by an earlier, shorter run.
    """
    seen, rows, start = set(), [], time.time()
    while True:
      done = tf.io.gfile.exists(os.path.join(self.model_dir, run_dir.TRAINING_DONE))
      try:
        listed = checkpoints.list_checkpoints(self.model_dir)
      except tf.errors.NotFoundError:  # the trainer has not created model_dir yet
        listed = []
      pending = [(st, p) for st, p in listed if p not in seen]
      for _, path in pending:
        seen.add(path)
        try:
          row = self.evaluate(path)
        except Exception as e:  # pylint: disable=broad-except  # re-raised unless explained
          if not tf.io.gfile.exists(path + ".index"):
            logging.warning("checkpoint %s vanished before evaluation (%s); skipped.", path,
                            e)
            continue
          if checkpoints.checkpoint_problem(path, require_finite=False) is None:
            raise  # the checkpoint reads back whole: the error is not its damage
          # A truncated or partial checkpoint: the trainer restores past it as well.
          logging.warning("checkpoint %s is damaged (%s: %s); skipped.", path,
                          type(e).__name__, str(e)[:200])
          continue
        if row is not None:
          rows.append(row)
      if done and not pending:
        return rows
      if timeout_s is not None and time.time() - start > timeout_s:
        logging.warning("watch timed out after %.0f s without %s.", timeout_s,
                        run_dir.TRAINING_DONE)
        return rows
      if not pending:
        time.sleep(poll_s)


def evaluate_checkpoint(model_dir, checkpoint=None, settings=None, strategy=None, **kwargs):
  """One checkpoint (default the latest; a path, ckpt-N name or step) -> its row or None.

  The function named in docs/architecture.md; `Evaluator` is the reusable form.
  """
  ev = Evaluator(model_dir, settings or EvalSettings(), strategy=strategy, **kwargs)
  ev.checkpoints()  # a clear error when there is none
  return ev.evaluate(checkpoints.find_checkpoint(model_dir, checkpoint))


def _hamgan_dataset(dataset, split, data_dir, resolution, batch_size, strategy):
  """The real split in order, at G's resolution; whole batches only on a TPU."""
  from hamgan import data  # pylint: disable=g-import-not-at-top
  on_tpu = "TPU" in type(strategy).__name__  # static shapes: drop the last partial batch
  return data.make_dataset(dataset, split, image_size=resolution, batch_size=batch_size,
                           data_dir=data_dir, shuffle=False, repeat=False,
                           drop_remainder=on_tpu)
