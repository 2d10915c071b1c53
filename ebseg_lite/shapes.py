"""The shape vocabulary used in every docstring and comment of ebseg_lite, and a checker.

Legend (one letter per axis, used everywhere):

    B   batch                         N   queries (mask proposals), 100 in the paper
    K   classes of the vocabulary     C   CLIP embedding width (512 for ViT-B/16, 768 for ViT-L/14)
    H x W   image pixels              h x w   CLIP token grid (20 x 20 for a 640 image at p = 0.5)
    Hm x Wm mask resolution (H/4 x W/4)
    nh  CLIP attention heads (12 for ViT-B, 16 for ViT-L)
    L   CLIP image tokens (h * w)     D   decoder width (256)

``check_shape`` is shared by tests and notebooks (in the spirit of d2l's ``check_shape``).
"""
from __future__ import annotations

from typing import Sequence, Optional

import torch


def check_shape(t: torch.Tensor, shape: Sequence[Optional[int]], name: str = "tensor") -> torch.Tensor:
    """Assert that ``t`` has ``shape``; ``None`` entries match any size. Returns ``t``.

    >>> check_shape(torch.zeros(2, 3), (2, None))  # doctest: +ELLIPSIS
    tensor(...)
    """
    got = tuple(t.shape)
    want = tuple(shape)
    ok = len(got) == len(want) and all(w is None or g == w for g, w in zip(got, want))
    if not ok:
        pretty = tuple("*" if w is None else w for w in want)
        raise AssertionError(f"{name}: expected shape {pretty}, got {got}")
    return t
