"""Training losses of EBSeg except SSC: Hungarian matching, class CE for A and B, point-sampled mask BCE and dice.

One concept per file:
    point_sampling.py  PointRend point reading and importance sampling
    mask_losses.py     dice and BCE, per matched pair and pairwise (matching costs)
    matcher.py         Hungarian matching (scipy's linear_sum_assignment)
    criterion.py       class CE, mask point losses, and the deep-supervised ``EBSegCriterion``
"""
from ebseg_lite.losses.criterion import (
    CriterionOutput,
    EBSegCriterion,
    LossWeights,
    class_ce_loss,
    mask_point_losses,
    num_masks_normaliser,
    official_name,
)
from ebseg_lite.losses.mask_losses import dice_loss, pairwise_bce_cost, pairwise_dice_cost, sigmoid_bce_loss
from ebseg_lite.losses.matcher import hungarian_match, matching_cost
from ebseg_lite.losses.point_sampling import logit_uncertainty, point_sample, uncertain_points

__all__ = [
    "CriterionOutput", "EBSegCriterion", "LossWeights", "class_ce_loss", "mask_point_losses",
    "num_masks_normaliser", "official_name", "dice_loss", "pairwise_bce_cost", "pairwise_dice_cost",
    "sigmoid_bce_loss", "hungarian_match", "matching_cost", "logit_uncertainty", "point_sample",
    "uncertain_points",
]
