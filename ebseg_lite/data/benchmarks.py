"""The official vocabularies of the six EBSeg benchmarks: prompt strings and seen masks (paper sec. 3.4).

These are facts about the datasets and the official evaluation, shipped as data in
``ebseg_lite/data/benchmarks/<name>.json`` (label-id order, one class per line) and rebuilt from
the official repositories by ``tools/gen_benchmark_vocabularies.py``, which records the source
commits in each file:

* ``names``: the K strings the official model fills its 14 templates with -- detectron2's
  ``stuff_classes`` as registered by the official code (detectron2's own list for ADE20K-150),
  each stripped ("person", "diningtable", "road, route"). The released checkpoint's background
  embedding, the SSC text-cosine target and the training classifier were all made with these.
* ``seen``: (K,) bool, the official mask: FC-CLIP's synonym lists, a class being seen when one of
  its synonyms is among the COCO-Stuff training synonyms. Counts: VOC 20/20, PC-59 51/59,
  PC-459 94/459, ADE-150 67/150, ADE-847 115/847, COCO-Stuff 171/171 (the training set).
* ``display``: a short name per class for legends and tables.

A user's own vocabulary does not come from here: ``ebseg_lite.vocabulary.seen_mask`` applies the
same synonym rule to the user's strings. Example::

    from ebseg_lite.data.benchmarks import benchmark_vocabulary
    voc = benchmark_vocabulary("ade20k_150")
    voc.names[25], bool(voc.seen[25]), voc.num_seen    # ('house', False, 67)
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Tuple

import torch

_DIR = Path(__file__).resolve().parent / "benchmarks"

#: The benchmark vocabularies shipped with the package and their number of classes K.
BENCHMARK_VOCABULARIES = {
    "coco_stuff_171": 171,
    "ade20k_150": 150,
    "ade20k_847": 847,
    "pcontext_59": 59,
    "pcontext_459": 459,
    "voc_20": 20,
}


@dataclass(frozen=True)
class BenchmarkVocabulary:
    """One benchmark's official vocabulary, K classes in label-id order.

    Attributes:
        name: the ebseg_lite benchmark name (``"ade20k_150"``).
        official_dataset: the detectron2 dataset name the official code evaluates
            (``"ade20k_sem_seg_val"``).
        names: K prompt strings, exactly as the official text classifier receives them.
        display: K short names (the first comma-separated part of each prompt).
        seen_flags: K bools, the official seen mask (``seen`` gives it as a tensor).
        synonyms: K tuples of FC-CLIP synonyms, raw as the official rule splits them (unstripped).
        sources: where each field came from (repository, commit, path), as recorded by the generator.
    """

    name: str
    official_dataset: str
    names: Tuple[str, ...]
    display: Tuple[str, ...]
    seen_flags: Tuple[bool, ...]
    synonyms: Tuple[Tuple[str, ...], ...]
    sources: dict = field(compare=False, hash=False, repr=False)

    @property
    def seen(self) -> torch.Tensor:
        """(K,) bool tensor, a fresh copy on each call."""
        return torch.tensor(self.seen_flags, dtype=torch.bool)

    @property
    def num_seen(self) -> int:
        return sum(self.seen_flags)

    @property
    def num_new(self) -> int:
        return len(self.seen_flags) - self.num_seen

    def __len__(self) -> int:
        return len(self.names)


def benchmark_vocabulary(name: str) -> BenchmarkVocabulary:
    """The official vocabulary of a benchmark (see the module docstring).

    Args:
        name: one of ``coco_stuff_171``, ``ade20k_150``, ``ade20k_847``, ``pcontext_59``,
            ``pcontext_459``, ``voc_20``.
    Raises:
        KeyError: for any other name, listing the valid ones.
        ValueError: if the shipped data file is damaged (wrong class count or ids out of order).
    """
    if name not in BENCHMARK_VOCABULARIES:
        raise KeyError(
            f"no official vocabulary for {name!r}; benchmark vocabularies are "
            f"{sorted(BENCHMARK_VOCABULARIES)} (for your own class names use "
            "ebseg_lite.vocabulary.seen_mask)"
        )
    return _load(name)


@lru_cache(maxsize=None)
def _load(name: str) -> BenchmarkVocabulary:
    path = _DIR / f"{name}.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    classes = doc["classes"]
    k = BENCHMARK_VOCABULARIES[name]
    if len(classes) != k or [c["id"] for c in classes] != list(range(k)):
        raise ValueError(f"{path} must list classes with ids 0..{k - 1} in order; it is damaged")
    return BenchmarkVocabulary(
        name=doc["name"],
        official_dataset=doc["official_dataset"],
        names=tuple(c["prompt"] for c in classes),
        display=tuple(c["display"] for c in classes),
        seen_flags=tuple(bool(c["seen"]) for c in classes),
        synonyms=tuple(tuple(c["synonyms"]) for c in classes),
        sources=doc["sources"],
    )
