"""Point sampling for mask losses (PointRend, Kirillov et al. 2020, Sec. 3.1 "point selection during training").

Mask2Former (and so EBSeg) never compares whole masks: it compares mask logits and ground truth at a
few thousand points. Coordinates are normalised to [0, 1] (x first, then y), so a prediction at
Hm x Wm and a target at H x W are read at the same places without resizing either one.

Two functions:

* ``point_sample`` reads a map at continuous points by bilinear interpolation (``grid_sample`` with
  ``align_corners=False`` and zero padding, as detectron2's ``point_sample`` that the official code calls).
* ``uncertain_points`` is PointRend's importance sampling: draw ``oversample_ratio * P`` uniform points,
  keep the ``importance_sample_ratio * P`` most uncertain ones (uncertainty = -|logit|, largest near the
  decision boundary) and top up with fresh uniform points.

Written by hand because the point selection is part of the lesson: where the loss looks decides what the
masks learn.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["point_sample", "uncertain_points", "logit_uncertainty"]


def point_sample(inputs: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinearly read ``inputs`` at normalised points.

    Args:
        inputs: (R, C, H, W) or (R, H, W) maps (logits or {0, 1} masks; bool is cast to float).
        coords: (R, P, 2) or (1, P, 2) points in [0, 1], ordered (x, y); (0, 0) is the top-left
            corner of the top-left pixel, (1, 1) the bottom-right corner of the bottom-right pixel.
            A batch of 1 is shared by all R maps.

    Returns:
        (R, C, P) values, or (R, P) when ``inputs`` had no channel axis.
    """
    squeeze = inputs.dim() == 3
    if squeeze:
        inputs = inputs[:, None]  # (R, 1, H, W)
    if not inputs.is_floating_point():
        inputs = inputs.float()
    if coords.shape[0] == 1 and inputs.shape[0] != 1:
        coords = coords.expand(inputs.shape[0], -1, -1)
    grid = (2.0 * coords - 1.0).to(inputs.dtype)[:, :, None, :]  # (R, P, 1, 2) in [-1, 1]
    out = F.grid_sample(inputs, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out = out[..., 0]  # (R, C, P)
    return out[:, 0] if squeeze else out


def logit_uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """PointRend's uncertainty of a binary logit: ``-|logit|`` (0 on the boundary, negative away from it)."""
    return -logits.abs()


@torch.no_grad()
def uncertain_points(
    mask_logits: torch.Tensor,
    num_points: int,
    *,
    oversample_ratio: float = 3.0,
    importance_sample_ratio: float = 0.75,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """PointRend importance sampling of ``num_points`` points per mask (no gradient).

    Steps (same order of random draws as detectron2's ``get_uncertain_point_coords_with_randomness``):
    1. ``S = int(num_points * oversample_ratio)`` uniform points per mask;
    2. keep the ``k = int(importance_sample_ratio * num_points)`` with the largest ``-|logit|``;
    3. append ``num_points - k`` new uniform points.

    Args:
        mask_logits: (R, Hm, Wm) or (R, 1, Hm, Wm) mask logits, one map per matched mask.
        num_points: P, points returned per mask.
        oversample_ratio: candidates drawn per returned point (>= 1).
        importance_sample_ratio: fraction of the P points chosen by uncertainty, in [0, 1].
        generator: optional torch.Generator (on the logits' device) for reproducible draws.

    Returns:
        (R, P, 2) points in [0, 1], ordered (x, y).
    """
    if mask_logits.dim() == 4:
        mask_logits = mask_logits[:, 0]  # (R, Hm, Wm)
    assert oversample_ratio >= 1 and 0 <= importance_sample_ratio <= 1
    r, device = mask_logits.shape[0], mask_logits.device
    num_candidates = int(num_points * oversample_ratio)
    candidates = torch.rand(r, num_candidates, 2, device=device, generator=generator)  # (R, S, 2)
    uncertainty = logit_uncertainty(point_sample(mask_logits, candidates))  # (R, S)
    num_uncertain = int(importance_sample_ratio * num_points)
    top = uncertainty.topk(num_uncertain, dim=1).indices  # (R, k)
    chosen = candidates.gather(1, top[..., None].expand(-1, -1, 2))  # (R, k, 2)
    num_random = num_points - num_uncertain
    if num_random > 0:
        fresh = torch.rand(r, num_random, 2, device=device, generator=generator)  # (R, P - k, 2)
        chosen = torch.cat([chosen, fresh], dim=1)
    return chosen
