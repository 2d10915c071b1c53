"""Feature fusion (paper eq. 1): CLIP token grids added to SAM's res3, res4, res5.

``F_i = F_sam_i + Up(Conv1x1(LN(F_clip_i)))`` with a channels-first LayerNorm (eps 1e-6, as
segment-anything's ``LayerNorm2d``) and a 1x1 conv from CLIP width to SAM width; res2 gets no CLIP
feature. These are the first trainable weights of the model.
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from segment_anything.modeling.common import LayerNorm2d

FUSED = ("res3", "res4", "res5")


class FeatureFusion(nn.Module):
    """Eq. 1. ``clip_width`` -> ``sam_width`` per fused level."""

    def __init__(self, clip_width: int, sam_width: int, levels: int = 3):
        super().__init__()
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
            a new dict with res3..res5 fused; res2 unchanged.
        """
        out = dict(sam_feats)
        for name, layer, c in zip(FUSED, self.layers, clip_feats):
            target = out[name]
            add = F.interpolate(layer(c), size=target.shape[-2:], mode="bilinear", align_corners=False)
            out[name] = target + add
        return out
