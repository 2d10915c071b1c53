"""The own-data path shared by ``train``, ``segment`` and ``eval``: one preset name per model, datasets
named ``folder:DIR``, bad items skipped on request, and a loud word when encoders are random.

A *training* preset (``cpu_tiny``, ``paper_b``, ``toy``) names the model it trains (its ``preset``
field) and the encoders it starts from (``clip_pretrained``, ``sam_checkpoint``); ``segment`` and
``eval`` accept it wherever a model preset is expected and build that model with those encoders,
so the name you trained with is the name you segment and evaluate with.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional, Tuple

from ebseg_lite import registry
from ebseg_lite.config import preset_names
from ebseg_lite.data.datasets import FolderDataset, SemSegDataset, build_dataset
from ebseg_lite.data.layouts import BENCHMARKS
from ebseg_lite.train.config import TrainConfig, get_train_preset, train_preset_names

FOLDER = "folder:"


def preset_choices() -> List[str]:
    """Every model preset and every training preset (a training preset stands for its model)."""
    return sorted(set(preset_names()) | set(train_preset_names()))


def resolve_preset(name: str) -> Tuple[str, Optional[TrainConfig]]:
    """A model preset name as it is, or a training preset name -> (its model preset, its TrainConfig).

    A name that is both (``toy``) is the model preset with that training preset's config."""
    train = get_train_preset(name) if name in train_preset_names() else None
    if name in preset_names():
        return name, train
    if train is not None:
        return train.preset, train
    raise ValueError(f"unknown preset {name!r}; model presets: {preset_names()}, "
                     f"training presets: {train_preset_names()}")


def encoder_sources(name: str, clip_pretrained: Optional[str] = None,
                    sam_checkpoint: Optional[str] = None) -> Tuple[str, Optional[str], Optional[str]]:
    """(model preset, CLIP weights, SAM weights) for ``--preset name``: explicit options first, then
    the training preset's own sources (so a ``paper_b`` checkpoint is rebuilt on OpenAI's CLIP)."""
    preset, train = resolve_preset(name)
    if train is not None:
        clip_pretrained = clip_pretrained or train.clip_pretrained
        sam_checkpoint = sam_checkpoint or train.sam_checkpoint
    return preset, clip_pretrained, sam_checkpoint


def random_encoders(preset: str, clip_pretrained: Optional[str], sam_checkpoint: Optional[str]) -> List[str]:
    """Which of CLIP and SAM a model built this way starts from random weights (empty: none)."""
    if registry.has("weights_check", preset):  # a plug-in's preset with its own pretrained encoders (toy)
        return []
    if preset == "tiny":
        return ["CLIP", "SAM"]
    out = [] if clip_pretrained else ["CLIP"]
    if not (sam_checkpoint or os.environ.get("EBSEG_SAM_CHECKPOINT")):
        out.append("SAM")
    return out


def warn_random_encoders(cfg: TrainConfig, file=None) -> List[str]:
    """Print a loud banner to stderr when training starts from random CLIP and/or SAM. Returns them."""
    which = random_encoders(cfg.preset, cfg.clip_pretrained, cfg.sam_checkpoint)
    if which:
        bar = "!" * 78
        print(f"{bar}\n!! WARNING: training preset {cfg.name!r} (model {cfg.preset!r}) starts from RANDOM "
              f"{' and '.join(which)} weights.\n!! Open-vocabulary segmentation needs pretrained encoders: "
              "a model trained like this\n!! learns only from your masks and will not recognise new class "
              "names. For CPU\n!! experiments use --preset toy (pretrained toy CLIP and SAM, toy-world "
              "words only);\n!! for real images --preset paper_b with CLIP 'openai' and "
              f"--set sam_checkpoint=sam_vit_b_01ec64.pth.\n{bar}", file=file or sys.stderr)
    return which


def check_dataset_name(name: str) -> None:
    """Refuse a name that is neither ``folder:DIR`` nor a benchmark, with a hint (a bare folder: write
    ``folder:DIR``)."""
    if name.startswith(FOLDER) or name in BENCHMARKS:
        return
    if Path(name).expanduser().is_dir():
        raise ValueError(f"--dataset {name!r} is a folder, not a benchmark name: write --dataset folder:{name} "
                         "for your own data (images/, labels/, classes.txt inside)")
    raise ValueError(f"unknown dataset {name!r}: a benchmark ({', '.join(sorted(BENCHMARKS))}) or "
                     "folder:DIR for your own data (DIR/images, DIR/labels, DIR/classes.txt)")


def open_dataset(name: str, root: Optional[str] = None, *, on_error: str = "raise") -> SemSegDataset:
    """``folder:DIR`` (``DIR/images``, ``DIR/labels``, ``DIR/classes.txt``) or a benchmark name."""
    check_dataset_name(name)
    if name.startswith(FOLDER):
        return FolderDataset(name[len(FOLDER):], on_error=on_error)
    return build_dataset(name, root, on_error=on_error)


def add_on_error(parser) -> None:
    parser.add_argument("--on-error", dest="on_error", choices=["raise", "skip"], default="raise",
                        help="bad data items (unreadable, size mismatch, id outside classes.txt): stop with the "
                             "file named (raise) or leave them out with a warning, counted (skip)")
