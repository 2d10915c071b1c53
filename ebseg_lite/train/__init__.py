"""Training EBSeg-lite: the recipe (``config``), losses of one step (``step``), the loop (``trainer``)."""
from ebseg_lite.train.config import TRAIN_PRESETS, TrainConfig, apply_sets, get_train_preset
from ebseg_lite.train.step import compute_losses, semantic_targets, ssc_term, training_outputs
from ebseg_lite.train.trainer import Trainer, build_train_dataset

__all__ = ["TRAIN_PRESETS", "TrainConfig", "apply_sets", "get_train_preset", "compute_losses", "semantic_targets",
           "ssc_term", "training_outputs", "Trainer", "build_train_dataset"]
