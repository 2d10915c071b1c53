"""Mask pooling: the frozen embeddings D (paper eq. 3) and the pooled input of A (eq. 2)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_mean(features: torch.Tensor, masks: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean of ``features`` over each binary mask, no renormalisation (an empty mask gives 0).

    Args:
        features: (B, C, h, w).  masks: (B, N, h, w) in {0, 1}.
    Returns:
        (B, N, C).
    """
    masks = masks.to(features.dtype)
    denom = masks.sum(dim=(-1, -2), keepdim=True) + eps
    return torch.einsum("bnhw,bchw->bnc", masks / denom, features)


def mask_pool(mask_logits: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """D = mask-average of F_clip over each predicted mask (eq. 3, official form).

    Masks are resized bilinearly to the feature grid, binarised at sigmoid > 0.5 (detached),
    and the features averaged with 1e-8 in the denominator.

    Args:
        mask_logits: (B, N, H, W).  features: (B, C, h, w).
    Returns:
        (B, N, C).
    """
    m = mask_logits.detach()
    if m.shape[-2:] != features.shape[-2:]:
        m = F.interpolate(m, size=features.shape[-2:], mode="bilinear", align_corners=False)
    return masked_mean(features, m.sigmoid() > 0.5)
