"""Class names, synonyms and the seen/new rule used by balancing (paper section 3.4).

A class name is one string; commas inside it separate synonyms, as in the official class-name
lists ("road, route"). The whole string goes into the text templates (as the official code does);
the synonyms only serve the seen/new rule:

    a test class is *seen* when any of its synonyms is among the synonyms of the training
    vocabulary (FC-CLIP's rule, used by EBSeg).
"""
from __future__ import annotations

import warnings
from typing import Iterable, List, Optional, Sequence

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

    Raises ``ValueError`` for an empty vocabulary, a blank or non-string name, or duplicates (also
    names that differ only in case or spacing, which CLIP's tokenizer reads as one text), naming the
    offending entries and the fix.
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
    first, dups = {}, {}
    for n in out:
        key = synonym_key(n)     # "Sofa" and "sofa " are one prompt to CLIP's tokenizer
        if key in first:
            dups.setdefault(key, (first[key], n))
        else:
            first[key] = n
    if dups:
        shown = ", ".join(repr(a) if a == b else f"{a!r} = {b!r}" for a, b in dups.values())
        raise ValueError(f"duplicate class names: {shown}; each class must appear once (case and spacing aside, "
                         "as CLIP's tokenizer reads them)")
    return out


def synonym_key(synonym: str) -> str:
    """How two synonyms (for the seen/new rule) or two whole names (for duplicates) are compared: lower-cased,
    runs of whitespace made one space. CLIP's tokenizer cleans a prompt the same way, so "Sofa" and "sofa"
    are one text and one class. The official name lists are all lower case with single spaces, so their
    masks do not change."""
    return " ".join(synonym.lower().split())


def seen_among(class_names: Sequence[str], train_synonyms: Iterable[str]) -> torch.Tensor:
    """(K,) bool: True where any synonym of a class is among ``train_synonyms`` (by :func:`synonym_key`).
    The one place the rule is written; :func:`seen_mask` and ``data.vocabularies.seen_for`` call it."""
    train = {synonym_key(s) for s in train_synonyms}
    return torch.tensor([any(synonym_key(s) in train for s in synonyms(n)) for n in class_names], dtype=torch.bool)


def seen_mask(class_names: Sequence[str], train_class_names: Iterable[str]) -> torch.Tensor:
    """(K,) bool: which of ``class_names`` count as seen against a training vocabulary.

    Args:
        class_names: K test class names, each possibly "syn1, syn2".
        train_class_names: the training vocabulary (e.g. COCO-Stuff-171), same format.
    Returns:
        (K,) bool tensor, True where any synonym of the class is a training synonym (case and spacing
        aside, :func:`synonym_key`).
    """
    return seen_among(class_names, (s for n in train_class_names for s in synonyms(n)))


def parse_class_list(text: str) -> List[str]:
    """Parse a command-line vocabulary: ``"cat,sofa"`` or, for names with synonyms,
    ``"road, route; sofa, couch"`` (semicolons separate classes when present)."""
    sep = ";" if ";" in text else ","
    return [c.strip() for c in text.split(sep) if c.strip()]


def unknown_word_warning(tokenizer, class_names: Sequence[str], *, shown: int = 8) -> Optional[str]:
    """The message for class names with words a closed-vocabulary tokenizer cannot spell, or None.

    Such a tokenizer (the toy world's, :class:`ebseg_lite.toyworld.tokenizer.ToyTokenizer`) maps every
    unknown word piece to one id, so "dog" and "orange" give the same prompt and their text embeddings
    carry no meaning. A tokenizer says which words it cannot spell through an ``unknown_words(text)``
    method (and what it does know through ``vocabulary_note``); open_clip's BPE spells anything and has
    neither, so the answer for it is always None.
    """
    find = getattr(tokenizer, "unknown_words", None)
    if find is None:
        return None
    bad = {n: find(n) for n in class_names}
    bad = {n: w for n, w in bad.items() if w}
    if not bad:
        return None
    listed = "; ".join(f"{n!r} ({', '.join(w)})" for n, w in list(bad.items())[:shown])
    more = f" and {len(bad) - shown} more" if len(bad) > shown else ""
    note = getattr(tokenizer, "vocabulary_note", "")
    return (f"{len(bad)} class name(s) have words this text encoder's tokenizer cannot spell: {listed}{more}. "
            f"Each such word becomes one shared unknown token that carries no meaning, so a name made only of "
            f"such words has a meaningless text embedding{'; ' + note if note else ''}.")


def warn_unknown_words(tokenizer, class_names: Sequence[str]) -> None:
    """Warn (``UserWarning``) with :func:`unknown_word_warning`'s message when there is one."""
    message = unknown_word_warning(tokenizer, class_names)
    if message:
        warnings.warn(message, UserWarning, stacklevel=3)
