"""Class colours: a maintained categorical palette, one colour per class name, the same all session.

The colours are colorcet's ``glasbey`` palette (256 colours chosen one after the other to be as far as
possible, in the perceptual CAM02-UCS space, from all the colours before them, Glasbey et al. 2007);
without colorcet, seaborn's ``husl`` wheel is used instead. A :class:`ClassPalette` hands them out in
the order class names are first met: the first K names of a session get the first K glasbey colours,
which are maximally distinct, and a name keeps its colour in every later figure and every vocabulary,
so a class has one colour across all figures of a notebook. Names are compared stripped and lower-cased.

A name's colour depends on the order names were first drawn in the process (a notebook draws them in
the same order on every run, so its colours are reproducible); pin them with ``PALETTE.register(names)``
or pass ``colors=`` to the drawing functions.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np


def _base_palette() -> np.ndarray:
    """(256, 3) uint8: glasbey (colorcet) or, without colorcet, seaborn's husl wheel."""
    try:
        import colorcet
        hexes = list(colorcet.glasbey)
        return np.array([[int(h[i:i + 2], 16) for i in (1, 3, 5)] for h in hexes], dtype=np.uint8)
    except ImportError:  # pragma: no cover - colorcet is a dependency; seaborn is too
        import seaborn
        return np.round(255 * np.asarray(seaborn.color_palette("husl", 256))).astype(np.uint8)


BASE = _base_palette()  # (256, 3)


def _key(name) -> str:
    return str(name).strip().lower()


class ClassPalette:
    """Class name -> colour, first come first served from :data:`BASE` (cycling after 256 names)."""

    def __init__(self, base: np.ndarray = BASE):
        self.base = np.asarray(base, dtype=np.uint8)
        self._index: Dict[str, int] = {}

    def register(self, class_names: Sequence[str]) -> "ClassPalette":
        """Give each not yet known name the next colour, in order. Returns self."""
        for name in class_names:
            self._index.setdefault(_key(name), len(self._index))
        return self

    def colors(self, class_names: Sequence[str]) -> np.ndarray:
        """(K, 3) uint8 RGB, registering new names on the way."""
        self.register(class_names)
        rows = [self.base[self._index[_key(n)] % len(self.base)] for n in class_names]
        return np.array(rows, dtype=np.uint8).reshape(len(rows), 3)

    def known(self) -> List[str]:
        """The registered (normalised) names in the order of their colours."""
        return sorted(self._index, key=self._index.get)

    def reset(self) -> None:
        self._index.clear()


PALETTE = ClassPalette()  # the process-wide palette every figure of ebseg_lite.viz draws with


def class_colors(class_names: Sequence[str]) -> np.ndarray:
    """One colour per class name from the session palette :data:`PALETTE`.

    Args:
        class_names: K names.
    Returns:
        (K, 3) uint8 numpy array of RGB colours; a name gets the same row in every call of the session.
    """
    return PALETTE.colors(class_names)


def label_map_rgb(labels: np.ndarray, colors: np.ndarray, *, unlabelled=(255, 255, 255)) -> np.ndarray:
    """A label map painted in its classes' colours.

    Args:
        labels: (H, W) integer class ids; ids outside 0..K-1 (255, negatives) are unlabelled.
        colors: (K, 3) uint8.
    Returns:
        (H, W, 3) uint8.
    """
    lab = np.asarray(labels)
    valid = (lab >= 0) & (lab < len(colors))
    out = np.asarray(colors, dtype=np.uint8)[np.where(valid, lab, 0)]
    out[~valid] = np.asarray(unlabelled, dtype=np.uint8)
    return out


def boundaries(labels: np.ndarray, width: int = 1) -> np.ndarray:
    """(H, W) bool: pixels whose label differs from a 4-neighbour's, thickened to ``width`` pixels
    (the outline drawn in full colour, so a region's edge shows the legend's colour exactly)."""
    lab = np.asarray(labels)
    edge = np.zeros(lab.shape, dtype=bool)
    edge[1:] |= lab[1:] != lab[:-1]
    edge[:-1] |= lab[1:] != lab[:-1]
    edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    edge[:, :-1] |= lab[:, 1:] != lab[:, :-1]
    for _ in range(max(0, width - 2)):
        grown = edge.copy()
        grown[1:] |= edge[:-1]
        grown[:-1] |= edge[1:]
        grown[:, 1:] |= edge[:, :-1]
        grown[:, :-1] |= edge[:, 1:]
        edge = grown
    return edge
