"""Data: the official benchmark vocabularies, datasets in detectron2 layouts, training augmentation.

    from ebseg_lite.data import benchmark_vocabulary, build_dataset, seen_split
    voc = benchmark_vocabulary("ade20k_150")        # official prompts .names, official mask .seen (67/150)
    seen, n_seen, n_new = seen_split(["cat, kitty", "lamp"])            # your own list: synonym rule
    ds = build_dataset("ade20k_150", root="/data")                     # or $EBSEG_DATA
    ds[0]["image"], ds[0]["label"]                                     # (3, H, W) uint8, (H, W) int64
"""
from ebseg_lite.data.benchmarks import BENCHMARK_VOCABULARIES, BenchmarkVocabulary, benchmark_vocabulary
from ebseg_lite.data.vocabularies import (
    BUILTIN_VOCABULARIES,
    TRAIN_VOCABULARY,
    load_class_names,
    official_benchmark,
    read_class_file,
    seen_for,
    seen_split,
    training_synonyms,
)
from ebseg_lite.data.datasets import FolderDataset, SemSegDataset, build_dataset, read_image, read_label
from ebseg_lite.data.layouts import BENCHMARKS, BenchmarkSpec, resolve_data_root

__all__ = [
    "BENCHMARKS", "BENCHMARK_VOCABULARIES", "BUILTIN_VOCABULARIES", "BenchmarkSpec", "BenchmarkVocabulary",
    "FolderDataset", "SemSegDataset", "TRAIN_VOCABULARY", "benchmark_vocabulary", "build_dataset",
    "load_class_names", "official_benchmark", "read_class_file", "read_image", "read_label",
    "resolve_data_root", "seen_for", "seen_split", "training_synonyms",
]
