"""EBSeg's Mask2Former-style training losses (EBSeg paper, "Total loss" before eq. 4-7; Mask2Former Sec. 3.2).

For every decoder output (9 layers + the initial queries = 10 outputs, deep supervision):

1. match queries to ground-truth segments with the Hungarian matcher driven by A's logits
   (``matcher.py``; each output gets its own matching);
2. class cross-entropy over K + 1 classes for A's logits and, with the same matching, for B's logits;
   unmatched queries are taught "no object" (the last class) with weight 0.1;
3. sigmoid BCE and dice on PointRend-sampled points of each matched mask (``point_sampling.py``),
   normalised by the number of ground-truth masks in the batch.

Weighted sum (official): 2.0 * 0.75 * (CE_A + CE_B) + 5 * BCE + 5 * dice per output. The SSC loss (lambda 10)
lives in its own file; it needs the last output's matching, which ``EBSegCriterion`` returns.

Names follow the official ones, with the two CE terms spelled out: ``loss_ce_A`` (official ``loss_ce``),
``loss_ce_B`` (official ``1_loss_ce``), ``loss_mask``, ``loss_dice``; auxiliary output i (0 = initial
queries) adds the suffix ``_{i}``, the final output has none. ``official_name`` translates.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ebseg_lite.losses.mask_losses import dice_loss, sigmoid_bce_loss
from ebseg_lite.losses.matcher import Target, hungarian_match
from ebseg_lite.losses.point_sampling import point_sample, uncertain_points

__all__ = [
    "LossWeights", "CriterionOutput", "EBSegCriterion", "class_ce_loss", "mask_point_losses",
    "num_masks_normaliser", "official_name",
]

Indices = List[Tuple[torch.Tensor, torch.Tensor]]
_OFFICIAL = {"loss_ce_A": "loss_ce", "loss_ce_B": "1_loss_ce", "loss_mask": "loss_mask", "loss_dice": "loss_dice"}


def official_name(name: str) -> str:
    """``loss_ce_B_3`` -> ``1_loss_ce_3`` and so on (the keys of the official ``weight_dict``)."""
    for ours, theirs in _OFFICIAL.items():
        if name == ours or name.startswith(ours + "_"):
            return theirs + name[len(ours):]
    raise KeyError(name)


def _matched_positions(indices: Indices) -> Tuple[torch.Tensor, torch.Tensor]:
    """(image index, query index) of every matched query, each (R,)."""
    batch = torch.cat([torch.full_like(pred, b) for b, (pred, _) in enumerate(indices)])
    return batch, torch.cat([pred for pred, _ in indices])


def class_ce_loss(
    logits: torch.Tensor, targets: Sequence[Target], indices: Indices, *, no_object_weight: float = 0.1
) -> torch.Tensor:
    """Weighted cross-entropy over all B x N queries; unmatched queries target "no object" (class K).

        loss = sum_q w(y_q) * (-log softmax(logits_q)[y_q]) / sum_q w(y_q),  w = 1, except w(K) = no_object_weight

    Args:
        logits: (B, N, K+1) class logits (A's or B's).
        targets: B dicts with ``labels`` (M,) long in [0, K).
        indices: B pairs (pred_idx, tgt_idx) from the matcher.
        no_object_weight: weight of the no-object class (official 0.1).

    Returns:
        () scalar.
    """
    b, n, k1 = logits.shape
    classes = torch.full((b, n), k1 - 1, dtype=torch.int64, device=logits.device)  # (B, N) all "no object"
    batch, query = _matched_positions(indices)
    matched = torch.cat([t["labels"].to(logits.device)[tgt] for t, (_, tgt) in zip(targets, indices)])
    classes[batch.to(logits.device), query.to(logits.device)] = matched
    class_weight = torch.ones(k1, device=logits.device)
    class_weight[-1] = no_object_weight
    return F.cross_entropy(logits.float().transpose(1, 2), classes, weight=class_weight)


def _matched_target_masks(targets: Sequence[Target], indices: Indices, like: torch.Tensor) -> torch.Tensor:
    """(R, H', W') matched ground-truth masks, zero-padded bottom/right to the largest mask in the batch.

    Padding to a common canvas (before normalising point coordinates) is what the official code does.
    """
    sizes = [t["masks"].shape[-2:] for t in targets if t["masks"].dim() == 3]
    if not sizes:  # no image carries a mask canvas: nothing can be matched either
        return like.new_zeros((0,) + tuple(like.shape[-2:]))
    height, width = max(s[0] for s in sizes), max(s[1] for s in sizes)
    picked = []
    for t, (_, tgt) in zip(targets, indices):
        masks = t["masks"][tgt.to(t["masks"].device)].to(device=like.device, dtype=like.dtype)  # (R_b, h, w)
        if masks.dim() != 3:
            masks = masks.reshape(0, height, width)
        picked.append(F.pad(masks, (0, width - masks.shape[-1], 0, height - masks.shape[-2])))
    return torch.cat(picked)


def mask_point_losses(
    mask_logits: torch.Tensor,
    targets: Sequence[Target],
    indices: Indices,
    *,
    num_masks: float,
    num_points: int = 12544,
    oversample_ratio: float = 3.0,
    importance_sample_ratio: float = 0.75,
    generator: Optional[torch.Generator] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Point-sampled BCE and dice of the matched masks.

    The points of each matched mask are chosen by PointRend importance sampling on its predicted logits
    (no gradient), then prediction and target are read at the same normalised points, so targets at
    image resolution (H x W) and predictions at Hm x Wm need no resizing.

    Args:
        mask_logits: (B, N, Hm, Wm) mask logits.
        targets: B dicts with ``masks`` (M, H', W') bool/float.
        indices: B pairs (pred_idx, tgt_idx) from the matcher.
        num_masks: normaliser (see ``num_masks_normaliser``).
        num_points, oversample_ratio, importance_sample_ratio: PointRend sampling (official 12544, 3.0, 0.75).
        generator: optional torch.Generator for the point draws, or a list of B (one per image).

    Returns:
        (bce, dice): two () scalars, each summed over matched masks and divided by ``num_masks``.
    """
    batch, query = _matched_positions(indices)
    pred = mask_logits[batch.to(mask_logits.device), query.to(mask_logits.device)]  # (R, Hm, Wm)
    with torch.no_grad():
        gt = _matched_target_masks(targets, indices, pred)  # (R, H', W')
        kw = dict(oversample_ratio=oversample_ratio, importance_sample_ratio=importance_sample_ratio)
        if isinstance(generator, (list, tuple)):  # one generator per image: draws independent of the batch split
            counts = [len(p) for p, _ in indices]
            points = torch.cat([uncertain_points(chunk, num_points, generator=g, **kw)
                                for chunk, g in zip(pred.split(counts), generator)])
        else:
            points = uncertain_points(pred, num_points, generator=generator, **kw)  # (R, P, 2)
        gt_points = point_sample(gt, points)  # (R, P)
    pred_points = point_sample(pred, points).float()  # (R, P)
    gt_points = gt_points.float()
    return (
        sigmoid_bce_loss(pred_points, targets=gt_points, num_masks=num_masks),
        dice_loss(pred_points, targets=gt_points, num_masks=num_masks),
    )


