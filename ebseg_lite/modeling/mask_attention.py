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

from typing import List, Optional, Sequence, Tuple

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


def clip_mask_attention_layers(visual: nn.Module, dense: ClipDense, pooled_biases: Sequence[torch.Tensor], *,
                               start_block: int) -> List[torch.Tensor]:
    """B for every decoder output (training's deep supervision) in *one* head run.

    :func:`build_attn_bias` lets a query see only itself and the image tokens, and the CLS and image
    tokens see no query, so the queries of all outputs can share one sequence
    ``[N_1 + ... + N_O queries, CLS, L image tokens]``: each query's result is the one it gets in its
    own run (the other queries reach it only through the official -100, a weight below 1e-40), and
    the image tokens, which do not depend on any bias, are computed once instead of once per output.
    Same values as ``[clip_mask_attention(visual, dense, b, surgery=False, ...)[0] for b in pooled_biases]``
    to float rounding; O times fewer image-token rows, the bulk of the head's work in training.

    Args:
        pooled_biases: O tensors (B, nh, N_o, h, w), the pooled bias of each decoder output.
    Returns:
        O tensors B (B, N_o, C), normalised.
    """
    sizes = [b.shape[2] for b in pooled_biases]
    B, _ = clip_mask_attention(visual, dense, torch.cat(list(pooled_biases), dim=2), start_block=start_block,
                               surgery=False)
    return list(B.split(sizes, dim=1))
