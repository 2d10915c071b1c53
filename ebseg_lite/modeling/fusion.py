"""Feature fusion (paper eq. 1): CLIP token grids added to SAM's res3, res4, res5.

``F_i = s * F_sam_i + Up(Conv1x1(LN(F_clip_i)))`` with a channels-first LayerNorm (eps 1e-6, as
segment-anything's ``LayerNorm2d``) and a 1x1 conv from CLIP width to SAM width; res2 gets no CLIP
feature (``s * F_sam_2``). These are the first trainable weights of the model.

``s`` is :attr:`~ebseg_lite.config.SamConfig.feature_scale`: 1 in the paper and the official code.
The sum is a balance of two addends of very different origin: SAM's raw residual stream, at the
scale its pretraining left, and a LayerNorm-ed CLIP grid through a freshly initialised conv (PyTorch's
default init gives it a standard deviation of about 1/sqrt(3) = 0.58). :func:`addend_rms` measures both.
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from segment_anything.modeling.common import LayerNorm2d

FUSED = ("res3", "res4", "res5")


def addend_rms(fusion: "FeatureFusion", sam_feats: Dict[str, torch.Tensor],
               clip_feats: Sequence[torch.Tensor]) -> Dict[str, Dict[str, float]]:
    """Root mean square of eq. 1's two addends per fused level: ``{"res3": {"sam": .., "clip": ..}, ..}``,
    the SAM term with the fusion's scale applied. When "sam" is many times "clip", the fused features,
    and so everything the decoder learns from, are mostly SAM's (which knows no classes)."""
    out = {}
    with torch.no_grad():
        for name, layer, c in zip(FUSED, fusion.layers, clip_feats):
            s = sam_feats[name] * fusion.sam_scale
            out[name] = {"sam": float(s.pow(2).mean().sqrt()), "clip": float(layer(c).pow(2).mean().sqrt())}
    return out


class FeatureFusion(nn.Module):
    """Eq. 1. ``clip_width`` -> ``sam_width`` per fused level; ``sam_scale`` multiplies every SAM level."""

    def __init__(self, clip_width: int, sam_width: int, levels: int = 3, sam_scale: float = 1.0):
        super().__init__()
        if not sam_scale > 0:
            raise ValueError(f"sam_scale must be positive, got {sam_scale}")
        self.sam_scale = float(sam_scale)
        self.layers = nn.ModuleList(
            nn.Sequential(LayerNorm2d(clip_width, eps=1e-6), nn.Conv2d(clip_width, sam_width, 1))
            for _ in range(levels)
        )

    def forward(self, sam_feats: Dict[str, torch.Tensor], clip_feats: Sequence[torch.Tensor]) -> Dict[str, torch.Tensor]:
        """
        Args:
            sam_feats: {"res2".."res5": (B, E, h_l, w_l)}.
            clip_feats: three (B, W, h, w) CLIP grids (after blocks 3, 6, 9 for ViT-B).
        Returns:
            a new dict with res3..res5 fused; res2 is SAM's alone (times ``sam_scale``).
        """
        s = self.sam_scale
        out = dict(sam_feats) if s == 1.0 else {k: v * s for k, v in sam_feats.items()}
        for name, layer, c in zip(FUSED, self.layers, clip_feats):
            target = out[name]
            add = F.interpolate(layer(c), size=target.shape[-2:], mode="bilinear", align_corners=False)
            out[name] = target + add
        return out
