"""Data: class-name vocabularies, benchmark datasets in detectron2 layouts, training augmentation.

    from ebseg_lite.data import load_class_names, seen_split, build_dataset, FolderDataset
    seen, n_seen, n_new = seen_split(load_class_names("ade20k_150"))   # (K,) bool vs COCO-Stuff
    ds = build_dataset("ade20k_150", root="/data")                     # or $EBSEG_DATA
    ds[0]["image"], ds[0]["label"]                                     # (3, H, W) uint8, (H, W) int64
"""
from ebseg_lite.data.vocabularies import (
    BUILTIN_VOCABULARIES,
    TRAIN_VOCABULARY,
    USER_CLASS_FILES,
    load_class_names,
    read_class_file,
    seen_split,
)
from ebseg_lite.data.datasets import FolderDataset, SemSegDataset, build_dataset, read_image, read_label
from ebseg_lite.data.layouts import BENCHMARKS, BenchmarkSpec, resolve_data_root

__all__ = [
    "BENCHMARKS", "BUILTIN_VOCABULARIES", "BenchmarkSpec", "FolderDataset", "SemSegDataset",
    "TRAIN_VOCABULARY", "USER_CLASS_FILES", "build_dataset", "load_class_names", "read_class_file",
    "read_image", "read_label", "resolve_data_root", "seen_split",
]
