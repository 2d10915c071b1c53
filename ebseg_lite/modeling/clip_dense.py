"""CLIP as a dense feature extractor, and the CLIP Surgery stream (paper section 3.2 and 3.3).

Pure functions over an open_clip ``VisionTransformer`` (``visual``): nothing here owns parameters.

* :func:`resize_pos_embed` lets CLIP run at a non-224 size (320 -> 20x20 tokens for ViT-B/16).
* :func:`clip_block` is one residual attention block written out, with an optional additive
  attention bias (the mask-attention head needs it; open_clip's block only takes a mask).
* :func:`dual_block` runs the original stream and the Surgery stream of one block together:
  the Surgery stream adds value-value attention ``softmax(v v^T * scale) v`` computed on the
  *original* stream's ``ln_1`` input, and skips the FFN (CLIP Surgery; official
  ``Surgery_ResidualAttentionBlock``). The original stream is unchanged by it.
* :func:`dense_clip_features` runs blocks ``0 .. stop-1`` and keeps the token grids after the
  requested blocks (fusion input, paper eq. 1) and, at inference, the Surgery stream from block
  ``layers // 6`` on (the official range).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.utils.checkpoint
import torch.nn.functional as F
from torch import nn


def resize_pos_embed(pos: torch.Tensor, src_grid: Tuple[int, int], dst_grid: Tuple[int, int]) -> torch.Tensor:
    """Resize a ViT positional embedding bicubically (CLS row kept as is).

    Args:
        pos: (1 + gh*gw, W) positional embedding for a ``src_grid`` = (gh, gw) token grid.
        dst_grid: (h, w) target grid.
    Returns:
        (1 + h*w, W).
    """
    if tuple(src_grid) == tuple(dst_grid):
        return pos
    cls_pos, grid = pos[:1], pos[1:]
    width = grid.shape[-1]
    grid = grid.reshape(1, src_grid[0], src_grid[1], width).permute(0, 3, 1, 2)  # (1, W, gh, gw)
    grid = F.interpolate(grid, size=tuple(dst_grid), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(-1, width)  # (h*w, W)
    return torch.cat([cls_pos, grid], dim=0)


def _heads(x: torch.Tensor, nh: int) -> torch.Tensor:
    """(B, T, W) -> (B, nh, T, W/nh)."""
    b, t, w = x.shape
    return x.reshape(b, t, nh, w // nh).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """(B, nh, T, dh) -> (B, T, nh*dh)."""
    b, nh, t, dh = x.shape
    return x.transpose(1, 2).reshape(b, t, nh * dh)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              bias: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention that also returns its weights (for notebooks).

    Args:
        q, k, v: (B, nh, T, dh).  bias: additive, broadcastable to (B, nh, T, T).
    Returns:
        out (B, nh, T, dh) and weights (B, nh, T, T).
    """
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    if bias is not None:
        scores = scores + bias
    w = scores.softmax(dim=-1)
    return w @ v, w


def _sdpa(q, k, v, bias):
    # Same math as `attention`, fused and memory-light; weights not materialised.
    return F.scaled_dot_product_attention(q, k, v, attn_mask=None if bias is None else bias.to(q.dtype))


def _qkv(blk: nn.Module, h: torch.Tensor):
    attn = blk.attn
    qkv = F.linear(h, attn.in_proj_weight, attn.in_proj_bias)  # (B, T, 3W)
    q, k, v = qkv.chunk(3, dim=-1)
    nh = attn.num_heads
    return _heads(q, nh), _heads(k, nh), _heads(v, nh)


def _out(blk: nn.Module, o: torch.Tensor) -> torch.Tensor:
    return blk.attn.out_proj(_merge(o))


