"""The semantic structure consistency (SSC) loss (paper eq. 4-7).

It asks the matched image embeddings A to be related to each other as their classes' text
embeddings are: the cosine matrix of the k matched embeddings should equal the cosine matrix
of their k ground-truth classes' text embeddings.

* official form (default): mean over all k^2 entries (diagonal included) of the *squared*
  difference (``nn.MSELoss``); the official code multiplies A_hat A_hat^T with A's scale s
  included, see ``normalize``.
* paper form (``form="paper"``): the mean of the absolute difference (eq. 7 writes an L2 norm
  of a scalar).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_matrix(x: torch.Tensor) -> torch.Tensor:
    """(k, C) -> (k, k) cosine similarities."""
    x = F.normalize(x, dim=-1)
    return x @ x.t()


def ssc_loss(image_embeds: torch.Tensor, text_embeds: torch.Tensor, *, form: str = "official",
             normalize: bool = True) -> torch.Tensor:
    """SSC loss for one image.

    Args:
        image_embeds: (k, C) matched A embeddings (last decoder layer).
        text_embeds: (k, C) text embeddings of their ground-truth classes (detached inside).
        form: "official" (squared difference) or "paper" (absolute difference).
        normalize: cosine of the image embeddings (True); False uses raw dot products as the
            official code does with A = s * normalize(.) (entries s^2 cos).
    Returns:
        scalar; 0 when k = 0 (never NaN).
    """
    if form not in ("official", "paper"):
        raise ValueError(f"form must be 'official' or 'paper', got {form!r}")
    if image_embeds.shape[0] == 0:
        return image_embeds.sum() * 0.0
    img = cosine_matrix(image_embeds) if normalize else image_embeds @ image_embeds.t()
    txt = cosine_matrix(text_embeds.detach())
    diff = img - txt
    return (diff ** 2).mean() if form == "official" else diff.abs().mean()
