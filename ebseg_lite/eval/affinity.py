"""Class affinity matrices: what the SSC loss (paper eq. 4-7) pulls together.

The SSC loss asks the matrix of cosines between image embeddings of different classes to look like
the matrix of cosines between their text embeddings. Here both matrices are measured on a test set:
for every ground-truth segment, the A embedding of the query whose mask covers it best; averaged per
class; then the (K, K) cosine matrix, next to the text one.
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ebseg_lite.losses.ssc import cosine_matrix


def best_query_per_segment(mask_logits: torch.Tensor, label: torch.Tensor, ignore_value: int = 255
                           ) -> Tuple[torch.Tensor, torch.Tensor]:
    """For each class present in ``label``, the query whose (binarised) mask has the highest IoU with it.

    Args:
        mask_logits: (N, Hm, Wm) mask logits.  label: (H, W) class ids.
    Returns:
        classes (M,) and queries (M,) long.
    """
    masks = F.interpolate(mask_logits[None].float(), size=label.shape[-2:], mode="bilinear",
                          align_corners=False)[0] > 0  # (N, H, W)
    classes = torch.unique(label)
    classes = classes[classes != ignore_value]
    gt = label[None] == classes[:, None, None]  # (M, H, W)
    inter = torch.einsum("mhw,nhw->mn", gt.float(), masks.float())
    union = gt.flatten(1).sum(1)[:, None] + masks.flatten(1).sum(1)[None] - inter
    return classes.long(), (inter / union.clamp_min(1)).argmax(1)


def class_embeddings(pairs: Iterable[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]], num_classes: int,
                     ignore_value: int = 255) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean normalised embedding per class over a set of images.

    Args:
        pairs: per image (embeds (N, C), mask_logits (N, Hm, Wm), label (H, W)).
    Returns:
        (K, C) per-class means (zero rows for absent classes) and (K,) counts.
    """
    total, count = None, torch.zeros(num_classes)
    for emb, masks, label in pairs:
        if total is None:
            total = torch.zeros(num_classes, emb.shape[-1])
        classes, queries = best_query_per_segment(masks, label, ignore_value)
        total.index_add_(0, classes, F.normalize(emb[queries].float(), dim=-1))
        count.index_add_(0, classes, torch.ones(len(classes)))
    return total / count.clamp_min(1)[:, None], count


def affinity_gap(image_aff: torch.Tensor, text_aff: torch.Tensor, keep: Optional[Sequence[bool]] = None) -> float:
    """Mean |image - text| over the off-diagonal pairs of the kept classes (a readable SSC distance)."""
    idx = torch.arange(image_aff.shape[0]) if keep is None else torch.nonzero(torch.as_tensor(keep)).flatten()
    i, t = image_aff[idx][:, idx], text_aff[idx][:, idx]
    off = ~torch.eye(len(idx), dtype=torch.bool)
    return float((i - t).abs()[off].mean())


def affinity_matrices(class_embeds: torch.Tensor, text: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(K, K) image cosine matrix and (K, K) text cosine matrix."""
    return cosine_matrix(class_embeds), cosine_matrix(text)
