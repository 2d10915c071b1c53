"""From patch maps to a label map (PnP-OVSS's post-processing, official ``postprocess``).

In order, for class maps M (K, h, w) of one image:

1. keep a class's value where its min-max scaled map reaches the threshold (official 0.15):
   ``M_k * [norm(M_k) >= t]`` (:func:`threshold_maps`);
2. bilinear resize to the image (H, W), ``align_corners=True``, and min-max each class again
   (:func:`resize_maps`);
3. background = the pixels where no class kept a value: ``[max_k M_k == 0]``, added as channel 0
   (:func:`add_background`; official: always on VOC, on Context / ADE only with fewer than 3 classes);
4. Gaussian blur of every channel, background included, with ``sigma = 0.05 * max(H, W)``, each then
   min-max scaled (:func:`blur_maps`, official ``blurring``);
5. a dense CRF on ``softmax`` of the blurred maps (:mod:`.crf`), or their argmax.

Shapes: K classes (K + 1 with background), h x w patches, H x W pixels.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F

BLUR_SCALE = 0.05
THRESHOLD = 0.15
BACKGROUND_POLICIES = ("always", "never", "few")
FEW_CLASSES = 3


def minmax(maps: torch.Tensor) -> torch.Tensor:
    """Scale each (..., H, W) map to [0, 1] (a constant map becomes 0, not NaN)."""
    flat = maps.flatten(-2)
    lo = flat.min(-1, keepdim=True).values
    span = flat.max(-1, keepdim=True).values - lo
    out = torch.where(span > 0, (flat - lo) / torch.where(span > 0, span, torch.ones_like(span)), 0.0)
    return out.view_as(maps)


def threshold_maps(maps: torch.Tensor, threshold: float = THRESHOLD) -> torch.Tensor:
    """(K, h, w) -> (K, h, w): the raw value where the class's min-max scaled map >= ``threshold``, else 0."""
    return maps * (minmax(maps) >= threshold).to(maps.dtype)


def resize_maps(maps: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """(K, h, w) -> (K, H, W): bilinear (``align_corners=True``, as the official code), then min-max."""
    up = F.interpolate(maps[None].float(), size=size, mode="bilinear", align_corners=True)[0]
    return minmax(up)


def use_background(policy: str, num_classes: int, few: int = FEW_CLASSES) -> bool:
    """Whether a background channel is added: "always" (VOC), "never" (fully labelled data such
    as the toy world), "few" (official Context / ADE rule: only with fewer than ``few`` classes)."""
    if policy not in BACKGROUND_POLICIES:
        raise ValueError(f"background policy must be one of {BACKGROUND_POLICIES}, got {policy!r}")
    return policy == "always" or (policy == "few" and num_classes < few)


def add_background(maps: torch.Tensor) -> torch.Tensor:
    """(K, H, W) -> (K + 1, H, W), channel 0 = 1 where every class is 0."""
    bg = (maps.max(0).values == 0).to(maps.dtype)
    return torch.cat([bg[None], maps])


def blur_sigma(size: Tuple[int, int], scale: float = BLUR_SCALE) -> float:
    """The official blur width: ``scale * max(H, W)`` pixels."""
    return scale * max(size)


def blur_maps(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur (scipy, reflecting borders, 4-sigma kernel) of each (H, W) channel, each then
    min-max scaled. (C, H, W) -> (C, H, W). ``sigma <= 0`` skips the blur."""
    from scipy.ndimage import gaussian_filter
    x = maps.detach().cpu().double().numpy()
    if sigma > 0:
        x = np.stack([gaussian_filter(c, sigma) for c in x])
    return minmax(torch.from_numpy(x).to(maps.dtype))
