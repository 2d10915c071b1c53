"""SAM's image encoder as a multi-scale backbone (paper section 3.1, Fig. 2 left).

The frozen segment-anything ``ImageEncoderViT`` sees the padded image at its own size (640, not
1024): its 64x64 positional embedding is resized bicubically to the 40x40 token grid, and the
relative position tables are resized by segment-anything itself. The outputs of the four
global-attention blocks (2, 5, 8, 11 for ViT-B) become res2..res5 by bilinear resizing x4, x2, x1,
x0.5 (strides 4, 8, 16, 32). The neck is not used.

The blocks run through :func:`sam_block`: segment-anything's own ``Block`` computation with its own
weights and helpers (``window_partition``, ``get_rel_pos``), but the attention is PyTorch's fused
``scaled_dot_product_attention`` with the decomposed relative-position bias (MViTv2) passed as
an additive mask, ``bias[i, j] = <q_i, R^h[i_h - j_h]> + <q_i, R^w[i_w - j_w]>``, built one block of
query rows at a time (:func:`rel_pos_sdpa`); the library materialises ``q k^T``, adds the bias in a
second pass and softmaxes in a third. Same numbers up to float rounding
(tests/modeling/test_sam_speed.py); ``fast=False`` runs the library's ``Block``.
"""
from __future__ import annotations

from functools import partial
from typing import Dict

import torch
import torch.utils.checkpoint
import torch.nn.functional as F
from torch import nn
from segment_anything.modeling import ImageEncoderViT
from segment_anything.modeling.image_encoder import get_rel_pos, window_partition, window_unpartition

from ebseg_lite.config import SamConfig

RES_NAMES = ("res2", "res3", "res4", "res5")


def build_sam_encoder(cfg: SamConfig) -> ImageEncoderViT:
    """segment-anything's own ``ImageEncoderViT`` at the configured size, neck removed."""
    enc = ImageEncoderViT(
        img_size=cfg.pretrain_img_size, patch_size=cfg.patch_size, embed_dim=cfg.embed_dim,
        depth=cfg.depth, num_heads=cfg.num_heads, mlp_ratio=4.0, out_chans=256, qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6), act_layer=nn.GELU, use_abs_pos=True,
        use_rel_pos=True, window_size=cfg.window_size, global_attn_indexes=tuple(cfg.global_attn_indexes),
    )
    enc.neck = nn.Identity()  # EBSeg takes block outputs, not the neck's 256-channel embedding
    return enc


#: elements of the additive bias built at once (16 MB of float32): a query chunk's bias stays in cache
BIAS_CHUNK = 2 ** 22


