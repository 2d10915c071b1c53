"""Class-name vocabularies of the training set and the benchmarks, and the seen/new split.

The vocabularies ship as plain text files next to this module, one class per line in the label-id
order of the detectron2 annotations (line i is label id i), synonyms separated by commas:

    road, route

The first synonym is the display name; the whole line goes into the text templates and the
synonyms serve the seen/new rule of ``ebseg_lite.vocabulary`` (paper section 3.4). The synonyms
in these files were chosen for ebseg_lite, so seen counts can differ a little from the official
ones (VOC 20/20, PC-59 51/59, ADE-150 67/150).

ADE20K-847 and Pascal Context-459 are too long to curate here; their names are read from the
user's dataset folder (see ``USER_CLASS_FILES``).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch

from ebseg_lite import registry
from ebseg_lite.data.layouts import BENCHMARKS, resolve_data_root
from ebseg_lite.vocabulary import seen_mask, validate_class_names

_HERE = Path(__file__).resolve().parent

#: Vocabularies shipped with the package: name -> (file, number of classes K).
BUILTIN_VOCABULARIES: Dict[str, Tuple[str, int]] = {
    "coco_stuff_171": ("coco_stuff_171.txt", 171),
    "ade20k_150": ("ade20k_150.txt", 150),
    "pcontext_59": ("pcontext_59.txt", 59),
    "voc_20": ("voc_20.txt", 20),
}

#: Vocabularies read from the dataset folder: name -> (benchmark whose folder holds it, K).
#: Accepted files there, first found wins: ``classes.txt`` (this module's format; a leading
#: ``"12:"`` index as in the official lists is tolerated) or ``classes.json`` (a list of names, or
#: a list of ``{"name": ...}`` objects, ordered by their ``"trainId"`` when present).
USER_CLASS_FILES: Dict[str, Tuple[str, int]] = {
    "ade20k_847": ("ade20k_847", 847),
    "pcontext_459": ("pcontext_459", 459),
}

TRAIN_VOCABULARY = "coco_stuff_171"

_INDEX_PREFIX = re.compile(r"^\s*\d+\s*:\s*")


def read_class_file(path: Union[str, Path]) -> List[str]:
    """Read a vocabulary file (``.txt`` one class per line, or ``.json``) into K class names.

    Blank lines and lines starting with ``#`` are skipped; a leading ``"<index>:"`` is dropped.
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


def load_class_names(name: str, data_root: Optional[Union[str, Path]] = None) -> List[str]:
    """The K class names of a vocabulary, in label-id order.

    Args:
        name: one of ``coco_stuff_171``, ``ade20k_150``, ``pcontext_59``, ``voc_20`` (shipped) or
            ``ade20k_847``, ``pcontext_459`` (read from the dataset folder under ``data_root``), or
            or a plug-in's registered vocabulary (the toy world's ``toyworld`` / ``toyworld_seen``).
        data_root: only for the last two; defaults to ``$EBSEG_DATA`` / ``$DETECTRON2_DATASETS``.
    Returns:
        list of K strings, each possibly "syn1, syn2".
    """
    if name in BUILTIN_VOCABULARIES:
        fname, k = BUILTIN_VOCABULARIES[name]
        names = read_class_file(_HERE / fname)
        if len(names) != k:  # guards against an edited data file
            raise ValueError(f"{fname} has {len(names)} classes, expected {k}")
        return names
    if name in USER_CLASS_FILES:
        return _load_user_vocabulary(name, data_root)
    if registry.has("vocabulary", name):  # plug-ins' vocabularies (the toy world's "toyworld", "toyworld_seen")
        return validate_class_names(registry.lookup("vocabulary", name)())
    known = sorted(BUILTIN_VOCABULARIES) + sorted(USER_CLASS_FILES) + registry.names("vocabulary")
    raise KeyError(f"unknown vocabulary {name!r}; known: {known}")


def _load_user_vocabulary(name: str, data_root) -> List[str]:
    bench, k = USER_CLASS_FILES[name]
    folder = resolve_data_root(data_root) / BENCHMARKS[bench].folder
    candidates = [folder / "classes.txt", folder / "classes.json"]
    for path in candidates:
        if path.is_file():
            names = read_class_file(path)
            if len(names) != k:
                raise ValueError(
                    f"{path} lists {len(names)} classes but {name} has {k}; "
                    f"it must hold one line per label id 0..{k - 1}"
                )
            return names
    raise FileNotFoundError(
        f"the {k} class names of {name} are not shipped with ebseg_lite; put them in "
        f"{candidates[0]} (one class per line, in label-id order, synonyms separated by ', ') "
        f"or {candidates[1]} (a JSON list of names)"
    )


def seen_split(
    benchmark_names: Sequence[str], train_names: Optional[Sequence[str]] = None
) -> Tuple[torch.Tensor, int, int]:
    """Which benchmark classes are seen in training (FC-CLIP's synonym rule, used by EBSeg).

    Args:
        benchmark_names: K test class names.
        train_names: the training vocabulary; COCO-Stuff-171 when omitted.
    Returns:
        ``(seen, num_seen, num_new)``: seen is a (K,) bool tensor.
    """
    if train_names is None:
        train_names = load_class_names(TRAIN_VOCABULARY)
    seen = seen_mask(benchmark_names, train_names)  # (K,)
    num_seen = int(seen.sum())
    return seen, num_seen, len(seen) - num_seen
