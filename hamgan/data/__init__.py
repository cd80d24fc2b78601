"""Input pipelines: tensorflow-datasets, image folders and the offline digits / MNIST.

`make_dataset` builds one host's pipeline, `distributed_dataset` (or `distribute`, for
any host pipeline) spreads it over a tf.distribute strategy, and `dataset_info`
answers what the trainer must check before it touches a device (class count,
largest image size). Data sets are chosen by name
from `hamgan.data.registry`; `register_dataset` adds one.
"""
from hamgan.data.pipelines import DATASET_NAMES
from hamgan.data.pipelines import DatasetInfo
from hamgan.data.pipelines import dataset_info
from hamgan.data.pipelines import distribute
from hamgan.data.pipelines import distributed_dataset
from hamgan.data.pipelines import make_dataset
from hamgan.data.registry import DatasetSpec
from hamgan.data.registry import dataset_names
from hamgan.data.registry import dataset_spec
from hamgan.data.registry import register_dataset

__all__ = ["DATASET_NAMES", "DatasetInfo", "DatasetSpec", "dataset_info", "dataset_names",
           "dataset_spec", "distribute", "distributed_dataset", "make_dataset", "register_dataset"]
