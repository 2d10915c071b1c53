"""The per-head attention bias (the paper's M_attn, Fig. 2) and the CLIP attention-bias matrix.

Two steps, both pure functions:

1. :func:`per_head_bias`: the decoder predicts, for each query and CLIP head, a real-valued map
   over the mask grid: ``bias[b, j, n] = w * <e_n, F_attn[b, j]> + c`` where ``F_attn`` is a
   per-pixel MLP of the mask features with ``nh * D`` channels and ``(w, c)`` a learned scalar
   affine (official ``bias_scaling``). :func:`folded_per_head_bias` computes the same numbers
   without materialising ``F_attn``, by folding the MLP's last linear layer into the query side
   (``<e, W h + b> = <W^T e, h> + <e, b>``): about 3x fewer operations at 640 px; ``w`` and ``c``
   are folded in too, so the full-resolution output is written once (one ``baddbmm``).
2. :func:`build_attn_bias`: max-pool it to the CLIP grid and place it in the
   ``(N + 1 + L) x (N + 1 + L)`` additive bias of the mask-attention head (stage 3), with the
   official constant -100 (not -inf) wherever a token must not look.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F

NEG = -100.0  # the official "do not attend" constant


def per_head_bias(mask_embed: torch.Tensor, attn_feats: torch.Tensor, *, weight: torch.Tensor,
                  bias: torch.Tensor) -> torch.Tensor:
    """Official form.

    Args:
        mask_embed: (B, N, D) query mask embeddings e.
        attn_feats: (B, nh, D, Hm, Wm) per-head pixel features F_attn.
        weight, bias: the scalar affine (shape (1, 1) and (1,)).
    Returns:
        (B, nh, N, Hm, Wm) real-valued bias.
    """
    raw = torch.einsum("bnd,bjdhw->bjnhw", mask_embed, attn_feats)
    return raw * weight.reshape(()) + bias.reshape(())


def folded_per_head_bias(mask_embed: torch.Tensor, hidden: torch.Tensor, last_weight: torch.Tensor,
                         last_bias: torch.Tensor, *, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Same value as :func:`per_head_bias` with ``F_attn = last_weight @ hidden + last_bias``.

    Args:
        mask_embed: (B, N, D).  hidden: (B, D', Hm, Wm) input of the MLP's last layer.
        last_weight: (nh * D, D').  last_bias: (nh * D,).
    Returns:
        (B, nh, N, Hm, Wm).
    """
    b, n, d = mask_embed.shape
    nh = last_weight.shape[0] // d
    _, dh, hm, wm = hidden.shape
    w, c = weight.reshape(()), bias.reshape(())
    w3 = last_weight.reshape(nh, d, -1)                          # (nh, D, D')
    u = torch.einsum("bnd,jde->bjne", mask_embed, w3) * w        # (B, nh, N, D'), the scale w folded in
    const = torch.einsum("bnd,jd->bjn", mask_embed, last_bias.reshape(nh, d)) * w + c  # (B, nh, N)
    # one pass over the (B, nh*N, Hm*Wm) output: the GEMM accumulates onto the broadcast constant
    out = torch.baddbmm(const.reshape(b, nh * n, 1), u.reshape(b, nh * n, dh), hidden.reshape(b, dh, hm * wm))
    return out.reshape(b, nh, n, hm, wm)


def pool_bias(bias: torch.Tensor, grid: Tuple[int, int], method: str = "max") -> torch.Tensor:
    """Down-sample (B, nh, N, Hm, Wm) -> (B, nh, N, h, w); the official method is "max"."""
    b, nh, n, hm, wm = bias.shape
    x = bias.reshape(b, nh * n, hm, wm)
    if method == "max":
        x = F.adaptive_max_pool2d(x, grid)
    elif method == "avg":
        x = F.adaptive_avg_pool2d(x, grid)
    elif method in ("bilinear", "bicubic", "nearest"):
        x = F.interpolate(x, size=grid, mode=method, align_corners=False if method != "nearest" else None)
    else:
        raise ValueError(f"unknown pooling {method!r}: use 'max', 'avg', 'bilinear', 'bicubic' or 'nearest'")
    return x.reshape(b, nh, n, *grid)


def build_attn_bias(pooled: torch.Tensor, *, plain: bool = False, neg: float = NEG) -> torch.Tensor:
    """The additive attention bias of the mask-attention head.

    Token order: N query tokens, CLS, L image tokens. Queries see themselves (0), not the other
    queries nor CLS (``neg``), and the image tokens through the learned bias (or ``neg`` with
    ``plain=True``, the Surgery-stream bias the official code intended). CLS and image tokens see
    CLS and image tokens (0) and no query (``neg``).

    Args:
        pooled: (B, nh, N, h, w) per-head bias on the CLIP grid.
    Returns:
        (B, nh, N + 1 + L, N + 1 + L).
    """
    b, nh, n, h, w = pooled.shape
    L = h * w
    t = n + 1 + L
    out = pooled.new_zeros(b, nh, t, t)
    out[..., :, :n] = neg
    idx = torch.arange(n, device=pooled.device)
    out[..., idx, idx] = 0.0
    out[..., :n, n] = neg
    out[..., :n, n + 1:] = neg if plain else pooled.reshape(b, nh, n, L)
    return out
