"""The trainer's input: which examples each host reads, checked, and where a resume starts.

`host_dataset` builds one host's pipeline of per-replica batches from a
`dataset_fn(input_context, per_replica_batch)` (by default hamgan.data's
make_dataset for train.dataset), checks its static shapes, and then:

* several hosts, `train.input_sharding = 'by_host'` (default): each host's
  dataset_fn reads its own share of the split (the input context says which);
* several hosts, `'by_batch_row'`: every host reads the whole split in the same
  seeded order and keeps its replicas' batches of every global batch, i.e. the
  rows r*b..(r+1)*b-1 of replica r, exactly what one host with all the replicas
  (or one device with the global batch) would train on;
* on resume, `resume_input = 'skip'` fast-forwards past the batches used, and
  `'fresh'` seeds the new pipeline's order by (seed, resume step) (`input_seed`),
  so a resumed run does not replay the order the run began with.
"""
from absl import logging
import gin
import numpy as np
import tensorflow as tf


def input_seed(config, start_step):
  """The shuffle seed of the pipeline of a launch that starts at `start_step`."""
  if not start_step or config.resume_input == "skip":
    return config.seed
  seed = int(np.random.SeedSequence([config.seed, int(start_step)]).generate_state(1)[0])
  logging.info("Resuming at step %d with a fresh input pipeline: its order is seeded by "
               "(train.seed=%d, step %d) -> %d, not replaying the first epoch's order.",
               start_step, config.seed, start_step, seed)
  return seed


def _refuse_make_dataset_bindings():
  # The trainer passes name and data_dir itself, so these bindings would be ignored.
  for param, instead in (("make_dataset.name", "train.dataset"),
                         ("make_dataset.data_dir", "train.data_dir")):
    try:
      value = gin.query_parameter(param)
    except ValueError:
      continue
    raise ValueError(f"gin binds {param} = {value!r}, which hamgan-train does not use; "
                     f"bind {instead} instead.")


def tfds_dataset_fn(config, image_size, num_classes, seed):
  """A dataset_fn reading train.dataset through hamgan.data, checked against the models."""
  from hamgan import data  # pylint: disable=import-outside-toplevel
  _refuse_make_dataset_bindings()
  info = data.dataset_info(config.dataset, config.data_dir)
  info.check_image_size(image_size)
  if info.num_classes != num_classes:
    raise ValueError(
        f"data set {config.dataset!r} has {info.num_classes} classes but the models were "
        f"built for num_classes={num_classes}; bind Generator.num_classes and "
        f"Discriminator.num_classes to {info.num_classes}.")
  split = config.split or info.train_split

  def dataset_fn(input_context, per_replica_batch):
    return data.make_dataset(config.dataset, split, image_size, per_replica_batch,
                             data_dir=config.data_dir, seed=seed,
                             input_context=input_context)
  return dataset_fn


def _check_spec(ds, per_replica, image_size):
  images, labels = ds.element_spec
  want = (per_replica, image_size, image_size, 3)
  if tuple(images.shape) != want or images.dtype != tf.float32:
    raise ValueError(
        f"the input pipeline gives images {images.dtype.name}{tuple(images.shape)}, the "
        f"trainer needs float32{want} (a static per-replica batch: batch with "
        "drop_remainder=True, at the models' image size).")
  if tuple(labels.shape) != (per_replica,) or not labels.dtype.is_integer:
    raise ValueError(f"the input pipeline gives labels {labels.dtype.name}"
                     f"{tuple(labels.shape)}; the trainer needs int labels ({per_replica},).")


def host_dataset(dataset_fn, input_context, per_replica, config, image_size, start_step):
  """One host's checked pipeline of per-replica batches (see the module docstring)."""
  hosts = input_context.num_input_pipelines
  local_replicas = input_context.num_replicas_in_sync // hosts
  if hosts > 1 and config.input_sharding == "by_batch_row":
    whole = tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0,
                                       num_replicas_in_sync=input_context.num_replicas_in_sync)
    ds = dataset_fn(whole, per_replica)
    _check_spec(ds, per_replica, image_size)
    # Per-replica batches come in replica order; this host's replicas are a block of them.
    ds = ds.batch(local_replicas, drop_remainder=True)
    ds = ds.shard(hosts, input_context.input_pipeline_id).unbatch()
  else:
    ds = dataset_fn(input_context, per_replica)
    _check_spec(ds, per_replica, image_size)
  if start_step and config.resume_input == "skip":
    # Each pipeline feeds its replicas round robin, d_steps batches per iteration.
    ds = ds.skip(start_step * config.d_steps * local_replicas)
  return ds