def rel_pos_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel_h: torch.Tensor, rel_w: torch.Tensor,
                 *, chunk: int = BIAS_CHUNK) -> torch.Tensor:
    """Fused SDPA with the decomposed bias ``rel_h[i, j_h] + rel_w[i, j_w]`` as an additive mask, built
    for a block of query rows at a time.

    Each query's softmax needs only its own bias row, so the (h*w) x (h*w) bias of a global block (123 MB
    per ViT-B block at 640 px) is never written whole: a chunk of ``chunk`` elements is built and read
    while it is still in cache (one global block 126 -> 76 ms on 2 threads, the same numbers bit for bit).

    Args:
        q, k, v: (B, nh, h*w, dh).  rel_h: (B, nh, h*w, h).  rel_w: (B, nh, h*w, w).
    Returns:
        (B, nh, h*w, dh).
    """
    b, nh, n, _ = q.shape
    rh, rw = rel_h[..., :, None], rel_w[..., None, :]                   # (B, nh, n, h, 1), (B, nh, n, 1, w)
    rows = max(1, chunk // (b * nh * n))
    outs = [F.scaled_dot_product_attention(q[:, :, s:s + rows], k, v,
                                           attn_mask=(rh[:, :, s:s + rows] + rw[:, :, s:s + rows]).flatten(-2))
            for s in range(0, n, rows)]
    return outs[0] if len(outs) == 1 else torch.cat(outs, 2)


def sam_attention(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """segment-anything's ``Attention.forward`` through fused SDPA (:func:`rel_pos_sdpa`).

    Args:
        x: (B, h, w, E) tokens of one window (or of the whole grid for global blocks).
    Returns:
        (B, h, w, E).
    """
    b, h, w, _ = x.shape
    nh = attn.num_heads
    q, k, v = attn.qkv(x).reshape(b, h * w, 3, nh, -1).permute(2, 0, 3, 1, 4).unbind(0)  # (B, nh, h*w, dh)
    if attn.use_rel_pos:
        rq = q.reshape(b, nh, h, w, -1)                                   # unscaled q, as the library
        rel_h = torch.einsum("bnhwc,hkc->bnhwk", rq, get_rel_pos(h, h, attn.rel_pos_h))  # (B, nh, h, w, h)
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", rq, get_rel_pos(w, w, attn.rel_pos_w))  # (B, nh, h, w, w)
        o = rel_pos_sdpa(q, k, v, rel_h.reshape(b, nh, h * w, h), rel_w.reshape(b, nh, h * w, w))
    else:
        o = F.scaled_dot_product_attention(q, k, v)                     # scale dh^-0.5, as attn.scale
    return attn.proj(o.transpose(1, 2).reshape(b, h, w, -1))


def _mlp_in_place(mlp: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """segment-anything's ``MLPBlock`` with the activation applied in place (no second (B, h, w, 4E)
    buffer); only where no gradient is recorded, since GELU's backward needs its input."""
    h = mlp.lin1(x)
    h = torch.ops.aten.gelu_(h) if type(mlp.act) is nn.GELU and mlp.act.approximate == "none" else mlp.act(h)
    return mlp.lin2(h)


def sam_block(blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """segment-anything's ``Block.forward`` with :func:`sam_attention`; x: (B, h, w, E) -> (B, h, w, E).
    Without autograd the two residual sums and the MLP's activation reuse the fresh buffers."""
    y = blk.norm1(x)
    if blk.window_size > 0:
        hw = y.shape[1:3]
        y, pad_hw = window_partition(y, blk.window_size)                 # (B * windows, ws, ws, E)
        y = window_unpartition(sam_attention(blk.attn, y), blk.window_size, pad_hw, hw)
    else:
        y = sam_attention(blk.attn, y)
    if torch.is_grad_enabled() or y.dtype != x.dtype:  # autocast: the sum must promote, not round to y's dtype
        x = x + y
        return x + blk.mlp(blk.norm2(x))
    x = y.add_(x)                     # y is this block's own tensor; the input x may be kept by the caller
    out = _mlp_in_place(blk.mlp, blk.norm2(x))
    return out.add_(x) if out.dtype == x.dtype else x + out


def sam_multiscale_features(encoder: ImageEncoderViT, image: torch.Tensor, *,
                            global_attn_indexes, scales=(4.0, 2.0, 1.0, 0.5),
                            fast: bool = True, checkpoint: bool = False,
                            defer_res2: bool = False) -> Dict[str, torch.Tensor]:
    """Multi-scale SAM features.

    Args:
        image: (B, 3, H, W) SAM-normalised, H and W multiples of 32.
        fast: blocks through :func:`sam_block` (fused attention); False: the library's ``Block``.
        checkpoint: recompute each block in the backward pass (gradient checkpointing) when
            gradients are on: the frozen blocks' activations are not kept, only the trainable
            positional embedding needs gradients through them.
        defer_res2: leave res2 at its block's own stride, unresized: the pixel decoder's 1x1 lateral
            conv then runs before the resizing (``PixelDecoder.forward(res2_scale=...)``), and
            :func:`resize_level` gives the stride-4 map where it is wanted.
    Returns:
        {"res2": (B, E, H/4, W/4), "res3": (B, E, H/8, W/8), "res4": (B, E, H/16, W/16),
         "res5": (B, E, H/32, W/32)}, E = SAM width (768 for ViT-B).
    """
    x = encoder.patch_embed(image)  # (B, gh, gw, E)
    gh, gw = x.shape[1:3]
    pos = F.interpolate(encoder.pos_embed.permute(0, 3, 1, 2), size=(gh, gw), mode="bicubic",
                        align_corners=False).permute(0, 2, 3, 1)
    x = x + pos
    outs = []
    for i, blk in enumerate(encoder.blocks):
        step = partial(sam_block, blk) if fast else blk
        if checkpoint and torch.is_grad_enabled() and x.requires_grad:
            x = torch.utils.checkpoint.checkpoint(step, x, use_reentrant=False)
        else:
            x = step(x)
        if i in global_attn_indexes:
            outs.append(x)
    feats = {}
    for name, o, s in zip(RES_NAMES, outs, scales):
        # (B, E, gh, gw) in NCHW memory, whatever the blocks' layout: the library's blocks keep
        # patch_embed's permuted layout, the in-place ones a (B, h, w, E) one, and the convolutions
        # that read these features round differently by layout (trained toy weights reproduce only so)
        o = o.permute(0, 3, 1, 2).contiguous()
        feats[name] = o if defer_res2 and name == "res2" else resize_level(o, s)
    return feats


def resize_level(o: torch.Tensor, scale: float) -> torch.Tensor:
    """A block's (B, E, gh, gw) output resized by ``scale`` (bilinear, as EBSeg makes res2..res5)."""
    return o if scale == 1 else F.interpolate(o, scale_factor=scale, mode="bilinear", align_corners=False)


def zero_features(image: torch.Tensor, *, embed_dim: int, patch_size: int,
                  scales=(4.0, 2.0, 1.0, 0.5), defer_res2: bool = False) -> Dict[str, torch.Tensor]:
    """What :func:`sam_multiscale_features` returns, shapes only, filled with zeros: the "no SAM"
    ablation (paper table 7). image: (B, 3, H, W) -> {"res2".."res5": (B, E, h_l, w_l)} zeros
    (``defer_res2``: res2 at the token grid, as :func:`sam_multiscale_features` leaves it)."""
    b = image.shape[0]
    gh, gw = image.shape[-2] // patch_size, image.shape[-1] // patch_size
    grid = image.new_zeros(b, embed_dim, gh, gw)
    return {name: grid if s == 1 or (defer_res2 and name == "res2") else
            image.new_zeros(b, embed_dim, int(gh * s), int(gw * s)) for name, s in zip(RES_NAMES, scales)}
