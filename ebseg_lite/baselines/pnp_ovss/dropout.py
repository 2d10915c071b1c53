"""Salience DropOut (PnP-OVSS): make the model look past the few patches it finds most
telling, so the map covers whole objects rather than their most discriminative parts.

Round r = 0 .. R-1 (official ``--drop_iter 4``):

1. run BLIP on the image with every patch dropped so far set to 0 (in the normalised image: the
   mean colour), and read the class maps G_r (K, h, w); set G_r to 0 on the dropped patches;
2. sum the round's maps over the classes (official: over every token after "a picture of"), and add
   the ``n`` highest patches not yet dropped (official ``save_len = 10``) to the dropped set.

The rounds are combined as the official code does (``gradcam_agg_dropfiltered``, initialised with
round 0 and then summed over all rounds): ``M = G_0 + sum_r G_r``, so round 0 counts twice. (A
further average with round 0, ``Full_Filter_Ensemble``, is defined there but never called.)

Shapes: K classes, h x w patches, S input side, p patch size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Tuple

import torch


def top_patches(saliency: torch.Tensor, dropped: torch.Tensor, n: int) -> torch.Tensor:
    """Flat indices of the ``n`` most salient patches not in ``dropped``; (h, w) maps -> (n,) long.
    Ties go to the lower index."""
    s = saliency.flatten().double().clone()
    s[dropped.flatten()] = float("-inf")
    n = min(n, int((~dropped).sum()))
    order = torch.sort(-s, stable=True).indices          # descending, stable on ties
    return order[:n]


def drop_patches(pixel_values: torch.Tensor, dropped: torch.Tensor, patch: int) -> torch.Tensor:
    """Zero the (B, 3, S, S) image on every patch of the (h, w) ``dropped`` mask (a new tensor)."""
    keep = (~dropped).to(pixel_values.dtype)
    keep = keep.repeat_interleave(patch, 0).repeat_interleave(patch, 1)          # (S, S)
    return pixel_values * keep


def combine_rounds(maps: torch.Tensor) -> torch.Tensor:
    """(R, K, h, w) per-round maps -> (K, h, w): ``G_0 + sum_r G_r`` (the official aggregation)."""
    return maps[0] + maps.sum(0)


@dataclass
class DropoutRound:
    """What one round saw (detached). ``dropped`` is the mask *in force* during the round."""
    dropped: torch.Tensor        # (h, w) bool
    pixel_values: torch.Tensor   # (1, 3, S, S) the image as BLIP saw it
    attention: torch.Tensor      # (K, h, w) class maps of the raw cross-attention
    gradcam: torch.Tensor        # (K, h, w) class maps of GradCAM, 0 on dropped patches
    itm_logit: float             # the positive ITM logit


RoundFn = Callable[[torch.Tensor], Tuple[torch.Tensor, torch.Tensor, float]]


def salience_dropout(run: RoundFn, pixel_values: torch.Tensor, *, rounds: int = 4, patches: int = 10,
                     patch: int = 16) -> Tuple[torch.Tensor, List[DropoutRound]]:
    """Run ``rounds`` rounds of Salience DropOut.

    Args:
        run: image (1, 3, S, S) -> (attention class maps (K, h, w), GradCAM class maps (K, h, w),
            positive ITM logit).
        pixel_values: (1, 3, S, S) the normalised image.
    Returns:
        (combined (K, h, w), the rounds).
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    h = pixel_values.shape[-1] // patch
    dropped = torch.zeros(h, h, dtype=torch.bool)
    out: List[DropoutRound] = []
    for r in range(rounds):
        x = drop_patches(pixel_values, dropped, patch)
        att, cam, logit = run(x)
        cam = cam * (~dropped).to(cam.dtype)
        out.append(DropoutRound(dropped.clone(), x.detach(), att.detach(), cam.detach(), float(logit)))
        if r + 1 < rounds:
            idx = top_patches(cam.sum(0), dropped, patches)
            dropped.view(-1)[idx] = True
    return combine_rounds(torch.stack([o.gradcam for o in out])), out
