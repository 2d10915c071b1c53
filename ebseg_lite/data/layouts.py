"""Where each benchmark lives under the data root (detectron2's dataset layouts).

The folder names follow the official EBSeg README's preparation scripts (``prepare_*.py``), which
write detectron2's ``<dataset>/images_detectron2`` / ``annotations_detectron2`` folders.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Union

PathLike = Union[str, Path]


@dataclass(frozen=True)
class BenchmarkSpec:
    """Where one benchmark split lives under the data root and how its labels are stored."""

    name: str
    vocabulary: str  # key for load_class_names
    folder: str  # the dataset's own folder under the data root
    image_dir: str  # relative to the data root
    label_dir: str  # relative to the data root
    label_ext: str  # ".png" or ".tif"
    ignore_value: int
    shared_image_dir: bool = False  # images folder holds more than this split (VOC's JPEGImages)


def _spec(name, vocab, folder, images, labels, ext, ignore, shared=False) -> BenchmarkSpec:
    return BenchmarkSpec(name, vocab, folder, f"{folder}/{images}", f"{folder}/{labels}", ext, ignore, shared)


BENCHMARKS: Dict[str, BenchmarkSpec] = {
    s.name: s
    for s in [
        _spec("coco_stuff_171_train", "coco_stuff_171", "coco-stuff", "images/train2017",
              "stuffthingmaps_detectron2/train2017", ".png", 255),
        _spec("coco_stuff_171_val", "coco_stuff_171", "coco-stuff", "images/val2017",
              "stuffthingmaps_detectron2/val2017", ".png", 255),
        _spec("ade20k_150", "ade20k_150", "ADEChallengeData2016", "images/validation",
              "annotations_detectron2/validation", ".png", 255),
        _spec("ade20k_847", "ade20k_847", "ADE20K_2021_17_01", "images_detectron2/validation",
              "annotations_detectron2/validation", ".tif", 65535),
        _spec("pcontext_59", "pcontext_59", "pcontext59-d2", "val/image", "val/label", ".png", 255),
        _spec("pcontext_459", "pcontext_459", "pcontext459-d2", "val/image", "val/label", ".tif", 65535),
        _spec("voc_20", "voc_20", "VOC2012", "JPEGImages", "annotations_detectron2/val", ".png", 255,
              shared=True),
    ]
}


def resolve_data_root(root: Optional[PathLike] = None) -> Path:
    """The data root: ``root`` if given, else ``$EBSEG_DATA``, else ``$DETECTRON2_DATASETS``."""
    for value in (root, os.environ.get("EBSEG_DATA"), os.environ.get("DETECTRON2_DATASETS")):
        if value:
            return Path(value).expanduser()
    raise RuntimeError(
        "no data root: pass root=..., or set EBSEG_DATA (or DETECTRON2_DATASETS) to the folder "
        "that holds coco-stuff/, ADEChallengeData2016/, VOC2012/, ... (detectron2 layout)"
    )
