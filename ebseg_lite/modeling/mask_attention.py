"""CLIP mask attention (paper section 3.3): the embeddings B and, at inference, F_clip.

The last l CLIP blocks (3 for ViT-B, after block 9) run again on ``[N query tokens, CLS, L image
tokens]``, every query token a copy of CLS, with the additive bias of :func:`build_attn_bias`:
each query attends to itself and to the image tokens its mask favours. ``B = normalize(ln_post(
query_out) @ proj)``. At inference the Surgery stream runs through the same blocks and its image
tokens give ``F_clip = normalize(ln_post(surgery tokens) @ proj)`` (used for D, eq. 3).

Official quirk kept: the code builds a "plain" bias for the Surgery stream, but the tensors alias,
so both streams get the learned bias (``surgery_bias="official"``). It changes nothing visible:
the Surgery stream's query rows are never read, and its image rows are identical in both biases;
``surgery_bias="plain"`` is provided to show exactly that.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from ebseg_lite.modeling.attn_bias import build_attn_bias
from ebseg_lite.modeling.clip_dense import ClipDense, clip_block, dual_block, project_tokens


def clip_mask_attention(visual: nn.Module, dense: ClipDense, pooled_bias: torch.Tensor, *,
                        start_block: int, surgery: bool = True,
                        surgery_bias: str = "official") -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Run the mask-attention head once.

    Args:
        visual: open_clip VisionTransformer (frozen).
        dense: the dense pass, stopped after ``start_block`` blocks (tokens (B, 1+L, W)).
        pooled_bias: (B, nh, N, h, w) per-head bias on the CLIP grid.
        start_block: first head block (9 for ViT-B: blocks 9, 10, 11).
        surgery: also carry the Surgery stream and return F_clip (needs ``dense.surgery``).
    Returns:
        B (B, N, C) normalised, and F_clip (B, C, h, w) or None.
    """
    b, nh, n, h, w = pooled_bias.shape
    cls = dense.tokens[:, :1]
    x = torch.cat([cls.expand(-1, n, -1), dense.tokens], dim=1)   # (B, N+1+L, W)
    bias = build_attn_bias(pooled_bias).to(x.dtype)                # (B, nh, T, T)
    xs = None
    if surgery:
        if dense.surgery is None:
            raise ValueError("surgery=True needs the dense pass to run the Surgery stream")
        s = dense.surgery
        xs = torch.cat([s[:, :1].expand(-1, n, -1), s], dim=1)
        sbias = bias if surgery_bias == "official" else build_attn_bias(pooled_bias, plain=True).to(x.dtype)
    for blk in visual.transformer.resblocks[start_block:]:
        if surgery:
            x, xs = dual_block(blk, x, xs, bias, sbias)
        else:
            x = clip_block(blk, x, bias)
    B = project_tokens(visual, x[:, :n])                           # (B, N, C)
    if not surgery:
        return B, None
    f = project_tokens(visual, xs[:, n + 1:])                      # (B, L, C)
    return B, f.transpose(1, 2).reshape(b, -1, h, w)
