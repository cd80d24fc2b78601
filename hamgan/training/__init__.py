"""Training: strategy resolution, GAN losses and the distributed trainer.

Importing this package registers the gin configurables `train` (TrainConfig),
`hinge` and `non_saturating`.
"""
from hamgan.training.losses import hinge
from hamgan.training.losses import non_saturating
from hamgan.training.strategy import resolve_strategy
from hamgan.training.hooks import Action
from hamgan.training.hooks import Hook
from hamgan.training.trainer import TrainConfig
from hamgan.training.trainer import Trainer

__all__ = ["Action", "Hook", "TrainConfig", "Trainer", "hinge", "non_saturating", "resolve_strategy"]
