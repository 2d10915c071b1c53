"""Image-embedding balancing and the semantic map (paper eq. 8-14; official inference).

Two forms, both offered, the official one the default:

* :func:`balance` (official code): per-branch softmax over the K classes, then a per-class
  weighted geometric mean ``P_A^wA * P_B^wB * P_D^wD`` with one weight triple for seen classes
  and one for new classes, renormalised over K. The paper notes a geometric mean does slightly
  better than its arithmetic form.
* :func:`balance_embeddings` (paper eq. 9-13): mix the embeddings arithmetically,
  ``E_seen = aA + bB + (1-a-b)D`` and ``E_new = gA + bB + (1-g-b)D``, classify seen classes
  with E_seen and new classes with E_new.

Either way the void probability comes from A alone (softmax over K + 1) and the final class
probabilities are ``[P * (1 - p_void), p_void]`` (:func:`with_void`).
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn.functional as F


def class_logits(embeds: torch.Tensor, text: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """``logit_scale * x . T^T``: (..., C), (K', C) -> (..., K')."""
    return logit_scale * embeds @ text.t()


def with_background(text: torch.Tensor, bg_embed: torch.Tensor) -> torch.Tensor:
    """The classifier of training and inference (section 3.4): the K text embeddings and the learnable
    background embedding, normalised, as the last row: (K, C), (1, C) -> (K+1, C)."""
    return torch.cat([text, F.normalize(bg_embed, dim=-1)])


def balance(p_a: torch.Tensor, p_b: torch.Tensor, p_d: torch.Tensor, seen: torch.Tensor, *,
            w_seen: Sequence[float] = (0.21, 0.7, 0.09), w_new: Sequence[float] = (0.0, 0.7, 0.3),
            eps: float = 1e-8) -> torch.Tensor:
    """Official balancing: per-class weighted geometric mean, renormalised over K.

    Args:
        p_a, p_b, p_d: (..., K) probability tables of the three branches.
        seen: (K,) bool, True for classes of the training vocabulary.
        w_seen, w_new: weights (wA, wB, wD) for seen / new classes.
        eps: the official 1e-8 inside the log (keeps a zero product finite).
    Returns:
        (..., K) probabilities: ``softmax_K(log(eps + P_A^wA P_D^wD P_B^wB))``.
    """
    seen = seen.to(torch.bool).to(p_a.device)

    def fused(w):
        wa, wb, wd = w
        return torch.log(eps + p_a ** wa * p_d ** wd * p_b ** wb)

    logits = torch.where(seen, fused(w_seen), fused(w_new))
    return logits.softmax(dim=-1)


def balance_embeddings(A: torch.Tensor, B: torch.Tensor, D: torch.Tensor, text: torch.Tensor,
                       seen: torch.Tensor, *, a: float = 0.2, b: float = 0.7, g: float = 0.0,
                       logit_scale: float = 100.0) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Paper form (eq. 9-13): arithmetic mix of embeddings, then classification.

    Args:
        A, B, D: (..., N, C) embeddings.  text: (K, C) normalised class embeddings.
        seen: (K,) bool.
    Returns:
        probabilities (..., N, K) (softmax over K of the concatenated logits),
        and the two mixed embeddings E_seen, E_new (..., N, C).
    """
    e_seen = a * A + b * B + (1 - a - b) * D
    e_new = g * A + b * B + (1 - g - b) * D
    seen = seen.to(torch.bool).to(A.device)
    logits = torch.where(seen, class_logits(e_seen, text, logit_scale), class_logits(e_new, text, logit_scale))
    return logits.softmax(dim=-1), e_seen, e_new


def void_probability(logits_a_with_bg: torch.Tensor) -> torch.Tensor:
    """p_void from A's logits over K + 1 (background last): (..., K+1) -> (...)."""
    return logits_a_with_bg.softmax(dim=-1)[..., -1]


def with_void(probs: torch.Tensor, p_void: torch.Tensor) -> torch.Tensor:
    """Final class table ``[P * (1 - p_void), p_void]``: (..., K), (...) -> (..., K+1)."""
    return torch.cat([probs * (1 - p_void)[..., None], p_void[..., None]], dim=-1)


def semantic_inference(class_probs: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """Semantic map (eq. 14): ``S[k] = sum_n P[n, k] * sigmoid(M[n])``.

    Args:
        class_probs: (B, N, K) (void column already dropped).  mask_logits: (B, N, H, W).
            The batch axis is optional (one image: (N, K) and (N, H, W)).
    Returns:
        (B, K, H, W), or (K, H, W) without a batch axis.
    """
    return torch.einsum("...nk,...nhw->...khw", class_probs, mask_logits.sigmoid())


def official_map_probs(class_probs_with_void: torch.Tensor) -> torch.Tensor:
    """What the official code feeds to :func:`semantic_inference`:
    ``softmax(log(P + 1e-8))`` without the void column: (..., K+1) -> (..., K)."""
    return torch.log(class_probs_with_void + 1e-8).softmax(dim=-1)[..., :-1]
