"""Class names, synonyms and the seen/new rule used by balancing (paper section 3.4).

A class name is one string; commas inside it separate synonyms, as in the official class-name
lists ("road, route"). The whole string goes into the text templates (as the official code does);
the synonyms only serve the seen/new rule:

    a test class is *seen* when any of its synonyms is among the synonyms of the training
    vocabulary (FC-CLIP's rule, used by EBSeg).
"""
from __future__ import annotations

from typing import Iterable, List, Sequence

import torch


def synonyms(name: str) -> List[str]:
    """Split ``"road, route"`` into ``["road", "route"]`` (stripped, empties dropped)."""
    return [s.strip() for s in name.split(",") if s.strip()]


def display_name(name: str) -> str:
    """What pictures and tables show for a class: its first synonym (``"road, route"`` -> ``"road"``)."""
    syn = synonyms(str(name))
    return syn[0] if syn else str(name).strip()


def validate_class_names(class_names: Sequence[str]) -> List[str]:
    """Check a vocabulary and return it as a list of stripped strings.

    Raises ``ValueError`` for an empty vocabulary, a blank or non-string name, or duplicates,
    naming the offending entries and the fix.
    """
    if isinstance(class_names, str):
        raise ValueError(
            "class_names must be a list of strings, got one string; "
            f"did you mean {class_names.split(',')!r}?"
        )
    names = list(class_names)
    if not names:
        raise ValueError("the vocabulary is empty: give at least one class name, e.g. ['cat', 'sofa']")
    out = []
    for i, n in enumerate(names):
        if not isinstance(n, str):
            raise ValueError(f"class name #{i} is {type(n).__name__} {n!r}, not a string")
        if not n.strip():
            raise ValueError(f"class name #{i} is blank; remove it or give it a name")
        out.append(n.strip())
    seen, dups = set(), []
    for n in out:
        if n in seen and n not in dups:
            dups.append(n)
        seen.add(n)
    if dups:
        raise ValueError(f"duplicate class names {dups}: each class must appear once")
    return out


def seen_mask(class_names: Sequence[str], train_class_names: Iterable[str]) -> torch.Tensor:
    """(K,) bool: which of ``class_names`` count as seen against a training vocabulary.

    Args:
        class_names: K test class names, each possibly "syn1, syn2".
        train_class_names: the training vocabulary (e.g. COCO-Stuff-171), same format.
    Returns:
        (K,) bool tensor, True where any synonym of the class is a training synonym.
    """
    train = {s for n in train_class_names for s in synonyms(n)}
    return torch.tensor([any(s in train for s in synonyms(n)) for n in class_names], dtype=torch.bool)


def parse_class_list(text: str) -> List[str]:
    """Parse a command-line vocabulary: ``"cat,sofa"`` or, for names with synonyms,
    ``"road, route; sofa, couch"`` (semicolons separate classes when present)."""
    sep = ";" if ";" in text else ","
    return [c.strip() for c in text.split(sep) if c.strip()]
