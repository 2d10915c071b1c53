"""SimSeg's second stage (Xu et al., ECCV 2022, code MendelXu/zsseg.baseline): classify each mask
proposal by running CLIP's image encoder on a masked crop, and ensemble with a trained classifier.

Crop geometry, as zsseg's ``MaskFormerClipAdapter._preprocess_image`` and ``crop_with_mask``:

1. binarise the proposal at 0.5 (``mask > threshold``); an empty mask gets no crop;
2. its box (x1, y1, x2, y2), right/bottom exclusive (detectron2 ``BitMasks.get_bounding_boxes``),
   scaled about its centre by ``expand_ratio`` (1.0: unchanged), corners truncated to integers,
   clipped to the image;
3. inside the box, pixels outside the mask are filled with CLIP's mean colour ("mean": zero once
   normalised) or black ("zero");
4. CLIP-normalised, then resized bicubically to CLIP's input size (224 for ViT-B/16).

Classification: ``softmax(logit_scale * cos(CLIP(crop), text))`` over the K classes (zsseg uses 100,
OpenAI CLIP's scale); an empty proposal gets probability 1 for every class (zsseg's ``ones``), so the
ensemble leaves it to the trained classifier. Ensemble (zsseg ``semantic_inference``)::

    seen k:  P_trained^w     * P_clip^(1-w)        new k:  P_trained^(1-w) * P_clip^w      (w = 0.8)

renormalised over K here (zsseg sums the unnormalised products; the void mass is handled by
:func:`ebseg_lite.modeling.balance.with_void` in the pipeline). Pure functions; N proposals,
K classes, H x W pixels, S CLIP input size.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

Box = Tuple[int, int, int, int]  # (x1, y1, x2, y2) in pixels, x2 / y2 exclusive


def mask_box(mask: torch.Tensor) -> Optional[Box]:
    """Tight box of a (H, W) bool mask, right/bottom exclusive; None for an empty mask."""
    cols = torch.nonzero(mask.any(dim=0))[:, 0]
    rows = torch.nonzero(mask.any(dim=1))[:, 0]
    if len(cols) == 0:
        return None
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def expand_box(box: Box, ratio: float = 1.0) -> Box:
    """Scale a box about its centre by ``ratio``; corners truncated towards zero (zsseg ``int()``)."""
    x1, y1, x2, y2 = box
    cx, cy, w, h = 0.5 * (x1 + x2), 0.5 * (y1 + y2), (x2 - x1) * ratio, (y2 - y1) * ratio
    return int(cx - 0.5 * w), int(cy - 0.5 * h), int(cx + 0.5 * w), int(cy + 0.5 * h)


def crop_with_mask(image: torch.Tensor, mask: torch.Tensor, box: Box, fill: Sequence[float]) -> torch.Tensor:
    """The box of ``image`` with the pixels outside ``mask`` replaced by ``fill``.

    Args:
        image: (3, H, W) float, 0..255.  mask: (H, W) bool.  box: from :func:`expand_box`.
        fill: (3,) colour in 0..255.
    Returns:
        (3, y2 - y1, x2 - x1) after clipping the box to the image.
    """
    _, h, w = image.shape
    x1, y1, x2, y2 = box
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    region = image[:, y1:y2, x1:x2]
    keep = mask[None, y1:y2, x1:x2].to(image.dtype)
    colour = torch.tensor(fill, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return region * keep + (1 - keep) * colour


def masked_crops(image: torch.Tensor, mask_probs: torch.Tensor, *, size: int, mean: Sequence[float],
                 std: Sequence[float], threshold: float = 0.5, expand_ratio: float = 1.0,
                 fill: str = "mean") -> Tuple[torch.Tensor, torch.Tensor, List[Optional[Box]]]:
    """zsseg's masked crops of every proposal, ready for CLIP.

    Args:
        image: (3, H, W) uint8 (or float 0..255).
        mask_probs: (N, H, W) proposal probabilities (sigmoid of mask logits, or 0/1 masks).
        size: S, CLIP's input side.  mean, std: CLIP's pixel statistics in 0..1 units.
        fill: "mean" (CLIP's mean colour) or "zero" (black).
    Returns:
        crops (N', 3, S, S) CLIP-normalised, valid (N,) bool (N' = valid.sum()), and the N boxes
        actually cropped (None where the mask is empty).
    """
    if fill not in ("mean", "zero"):
        raise ValueError(f"fill must be 'mean' or 'zero', got {fill!r}")
    img = image.float()
    mean_t = torch.tensor(mean, device=img.device).view(3, 1, 1) * 255.0
    std_t = torch.tensor(std, device=img.device).view(3, 1, 1) * 255.0
    colour = [255.0 * m for m in mean] if fill == "mean" else [0.0, 0.0, 0.0]
    binary = mask_probs > threshold  # (N, H, W)
    crops, boxes = [], []
    for m in binary:
        box = mask_box(m)
        if box is not None:
            box = expand_box(box, expand_ratio)
            region = (crop_with_mask(img, m, box, colour) - mean_t) / std_t  # (3, h_b, w_b)
            crops.append(F.interpolate(region[None], size=(size, size), mode="bicubic", align_corners=False))
        boxes.append(box)
    valid = torch.tensor([b is not None for b in boxes], dtype=torch.bool)
    out = torch.cat(crops) if crops else img.new_zeros((0, 3, size, size))
    return out, valid, boxes


@torch.no_grad()
def crop_embeddings(visual: nn.Module, crops: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """CLIP's normalised image embedding of every crop: (N', 3, S, S) -> (N', C)."""
    if crops.shape[0] == 0:
        return crops.new_zeros((0, visual.proj.shape[1]))
    feats = torch.cat([visual(crops[i:i + batch_size]) for i in range(0, crops.shape[0], batch_size)])
    return F.normalize(feats.float(), dim=-1)


def crop_probs(embeds: torch.Tensor, text: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """``softmax_K(logit_scale * cos(embed, text))``: (N', C), (K, C) normalised -> (N', K)."""
    return (logit_scale * embeds @ text.to(embeds).t()).softmax(-1)


def scatter_valid(p_valid: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(N', K) probabilities of the cropped proposals -> (N, K), ones for the empty ones (zsseg)."""
    out = p_valid.new_ones((valid.shape[0], p_valid.shape[1]))
    out[valid.to(p_valid.device)] = p_valid
    return out


def ensemble_probs(p_trained: torch.Tensor, p_clip: torch.Tensor, seen: torch.Tensor, *, w: float = 0.8,
                   renormalize: bool = True) -> torch.Tensor:
    """zsseg's geometric ensemble of a trained classifier and CLIP on crops.

    Args:
        p_trained, p_clip: (N, K) class probabilities of the same proposals.
        seen: (K,) bool, True for classes the trained classifier was trained on.
        w: 0.8 (zsseg's default; 0.5 in its cross-dataset configs).
        renormalize: divide each row by its sum over K.
    Returns:
        (N, K): ``P_trained^w P_clip^(1-w)`` on seen classes, ``P_trained^(1-w) P_clip^w`` on new ones.
    """
    seen = seen.to(torch.bool).to(p_trained.device)
    out = torch.where(seen, p_trained ** w * p_clip ** (1 - w), p_trained ** (1 - w) * p_clip ** w)
    return out / out.sum(-1, keepdim=True).clamp_min(1e-12) if renormalize else out
