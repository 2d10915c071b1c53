"""Vocabularies by name, users' class-name files, and the seen/new split (paper section 3.4).

Two kinds of vocabulary, two seen rules:

* **benchmarks** (``coco_stuff_171``, ``ade20k_150``, ``ade20k_847``, ``pcontext_59``,
  ``pcontext_459``, ``voc_20``): the official prompt strings and the official seen mask, shipped as
  data (:mod:`ebseg_lite.data.benchmarks`). :func:`load_class_names` returns those strings, so a
  benchmark dataset's ``class_names`` are what the official model was trained and tested with, and
  :func:`seen_for` recognises them and returns the official mask (VOC 20/20, PC-59 51/59,
  PC-459 94/459, ADE-150 67/150, ADE-847 115/847).
* **your own list** (``["cat, kitty", "sofa"]``, or a ``classes.txt``): a class is seen when one of
  its comma-separated synonyms is a training synonym (FC-CLIP's rule; compared without regard to case
  or spacing, as CLIP's tokenizer reads them: ``vocabulary.synonym_key``). Against the official
  training set the training synonyms are FC-CLIP's COCO-Stuff lists (``person, child, girl, ...``),
  the same lists the official mask comes from; against any other training vocabulary, the commas
  in its own names.

Plug-ins add named vocabularies through the registry (the toy world's ``toyworld``).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import List, Optional, Sequence, Set, Tuple, Union

import torch

from ebseg_lite import registry
from ebseg_lite.data.benchmarks import BENCHMARK_VOCABULARIES, benchmark_vocabulary
from ebseg_lite.vocabulary import seen_among, synonyms, validate_class_names

#: The official vocabularies shipped with the package: name -> number of classes K.
BUILTIN_VOCABULARIES = dict(BENCHMARK_VOCABULARIES)

TRAIN_VOCABULARY = "coco_stuff_171"

_INDEX_PREFIX = re.compile(r"^\s*\d+\s*:\s*")


def read_class_file(path: Union[str, Path]) -> List[str]:
    """Read a user's vocabulary file (``.txt`` one class per line, or ``.json``) into K class names.

    In a ``.txt``, blank lines and lines starting with ``#`` are skipped and a leading ``"<index>:"``
    (as in FC-CLIP's lists) is dropped; synonyms are separated by commas. A ``.json`` holds a list of
    names, or of ``{"name": ...}`` objects (ordered by ``"trainId"`` when every object has one).
    Raises ``FileNotFoundError`` or ``ValueError`` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class-name file {path} does not exist")
    if path.suffix.lower() == ".json":
        names = _names_from_json(path)
    else:
        lines = path.read_text(encoding="utf-8").splitlines()
        names = [_INDEX_PREFIX.sub("", ln).strip() for ln in lines]
        names = [n for n in names if n and not n.startswith("#")]
    try:
        return validate_class_names(names)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def _names_from_json(path: Path) -> List[str]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of class names, got {type(data).__name__}")
    if data and all(isinstance(d, dict) for d in data):
        if any("name" not in d for d in data):
            raise ValueError(f"{path}: every object in the list needs a 'name' key")
        if all("trainId" in d for d in data):
            data = sorted(data, key=lambda d: int(d["trainId"]))
        return [d["name"] for d in data]
    return list(data)


def load_class_names(name: str) -> List[str]:
    """The K class names of a named vocabulary, in label-id order.

    Args:
        name: a benchmark (``coco_stuff_171``, ``ade20k_150``, ``ade20k_847``, ``pcontext_59``,
            ``pcontext_459``, ``voc_20``: the official prompt strings) or a plug-in's registered
            vocabulary (the toy world's ``toyworld`` / ``toyworld_seen``).
    Returns:
        list of K strings.
    """
    if name in BENCHMARK_VOCABULARIES:
        return list(benchmark_vocabulary(name).names)
    if registry.has("vocabulary", name):
        return validate_class_names(registry.lookup("vocabulary", name)())
    known = sorted(BENCHMARK_VOCABULARIES) + registry.names("vocabulary")
    raise KeyError(f"unknown vocabulary {name!r}; known: {known}")


def official_benchmark(class_names: Sequence[str]) -> Optional[str]:
    """The benchmark whose official prompt strings are exactly ``class_names`` (in order), else None."""
    names = tuple(class_names)
    for name, k in BENCHMARK_VOCABULARIES.items():
        if len(names) == k and names == benchmark_vocabulary(name).names:
            return name
    return None


def training_synonyms(train_names: Sequence[str]) -> Set[str]:
    """The synonyms a user's class is compared with: FC-CLIP's COCO-Stuff lists (stripped) when
    ``train_names`` is the official COCO-Stuff-171 vocabulary, else the commas of ``train_names``."""
    if official_benchmark(train_names) == TRAIN_VOCABULARY:
        return {s.strip() for syns in benchmark_vocabulary(TRAIN_VOCABULARY).synonyms for s in syns if s.strip()}
    return {s for n in train_names for s in synonyms(n)}


def seen_for(class_names: Sequence[str], train_names: Optional[Sequence[str]] = None) -> torch.Tensor:
    """(K,) bool: which of ``class_names`` are seen in training (see the module docstring).

    Args:
        class_names: K test class names.
        train_names: the training vocabulary; the official COCO-Stuff-171 when omitted.
    Returns:
        the official mask when both are official vocabularies, else the synonym rule's.
    """
    if train_names is None:
        train_names = load_class_names(TRAIN_VOCABULARY)
    bench = official_benchmark(class_names)
    if bench is not None and official_benchmark(train_names) == TRAIN_VOCABULARY:
        return benchmark_vocabulary(bench).seen
    return seen_among(class_names, training_synonyms(train_names))


def seen_split(benchmark_names: Sequence[str],
               train_names: Optional[Sequence[str]] = None) -> Tuple[torch.Tensor, int, int]:
    """``(seen, num_seen, num_new)`` with seen = :func:`seen_for` ``(benchmark_names, train_names)``."""
    seen = seen_for(benchmark_names, train_names)  # (K,)
    num_seen = int(seen.sum())
    return seen, num_seen, len(seen) - num_seen
