"""Training: one typed config and its presets (:mod:`.config`), and the trainer (:mod:`.trainer`):
one loop, its progress as events, ``stop()``, and its state as a dict.

Dataset loading lives a layer up, in :mod:`digitnet.runner`; checkpoints in
:mod:`digitnet.checkpoint`.
"""

from digitnet.training.config import PRESETS, TrainConfig, make_config, with_overrides
from digitnet.training.trainer import HISTORY, Progress, Trainer, pixel_stats, train

__all__ = ["TrainConfig", "PRESETS", "make_config", "with_overrides", "Progress", "HISTORY",
           "Trainer", "train", "pixel_stats"]
