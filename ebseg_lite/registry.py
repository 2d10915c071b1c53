"""Registries: name -> thing tables that plug-ins fill (timm's model registry, segment-anything's
``sam_model_registry``).

The core registers its own entries (presets ``tiny``, ``vit_b``, ``vit_l``; the ViLD templates; the
benchmark vocabularies). Plug-ins outside the core, such as the toy world, register theirs when
their module is imported. The core never imports a plug-in by name in code: :data:`PLUGINS` lists
module paths that are imported lazily, the first time a lookup misses, so ``build_model("toy")``
works without the core depending on the toy world.

Tables (``KINDS``):
    preset        name -> () -> EBSegConfig
    train_preset  name -> () -> TrainConfig fields (dict)
    tokenizer     name -> (clip_cfg: dict, weights_path: Optional[str]) -> tokenizer
    templates     name -> tuple of prompt templates ("a photo of a {}.")
    vocabulary    name -> () -> list of class names
    train_dataset name -> (TrainConfig) -> torch Dataset with ``class_names`` and ``ignore_value``
    released      name -> (device) -> a trained model for ``get_model(preset, "released")``
    weights_check name -> (clip_path, sam_path) -> None, raising WeightsUnavailable with a how-to
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, List

KINDS = ("preset", "train_preset", "tokenizer", "templates", "vocabulary", "train_dataset", "released",
         "weights_check")

#: Modules imported on a lookup miss; each registers its entries at import time.
PLUGINS: List[str] = ["ebseg_lite.toyworld.plugin"]

_TABLES: Dict[str, Dict[str, Any]] = {k: {} for k in KINDS}
_loaded = False


def register(kind: str, name: str, value: Any) -> Any:
    """Add ``value`` under ``name`` in table ``kind`` (re-registering the same name replaces it)."""
    if kind not in _TABLES:
        raise KeyError(f"unknown registry {kind!r}; one of {KINDS}")
    _TABLES[kind][name] = value
    return value


def _load_plugins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for mod in PLUGINS:
            importlib.import_module(mod)


def lookup(kind: str, name: str) -> Any:
    """The entry ``name`` of table ``kind``; plug-ins are loaded on the first miss."""
    table = _TABLES[kind]
    if name not in table:
        _load_plugins()
    if name not in table:
        raise KeyError(f"unknown {kind} {name!r}; known: {', '.join(sorted(table)) or '(none)'}")
    return table[name]


def has(kind: str, name: str) -> bool:
    try:
        lookup(kind, name)
        return True
    except KeyError:
        return False


def names(kind: str) -> List[str]:
    """All registered names of a table (plug-ins included)."""
    _load_plugins()
    return sorted(_TABLES[kind])


def registrar(kind: str, name: str) -> Callable[[Any], Any]:
    """Decorator form of :func:`register`."""
    return lambda value: register(kind, name, value)
