"""Hungarian matching of queries to ground-truth masks (DETR, Carion et al. 2020, eq. 1; Mask2Former Sec. 3.2).

Each image has N query predictions and M ground-truth segments. Before any loss, every segment gets
its own query: the one-to-one assignment sigma minimising

    C[n, m] = cost_class * (-p_n(c_m)) + cost_mask * BCE(M_n, G_m) + cost_dice * dice(M_n, G_m)

where p_n = softmax over the K + 1 classes (the last one is "no object") of query n's logits and the
mask terms are computed on ``num_points`` uniform random points shared by all masks of the image (the
same points for predictions and targets). In EBSeg the class term uses the logits of the fully
supervised embeddings A only; B is trained with the same assignment. Defaults are the official
weights: class 2, mask 5, dice 5, 12544 (= 112 x 112) points.

The assignment itself is scipy's ``linear_sum_assignment`` (the field's solver, not rewritten here).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from scipy.optimize import linear_sum_assignment

from ebseg_lite.losses.mask_losses import pairwise_bce_cost, pairwise_dice_cost
from ebseg_lite.losses.point_sampling import point_sample

__all__ = ["matching_cost", "hungarian_match"]

Target = Dict[str, torch.Tensor]


@torch.no_grad()
def matching_cost(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    *,
    labels: torch.Tensor,
    masks: torch.Tensor,
    cost_class: float = 2.0,
    cost_mask: float = 5.0,
    cost_dice: float = 5.0,
    num_points: int = 12544,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Matching cost matrix of one image (no gradient).

    Args:
        class_logits: (N, K+1) class logits of the queries (A's logits in EBSeg).
        mask_logits: (N, Hm, Wm) mask logits of the queries.
        labels: (M,) long ground-truth classes in [0, K).
        masks: (M, H', W') ground-truth masks (bool or float); H' x W' may differ from Hm x Wm.
        cost_class, cost_mask, cost_dice: weights of the three terms.
        num_points: P, uniform random points shared by all predictions and targets.
        generator: optional torch.Generator (on the masks' device).

    Returns:
        (N, M) float32 cost; lower is a better pair.
    """
    n = mask_logits.shape[0]
    points = torch.rand(1, num_points, 2, device=mask_logits.device, generator=generator)  # (1, P, 2)
    if labels.numel() == 0:
        return mask_logits.new_zeros((n, 0), dtype=torch.float32)
    probs = class_logits.float().softmax(-1)  # (N, K+1)
    # -p(c) stands in for 1 - p(c): the constant 1 does not change the assignment.
    class_term = -probs[:, labels.to(probs.device)]  # (N, M)
    pred = point_sample(mask_logits, points).float()  # (N, P)
    gt = point_sample(masks.to(mask_logits.device).float(), points).float()  # (M, P)
    cost = (
        cost_class * class_term
        + cost_mask * pairwise_bce_cost(pred, targets=gt)
        + cost_dice * pairwise_dice_cost(pred, targets=gt)
    )  # (N, M)
    if not torch.isfinite(cost).all():
        raise ValueError("matching cost has NaN or inf entries; check the logits")
    return cost


@torch.no_grad()
def hungarian_match(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    targets: Sequence[Target],
    *,
    cost_class: float = 2.0,
    cost_mask: float = 5.0,
    cost_dice: float = 5.0,
    num_points: int = 12544,
    generator: Optional[torch.Generator] = None,
) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """Optimal one-to-one assignment of queries to ground-truth segments, per image (no gradient).

    Args:
        class_logits: (B, N, K+1) class logits (A's logits in EBSeg).
        mask_logits: (B, N, Hm, Wm) mask logits.
        targets: B dicts with ``labels`` (M,) long and ``masks`` (M, H', W') bool or float; M may be 0.
        cost_class, cost_mask, cost_dice: weights of the cost terms (official: 2, 5, 5).
        num_points: points for the mask terms (official: 12544).
        generator: optional torch.Generator for the random points (one draw of (1, P, 2) per image),
            or a list of B generators, one per image (a batch split over processes then draws the same points).

    Returns:
        B pairs ``(pred_idx, tgt_idx)`` of (min(N, M),) int64 CPU tensors: query ``pred_idx[j]`` is
        matched to segment ``tgt_idx[j]``; ``pred_idx`` is sorted.
    """
    assert class_logits.shape[0] == mask_logits.shape[0] == len(targets), "batch sizes differ"
    gens = generator if isinstance(generator, (list, tuple)) else [generator] * len(targets)
    indices = []
    for b, target in enumerate(targets):
        cost = matching_cost(
            class_logits[b],
            mask_logits[b],
            labels=target["labels"],
            masks=target["masks"],
            cost_class=cost_class,
            cost_mask=cost_mask,
            cost_dice=cost_dice,
            num_points=num_points,
            generator=gens[b],
        )  # (N, M)
        rows, cols = linear_sum_assignment(cost.cpu().numpy())
        indices.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
    return indices
