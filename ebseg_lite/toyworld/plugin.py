"""The toy world's plug-in: every entry it adds to the core registries, in one place.

:mod:`ebseg_lite.registry` imports this module lazily, the first time a lookup misses, so
``build_model("toy")``, ``get_train_preset("toy")``, ``load_class_names("toyworld_seen")`` and
``get_model("toy", "released")`` work while the core never imports the toy world.
"""
from __future__ import annotations

from ebseg_lite import registry
from ebseg_lite.toyworld.experiments import toy_model
from ebseg_lite.toyworld.presets import (TOY_TEMPLATES, check_toy_weights, toy, toy_tokenizer, toy_train_dataset,
                                         toy_train_preset)
from ebseg_lite.toyworld.world import ToyWorld


def toy_released(device: str = "cpu"):
    """The shipped trained toy EBSeg (seed 0, SSC on), as a predictor."""
    return toy_model().to(device)


registry.register("preset", "toy", toy)
registry.register("weights_check", "toy", check_toy_weights)
registry.register("tokenizer", "toy", toy_tokenizer)
registry.register("templates", "toy", TOY_TEMPLATES)
registry.register("vocabulary", "toyworld", lambda: list(ToyWorld().class_names))
registry.register("vocabulary", "toyworld_seen", lambda: list(ToyWorld().seen_names))
registry.register("train_dataset", "toyworld", toy_train_dataset)
registry.register("train_preset", "toy", toy_train_preset)
registry.register("released", "toy", toy_released)
