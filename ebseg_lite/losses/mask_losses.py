"""Binary mask losses on sampled points: sigmoid BCE and dice (Mask2Former, Cheng et al. 2022, Sec. 3.2 / 4).

Both work on point-sampled values (see ``point_sampling.py``): ``logits`` holds a mask's logits at P
points and ``targets`` the ground truth (in [0, 1]) read at the same points.

Per matched pair (prediction i, ground truth i), with p = sigmoid(x):

    BCE_i  = (1/P) sum_p  -[t log p + (1 - t) log(1 - p)]
    dice_i = 1 - (2 sum_p p t + 1) / (sum_p p + sum_p t + 1)

The dice is V-Net's (Milletari et al. 2016, eq. 1) without squares, with the +1 smoothing of the official
code, so an empty target and an all-background prediction cost 0. The losses sum over the matched pairs
and divide by ``num_masks``, the number of ground-truth masks in the batch (DETR's normalisation), not by
the number of pairs.

The pairwise versions give the same quantities for every (prediction, target) pair at once: they are the
mask and dice terms of the Hungarian matching cost (``matcher.py``), computed on points shared by all masks
of an image.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["dice_loss", "sigmoid_bce_loss", "pairwise_dice_cost", "pairwise_bce_cost"]


def dice_loss(logits: torch.Tensor, *, targets: torch.Tensor, num_masks: float = 1.0) -> torch.Tensor:
    """Smoothed dice loss summed over matched masks, divided by ``num_masks``.

    Args:
        logits: (R, P) mask logits at P points, one row per matched prediction.
        targets: (R, P) ground truth at the same points, values in [0, 1].
        num_masks: normaliser (ground-truth masks in the batch, >= 1).

    Returns:
        () scalar: ``sum_i dice_i / num_masks``.
    """
    probs = logits.sigmoid().flatten(1)  # (R, P)
    targets = targets.flatten(1).to(probs.dtype)
    overlap = 2.0 * (probs * targets).sum(-1)  # (R,)
    total = probs.sum(-1) + targets.sum(-1)  # (R,)
    per_mask = 1.0 - (overlap + 1.0) / (total + 1.0)  # (R,)
    return per_mask.sum() / num_masks


def sigmoid_bce_loss(logits: torch.Tensor, *, targets: torch.Tensor, num_masks: float = 1.0) -> torch.Tensor:
    """Binary cross-entropy averaged over points, summed over matched masks, divided by ``num_masks``.

    Args:
        logits: (R, P) mask logits at P points.
        targets: (R, P) ground truth at the same points, values in [0, 1].
        num_masks: normaliser (ground-truth masks in the batch, >= 1).

    Returns:
        () scalar: ``sum_i BCE_i / num_masks``.
    """
    per_point = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")  # (R, P)
    return per_point.mean(1).sum() / num_masks


def pairwise_dice_cost(logits: torch.Tensor, *, targets: torch.Tensor) -> torch.Tensor:
    """Dice loss of every prediction against every target (matching cost).

    Args:
        logits: (N, P) prediction logits at P points shared by all masks.
        targets: (M, P) ground truth at the same points, values in [0, 1].

    Returns:
        (N, M) ``cost[n, m] = dice(logits[n], targets[m])``.
    """
    probs = logits.sigmoid()  # (N, P)
    targets = targets.to(probs.dtype)
    overlap = 2.0 * probs @ targets.T  # (N, M)
    total = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]  # (N, M)
    return 1.0 - (overlap + 1.0) / (total + 1.0)


def pairwise_bce_cost(logits: torch.Tensor, *, targets: torch.Tensor) -> torch.Tensor:
    """Point-averaged BCE of every prediction against every target (matching cost).

    Uses ``BCE(x, t) = t * softplus(-x) + (1 - t) * softplus(x)``, which is linear in t, so the whole
    matrix is two matrix products.

    Args:
        logits: (N, P) prediction logits at P points shared by all masks.
        targets: (M, P) ground truth at the same points, values in [0, 1].

    Returns:
        (N, M) ``cost[n, m] = mean_p BCE(logits[n, p], targets[m, p])``.
    """
    targets = targets.to(logits.dtype)
    cost_if_fg = F.softplus(-logits)  # (N, P): -log sigmoid(x)
    cost_if_bg = F.softplus(logits)  # (N, P): -log(1 - sigmoid(x))
    cost = cost_if_fg @ targets.T + cost_if_bg @ (1.0 - targets).T  # (N, M)
    return cost / logits.shape[1]
