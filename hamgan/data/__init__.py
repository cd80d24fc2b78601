"""Input pipelines: tensorflow-datasets, image folders and the offline digits.

`make_dataset` builds one host's pipeline, `distributed_dataset` spreads it over a
tf.distribute strategy, and `dataset_info` answers what the trainer must check before
it touches a device (class count, largest image size).
"""
from hamgan.data.pipelines import DATASET_NAMES
from hamgan.data.pipelines import DatasetInfo
from hamgan.data.pipelines import dataset_info
from hamgan.data.pipelines import distributed_dataset
from hamgan.data.pipelines import make_dataset

__all__ = ["DATASET_NAMES", "DatasetInfo", "dataset_info", "distributed_dataset",
           "make_dataset"]