def clip_block(blk: nn.Module, x: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """One open_clip ``ResidualAttentionBlock`` with an additive attention bias.

    Args:
        x: (B, T, W) tokens.  bias: (B, nh, T, T) or None.
    Returns:
        (B, T, W): ``x + attn(ln_1 x) ; x + mlp(ln_2 x)`` with the block's frozen weights.
    """
    q, k, v = _qkv(blk, blk.ln_1(x))
    x = x + blk.ls_1(_out(blk, _sdpa(q, k, v, bias)))
    return x + blk.ls_2(blk.mlp(blk.ln_2(x)))


def dual_block(blk: nn.Module, x: torch.Tensor, xs: Optional[torch.Tensor],
               bias: Optional[torch.Tensor] = None,
               surgery_bias: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """One block of the original stream ``x`` and the Surgery stream ``xs`` (None: starts here).

    Both attentions read ``ln_1`` of the *original* stream (official behaviour); the Surgery
    stream adds ``out_proj(softmax(v v^T * scale + surgery_bias) v)`` and no FFN.

    Args:
        x: (B, T, W) original stream.  xs: (B, T, W) Surgery stream, or None to start it from x.
        bias / surgery_bias: (B, nh, T, T) additive biases or None.
    Returns:
        (x, xs) after the block, both (B, T, W).
    """
    q, k, v = _qkv(blk, blk.ln_1(x))
    surgery = blk.ls_1(_out(blk, _sdpa(v, v, v, surgery_bias)))
    xs = (x if xs is None else xs) + surgery
    x = x + blk.ls_1(_out(blk, _sdpa(q, k, v, bias)))
    x = x + blk.ls_2(blk.mlp(blk.ln_2(x)))
    return x, xs


def clip_grid(visual: nn.Module) -> Tuple[int, int]:
    g = visual.grid_size
    return (g, g) if isinstance(g, int) else tuple(g)


def surgery_start_block(visual: nn.Module, override: Optional[int] = None) -> int:
    """First block of the Surgery stream: ``layers // 6`` in the official code (2 for ViT-B/16)."""
    return len(visual.transformer.resblocks) // 6 if override is None else override


def embed_patches(visual: nn.Module, image: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """Patchify, prepend CLS, add the (resized) positional embedding, ``ln_pre``.

    Args:
        image: (B, 3, H', W') CLIP-normalised.
    Returns:
        tokens (B, 1 + h*w, W) and the grid (h, w).
    """
    x = visual.conv1(image)  # (B, W, h, w)
    b, width, h, w = x.shape
    x = x.flatten(2).transpose(1, 2)  # (B, L, W)
    cls = visual.class_embedding.to(x.dtype).expand(b, 1, width)
    x = torch.cat([cls, x], dim=1)  # (B, 1+L, W)
    pos = resize_pos_embed(visual.positional_embedding, clip_grid(visual), (h, w))
    x = x + pos.to(x.dtype)
    return visual.ln_pre(x), (h, w)


def tokens_to_grid(tokens: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
    """(B, 1 + h*w, W) -> (B, W, h, w), CLS dropped."""
    b, _, width = tokens.shape
    return tokens[:, 1:].transpose(1, 2).reshape(b, width, *grid)


@dataclass
class ClipDense:
    """What the dense CLIP pass returns (all tensors keep the batch axis)."""
    grid: Tuple[int, int]                 # (h, w)
    feats: Dict[int, torch.Tensor]        # block -> (B, W, h, w), original stream after that block
    tokens: torch.Tensor                  # (B, 1+L, W) original stream after the last block run
    surgery: Optional[torch.Tensor]       # (B, 1+L, W) Surgery stream after the last block run


def dense_clip_features(visual: nn.Module, image: torch.Tensor, *, feature_blocks: Sequence[int],
                        surgery: bool = True, surgery_start: Optional[int] = None,
                        checkpoint: bool = False) -> ClipDense:
    """Run CLIP blocks ``0 .. max(feature_blocks)-1`` on a non-224 image.

    Args:
        visual: open_clip VisionTransformer.
        image: (B, 3, H', W') CLIP-normalised (H' = p * padded H).
        feature_blocks: 1-based blocks whose output tokens are returned as grids (3, 6, 9).
        surgery: also run the Surgery stream (inference only in the official code).
        checkpoint: recompute the plain blocks in the backward pass (gradient checkpointing) when
            gradients flow (training with the trainable positional embedding).
    Returns:
        :class:`ClipDense`.
    """
    x, grid = embed_patches(visual, image)
    blocks = visual.transformer.resblocks
    start = surgery_start_block(visual, surgery_start)
    xs = None
    feats = {}
    for i in range(max(feature_blocks)):
        if surgery and i >= start:
            x, xs = dual_block(blocks[i], x, xs)
        elif checkpoint and torch.is_grad_enabled() and x.requires_grad:
            x = torch.utils.checkpoint.checkpoint(clip_block, blocks[i], x, use_reentrant=False)
        else:
            x = clip_block(blocks[i], x)
        if i + 1 in feature_blocks:
            feats[i + 1] = tokens_to_grid(x, grid)
    return ClipDense(grid=grid, feats=feats, tokens=x, surgery=xs)


def project_tokens(visual: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """CLIP's output head on any tokens: ``normalize(ln_post(t) @ proj)``; (..., W) -> (..., C)."""
    return F.normalize(visual.ln_post(tokens) @ visual.proj, dim=-1)