def num_masks_normaliser(targets: Sequence[Target], device: torch.device) -> float:
    """Ground-truth masks in the batch, averaged over distributed workers when initialised, at least 1."""
    count = torch.tensor([float(sum(len(t["labels"]) for t in targets))], device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(count)
        count = count / dist.get_world_size()
    return max(count.item(), 1.0)


@dataclass
class LossWeights:
    """Weights of the per-output terms; defaults are the official ones (class 2.0 * 0.75, mask 5, dice 5)."""

    ce_A: float = 2.0 * 0.75
    ce_B: float = 2.0 * 0.75
    mask: float = 5.0
    dice: float = 5.0

    def of(self, name: str) -> float:
        """Weight of a loss name, suffix or not: ``of("loss_dice_3") == self.dice``."""
        for key, field in (("loss_ce_A", "ce_A"), ("loss_ce_B", "ce_B"), ("loss_mask", "mask"), ("loss_dice", "dice")):
            if name == key or name.startswith(key + "_"):
                return getattr(self, field)
        raise KeyError(name)


class CriterionOutput(NamedTuple):
    """What ``EBSegCriterion`` returns.

    losses: unweighted terms by name; weighted: the same times their weight; total: () sum of ``weighted``;
    indices: per decoder output (same order as the input list, last = final), B pairs (pred_idx, tgt_idx).
    """

    losses: Dict[str, torch.Tensor]
    weighted: Dict[str, torch.Tensor]
    total: torch.Tensor
    indices: List[Indices]


class EBSegCriterion(nn.Module):
    """Deep-supervised set criterion: matching + CE(A) + CE(B) + point BCE + point dice per decoder output.

    Has no parameters; a thin module over ``hungarian_match``, ``class_ce_loss`` and ``mask_point_losses``.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        weights: Optional[LossWeights] = None,
        no_object_weight: float = 0.1,
        cost_class: float = 2.0,
        cost_mask: float = 5.0,
        cost_dice: float = 5.0,
        num_points: int = 12544,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.weights = weights if weights is not None else LossWeights()
        self.no_object_weight = no_object_weight
        self.costs = dict(cost_class=cost_class, cost_mask=cost_mask, cost_dice=cost_dice)
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio

    def _one_output(self, out, targets, indices, num_masks, generator) -> Dict[str, torch.Tensor]:
        assert out["logits_A"].shape[-1] == self.num_classes + 1, "logits need K + 1 classes (last = no object)"
        terms = {"loss_ce_A": class_ce_loss(out["logits_A"], targets, indices, no_object_weight=self.no_object_weight)}
        if "logits_B" in out:
            terms["loss_ce_B"] = class_ce_loss(out["logits_B"], targets, indices, no_object_weight=self.no_object_weight)
        terms["loss_mask"], terms["loss_dice"] = mask_point_losses(
            out["masks"], targets, indices, num_masks=num_masks, num_points=self.num_points,
            oversample_ratio=self.oversample_ratio, importance_sample_ratio=self.importance_sample_ratio,
            generator=generator,
        )
        return terms

    def forward(
        self, outputs: Sequence[Dict[str, torch.Tensor]], targets: Sequence[Target],
        *, generator: Optional[torch.Generator] = None,
    ) -> CriterionOutput:
        """Args:
            outputs: per decoder output, dicts with ``logits_A`` (B, N, K+1), ``logits_B`` (B, N, K+1)
                (optional) and ``masks`` (B, N, Hm, Wm); the last entry is the final output.
            targets: B dicts with ``labels`` (M,) long and ``masks`` (M, H', W'); M may be 0.
            generator: optional torch.Generator for all random points (reproducible losses), or a
                list of B generators, one per image: each image's draws then do not depend on which
                other images share its batch (so two processes with half the batch each draw the same
                points as one process with the whole batch).

        Returns:
            ``CriterionOutput(losses, weighted, total, indices)``.
        """
        if isinstance(outputs, dict):
            outputs = [outputs]
        num_masks = num_masks_normaliser(targets, outputs[-1]["logits_A"].device)
        # The final output first, then the auxiliary ones in order: the official order of random draws.
        order = [len(outputs) - 1] + list(range(len(outputs) - 1))
        losses: Dict[str, torch.Tensor] = {}
        indices: List[Optional[Indices]] = [None] * len(outputs)
        for i in order:
            out = outputs[i]
            indices[i] = hungarian_match(
                out["logits_A"], out["masks"], targets, num_points=self.num_points, generator=generator, **self.costs
            )
            suffix = "" if i == len(outputs) - 1 else f"_{i}"
            for name, value in self._one_output(out, targets, indices[i], num_masks, generator).items():
                losses[name + suffix] = value
        weighted = {name: self.weights.of(name) * value for name, value in losses.items()}
        total = torch.stack(list(weighted.values())).sum()
        return CriterionOutput(losses, weighted, total, indices)
