"""Evaluates a generator, or the checkpoints of a run directory, into results rows.

`evaluate_generator` is the core (a generator callable and cached real statistics in,
metrics out, named by `scoring`). `Evaluator` adds the run directory (hamgan.run_dir):
for each milestone or checkpoint it rebuilds G from the config of the launch that
trained that step, restores it (the EMA generator when the checkpoint has one, unless
told otherwise), recomputes its batch-norm standing statistics when asked (`restore`;
default on for the raw generator only), records one result row (a new row whenever any setting that
changes a number differs, the config or the checkpoint's content included), writes
`eval/samples_step_N.png`, and can watch a training run until `TRAINING_DONE`.

Order of work, so that errors come before any costly step: the classifier is loaded
(offline without a local module fails here, in seconds), then the run directory is
checked for checkpoints, then G is built and restored, then real statistics, then
samples.
"""
import dataclasses
import hashlib
import json
import os
import time

from absl import logging
import tensorflow as tf

from hamgan import checkpoints
from hamgan import images as images_lib
from hamgan import run_dir
from hamgan import tpu
from hamgan.evaluation import classifier as classifier_lib
from hamgan.evaluation import features as features_lib
from hamgan.evaluation import metrics
from hamgan.evaluation import real_stats
from hamgan.evaluation import restore
from hamgan.evaluation import scoring


def evaluate_generator(generator, classifier, real, num_samples, num_classes, z_dim,
                       batch_size=100, strategy=None, seed=0, kid=False, write=None,
                       truncation=None, manifold=False, intra_fid=False, real_asked=None,
                       details=None, conditional_accuracy=False):
  """Metrics of `generator` against `real` (a real_stats.RealStats).

  Args beyond the obvious: `real_asked`, the real count asked for (a name gets
  `-vs<real count>` when fewer were used); `details`, a dict that receives row fields
  beyond the metrics (per-class intra FID).

  Returns:
    (metrics dict named by protocol, the generated Features).
  """
  feats = features_lib.generated_features(
      generator, classifier, num_samples, num_classes, z_dim, batch_size=batch_size,
      strategy=strategy, seed=seed, truncation=truncation, write=write)
  label = scoring.sample_label(num_samples, real.count, real_asked)
  against = f"{real.key.dataset.replace('/', '_')}-{real.key.split}"
  values, extra = scoring.score(real, feats, label, against, kid=kid, manifold=manifold,
                                intra_fid=intra_fid,
                                conditional_accuracy=conditional_accuracy,
                                num_classes=num_classes)
  if details is not None:
    details.update(extra)
  return values, feats


class DamagedCheckpointError(ValueError):
  """The checkpoint asked for does not read back whole."""


@dataclasses.dataclass
class EvalSettings:
  """What hamgan-eval's flags set."""
  num_samples: int = 50000
  batch_size: int = 200  # as hamgan-eval --batch_size: it changes standing statistics
  real_dataset: str = None  # None: the run's train.dataset, else imagenet2012
  real_split: str = None  # None: the data set's evaluation split
  real_num_samples: int = None  # None: the same as num_samples
  data_dir: str = None  # None: the run's train.data_dir, else tfds's default
  classifier_path: str = None
  use_ema: bool = None  # None: the EMA generator when the checkpoint has one
  kid: bool = False
  manifold: bool = False  # precision/recall (k=3), density/coverage (k=5)
  intra_fid: bool = False
  conditional_accuracy: bool = False  # needs a classifier of G's own classes
  truncation: float = None
  standing_batches: int = None  # None: 0 for the EMA G, restore.DEFAULT_BATCHES for the raw
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
    build_generator: callable (config_path, strategy) -> built generator; the default
      rebuilds hamgan.models.Generator from that gin config.
    make_real_dataset: zero-argument callable returning the batched real data set;
      the default reads settings.real_dataset/real_split with hamgan.data at G's size.
    write: progress sink (default absl logging).

  Settings left None (real data set, split, data_dir) are read from the run's config
  when first needed, i.e. once a checkpoint exists: a watcher started beside the
  trainer may begin before the run directory is there.
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
    self._build_generator = build_generator or restore.build_generator_from_config
    self._make_real_dataset = make_real_dataset
    self._generator = None
    self._generator_config = None  # (path, sha256) of the config G was built from
    self._real = None
    self._real_key = None

  def generator_for(self, step):
    """G built from the config of the launch that trained `step` (rebuilt on a change)."""
    config = run_dir.config_for_step(self.model_dir, step)
    wanted = (config, run_dir.file_sha256(config))
    if self._generator is None or wanted != self._generator_config:
      self._generator = self._build_generator(config, self.strategy)
      self._generator_config = wanted
    return self._generator

  @property
  def generator(self):
    """The G of the newest launch (what real statistics are sized for)."""
    if self._generator is None:
      return self.generator_for(None)
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

  def real_asked(self):
    return self.settings.real_num_samples or self.settings.num_samples

  def protocol(self, real_count=None):
    """The protocol label of this evaluator's rows (classifier named unless Inception)."""
    dataset, split, _ = self.real_source()
    label = scoring.sample_label(self.settings.num_samples, real_count, self.real_asked())
    proto = f"{label}/{dataset.replace('/', '_')}-{split}"
    if self.classifier.identity != classifier_lib.INCEPTION_TFHUB:
      proto += f", classifier {os.path.basename(self.classifier.source)}"
    return proto

  def real_key(self):
    """The RealStatsKey: everything the real features depend on."""
    if self._real_key is None:
      dataset, split, data_dir = self.real_source()
      self._real_key = real_stats.RealStatsKey(
          dataset=dataset, split=split, resolution=int(self.generator.image_size),
          num_samples=self.real_asked(), classifier=self.classifier.identity,
          data_dir=data_dir, source_version=real_stats.source_version(dataset, data_dir))
    return self._real_key

  def real(self):
    """Real statistics at G's resolution, from the cache when it is valid."""
    if self._real is None:
      s, key = self.settings, self.real_key()
      make = self._make_real_dataset or (lambda: hamgan_dataset(
          key.dataset, key.split, key.data_dir, key.resolution, s.batch_size,
          self.strategy))
      self._real, _ = real_stats.load_or_compute(
          key, make, self.classifier, cache_dir=s.cache_dir, strategy=self.strategy,
          write=self.write)
      if self._real.count < key.num_samples:
        logging.warning(
            "%s/%s gave %d real images of the %d asked for: metric names say -vs%d.",
            key.dataset, key.split, self._real.count, key.num_samples, self._real.count)
    return self._real

  def checkpoints(self):
    """[(step, path)], raising a clear error when there is none."""
    if not tf.io.gfile.isdir(self.model_dir):
      raise ValueError(f"model_dir={self.model_dir!r} is not a directory; pass the "
                       "directory that hamgan-train wrote (or --watch to wait for it).")
    found = checkpoints.list_evaluable(self.model_dir)
    if not found:
      raise ValueError(
          f"no checkpoint in {os.path.join(self.model_dir, run_dir.CHECKPOINT_DIR)}; "
          "expected "
          "ckpt-N files written by hamgan-train. Train first, or pass the right "
          "--model_dir (or --watch to wait for them).")
    return found

  def done_keys(self):
    return {run_dir.row_key(r) for r in run_dir.read_results(self.model_dir)}

  def key_fields(self, step, checkpoint_path, generator_key):
    """The row fields that run_dir.row_key reads: every setting that changes a number."""
    s, key = self.settings, self.real_key()
    return dict(
        step=step, checkpoint_sha256=checkpoints.fingerprint(checkpoint_path),
        config_sha256=self._generator_config[1], batch_size=s.batch_size,
        generator=generator_key,
        standing_batches=restore.batches_for(generator_key, s.standing_batches),
        classifier=self.classifier.identity,
        metric_set=scoring.metric_set(s.kid, s.manifold, s.intra_fid,
                                      s.conditional_accuracy), seed=s.seed,
        truncation=s.truncation, num_samples=s.num_samples, real_dataset=key.dataset,
        real_split=key.split, real_data_dir=key.data_dir, real_num_samples=key.num_samples,
        real_key_sha256=hashlib.sha256(key.to_json().encode()).hexdigest()[:16],
        metrics_implementation=metrics.implementation_name())

  def evaluate(self, checkpoint_path):
    """Evaluates one checkpoint; returns its results row, or None if already done."""
    s = self.settings
    start = time.time()
    problem = checkpoints.checkpoint_problem(checkpoint_path, require_finite=False)
    if problem is not None:
      raise DamagedCheckpointError(
          f"checkpoint {checkpoint_path} is damaged ({problem}); it cannot be evaluated. "
          "Pass --checkpoint=<another step> (--all skips damaged ones).")
    step = checkpoints.checkpoint_step(checkpoint_path)
    g = self.generator_for(step)
    key = restore.restore_generator(g, checkpoint_path, s.use_ema)
    fields = self.key_fields(step, checkpoint_path, key)
    if run_dir.row_key(fields) in self.done_keys() and not s.force:
      logging.info("step %d (%s) already evaluated with these settings; skipping "
                   "(--force redoes it).", step, key)
      return None
    real = self.real()
    if fields["standing_batches"]:  # in memory only: the checkpoint is not written
      restore.recompute(g, fields["standing_batches"], s.batch_size, seed=s.seed + 1,
                        truncation=s.truncation)
    details = {}
    values, _ = evaluate_generator(
        g, self.classifier, real, s.num_samples, int(g.num_classes), int(g.z_dim),
        batch_size=s.batch_size, strategy=self.strategy, seed=s.seed, kid=s.kid,
        write=self.write, truncation=s.truncation, manifold=s.manifold,
        intra_fid=s.intra_fid, real_asked=self.real_asked(), details=details,
        conditional_accuracy=s.conditional_accuracy)
    png = os.path.join(self.model_dir, "eval", f"samples_step_{step}.png")
    images_lib.write_png(png, images_lib.sample_grid(g, int(g.num_classes), int(g.z_dim)))
    elapsed = time.time() - start
    row = dict(
        fields, checkpoint=checkpoint_path, protocol=self.protocol(real.count),
        metrics=values, real_count=real.count, real_inception_score=real.inception_score,
        eval_seconds=elapsed, images_per_sec=s.num_samples / elapsed, wall_time=time.time(),
        config=os.path.basename(self._generator_config[0]), samples_png=png, **details)
    run_dir.write_result(self.model_dir, row, replace=s.force)
    logging.info("step %d: %s", step, json.dumps(values, sort_keys=True))
    return row

  def evaluate_all(self, steps=None):
    """Every milestone and checkpoint not yet evaluated (damaged ones skipped with a
    warning), or only those of `steps`; returns the new rows."""
    found = self.checkpoints()
    if steps is not None:
      missing = sorted(set(steps) - {step for step, _ in found})
      if missing:
        raise ValueError(
            f"--steps: no milestone or checkpoint at step(s) {missing} in {self.model_dir}; "
            f"it has {[step for step, _ in found]}. Pass steps from that list.")
      found = [(step, path) for step, path in found if step in steps]
    rows = []
    for _, path in found:
      try:
        rows.append(self.evaluate(path))
      except DamagedCheckpointError as e:
        logging.warning("%s", e)
    return [r for r in rows if r is not None]

  def watch(self, poll_s=30.0, timeout_s=None):
    """Evaluates each new checkpoint as training writes it; stops after TRAINING_DONE.

    A checkpoint deleted by the trainer's max_to_keep before we reach it, or one that
    does not read back whole, is skipped with a log line. A restarted trainer is just
    more polling; the trainer removes a TRAINING_DONE left by an earlier, shorter run.
    """
    seen, rows, start = set(), [], time.time()
    while True:
      done = run_dir.is_done(self.model_dir)
      try:
        listed = checkpoints.list_evaluable(self.model_dir)
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
                        run_dir.DONE_FILE)
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


def hamgan_dataset(dataset, split, data_dir, resolution, batch_size, strategy):
  """The real split in order, at G's resolution; whole batches only on a TPU."""
  from hamgan import data  # pylint: disable=g-import-not-at-top
  on_tpu = tpu.is_tpu_strategy(strategy)  # static shapes: drop the last partial batch
  return data.make_dataset(dataset, split, image_size=resolution, batch_size=batch_size,
                           data_dir=data_dir, shuffle=False, repeat=False,
                           drop_remainder=on_tpu)
