"""Training-free dense CLIP: what each method changes in the *last* block of CLIP's image tower.

Every method here keeps CLIP frozen and untouched up to its last block (CLIP Surgery: its last
blocks), then reads the patch tokens through ``ln_post`` and ``proj`` and compares them with the
class text embeddings by cosine. They differ only in the attention weights of that block and in
whether its residual connection and FFN stay. With ``s = dh^-0.5`` (dh: head width),
``q, k, v`` the heads of ``ln_1(x)`` and ``O = out_proj``:

============  ==============================================  ===============  ======================
method        attention weights (T x T per head)               residual + FFN   source (read, re-told)
============  ==============================================  ===============  ======================
clip          softmax(q k^T s)                                 kept             open_clip, for reference
maskclip      identity (each token keeps its own value)         kept             chongzhou96/MaskCLIP vit.py
sclip         softmax(q q^T s) + softmax(k k^T s)              kept             wangf3014/SCLIP csa
naclip        softmax(k k^T s + G), G Gaussian of patch dist.  dropped          sinahmr/NACLIP 'reduced'
clearclip     softmax(q q^T s)                                 dropped          mc-lan/ClearCLIP
surgery       softmax(v v^T s), a second stream, no FFN        see below        xmed-lab/CLIP_Surgery
============  ==============================================  ===============  ======================

"kept" means ``y = x + O(W v); y = y + mlp(ln_2 y)``; "dropped" means ``y = O(W v)`` alone.
NACLIP's ``G[p, p'] = exp(-|p - p'|^2 / (2 sigma^2))`` over the two patches' grid positions
(sigma = 5 patches), zero in the CLS row and column. CLIP Surgery runs a value-value stream beside
the original one over its last blocks (:func:`ebseg_lite.modeling.clip_dense.dual_block`: no FFN on
the new stream), takes the CLS token from the original stream, and re-weights the cosines by
"feature surgery" (:func:`feature_surgery`).

Pure functions; shapes: B batch, nh heads, T = 1 + h*w tokens, W width, C embedding, K classes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ebseg_lite.modeling.clip_dense import (_heads, _merge, clip_block, dual_block, embed_patches,
                                            project_tokens)

#: attention kind and whether the last block keeps its residual connection and FFN, per method.
LAST_BLOCK = {
    "clip": ("qk", True),
    "maskclip": ("identity", True),
    "sclip": ("qq+kk", True),
    "naclip": ("kk+gauss", False),
    "clearclip": ("qq", False),
    "surgery": ("vv", True),  # the Surgery stream's own rule (dual_block); listed for its weights
}
NACLIP_SIGMA = 5.0


def neighbourhood_bias(grid: Tuple[int, int], sigma: float = NACLIP_SIGMA, *, cls_token: bool = True) -> torch.Tensor:
    """NACLIP's additive neighbourhood term ``G[p, p'] = exp(-|p - p'|^2 / (2 sigma^2))``.

    Args:
        grid: (h, w) patch grid; patches are numbered row-major.
        sigma: standard deviation in patches (NACLIP: 5).
        cls_token: prepend a zero row and column for the CLS token.
    Returns:
        (T, T) with T = h*w (+1 with the CLS token).
    """
    h, w = grid
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()], dim=1)  # (h*w, 2)
    g = torch.exp(-torch.cdist(pos, pos) ** 2 / (2 * sigma ** 2))  # (h*w, h*w)
    return F.pad(g, (1, 0, 1, 0)) if cls_token else g


def attention_weights(kind: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                      grid: Optional[Tuple[int, int]] = None, sigma: float = NACLIP_SIGMA) -> torch.Tensor:
    """The last block's attention weights for one method (table in the module docstring).

    Args:
        kind: "qk", "identity", "qq+kk", "kk+gauss", "qq" or "vv".
        q, k, v: (B, nh, T, dh) heads of ``ln_1(x)``.
        grid: (h, w) patch grid, needed by "kk+gauss" (T = 1 + h*w).
    Returns:
        (B, nh, T, T); rows sum to 1, except "qq+kk" whose rows sum to 2 (SCLIP adds two softmaxes).
    """
    s = q.shape[-1] ** -0.5
    sim = lambda a, b: (a @ b.transpose(-2, -1)) * s  # (B, nh, T, T)
    if kind == "qk":
        return sim(q, k).softmax(-1)
    if kind == "identity":
        eye = torch.eye(q.shape[-2], dtype=q.dtype, device=q.device)
        return eye.expand(*q.shape[:-1], q.shape[-2])
    if kind == "qq+kk":
        return sim(q, q).softmax(-1) + sim(k, k).softmax(-1)
    if kind == "kk+gauss":
        if grid is None:
            raise ValueError("NACLIP's neighbourhood attention needs the patch grid (h, w)")
        return (sim(k, k) + neighbourhood_bias(grid, sigma).to(k)).softmax(-1)
    if kind == "qq":
        return sim(q, q).softmax(-1)
    if kind == "vv":
        return sim(v, v).softmax(-1)
    raise ValueError(f"unknown attention kind {kind!r}; choose one of qk, identity, qq+kk, kk+gauss, qq, vv")


def block_qkv(blk: nn.Module, x: torch.Tensor):
    """(B, T, W) tokens -> q, k, v heads (B, nh, T, dh) of ``ln_1(x)`` with the block's frozen weights."""
    attn = blk.attn
    q, k, v = F.linear(blk.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    return _heads(q, attn.num_heads), _heads(k, attn.num_heads), _heads(v, attn.num_heads)


def last_block(blk: nn.Module, x: torch.Tensor, method: str, *, grid: Tuple[int, int],
               sigma: float = NACLIP_SIGMA) -> Tuple[torch.Tensor, torch.Tensor]:
    """One method's version of CLIP's last residual attention block (not for "surgery").

    Args:
        blk: open_clip ``ResidualAttentionBlock``.  x: (B, T, W) tokens entering it.
        method: a key of :data:`LAST_BLOCK` other than "surgery".  grid: (h, w).
    Returns:
        tokens (B, T, W) and the attention weights (B, nh, T, T).
    """
    kind, residual = LAST_BLOCK[method]
    q, k, v = block_qkv(blk, x)
    weights = attention_weights(kind, q, k, v, grid=grid, sigma=sigma)
    out = blk.ls_1(blk.attn.out_proj(_merge(weights @ v)))  # (B, T, W)
    if not residual:
        return out, weights
    y = x + out
    return y + blk.ls_2(blk.mlp(blk.ln_2(y))), weights


def surgery_start(num_blocks: int) -> int:
    """First block of CLIP Surgery's second stream: the last six (official, ViT-B and ViT-L); a CLIP
    with fewer than 12 blocks (the toy and tiny ones) gets its last half."""
    return max(num_blocks - 6, num_blocks // 2)


@dataclass
class DenseOutput:
    """What :func:`dense_features` returns for one batch of windows."""
    patches: torch.Tensor   # (B, C, h, w) normalised patch embeddings
    cls: torch.Tensor       # (B, C) normalised CLS embedding (Surgery's feature-surgery weights use it)
    weights: torch.Tensor   # (B, nh, T, T) the last block's attention weights
    grid: Tuple[int, int]   # (h, w)


def dense_features(visual: nn.Module, image: torch.Tensor, method: str, *, sigma: float = NACLIP_SIGMA) -> DenseOutput:
    """Run CLIP's image tower with ``method``'s last block and read every token through its head.

    Args:
        visual: open_clip ``VisionTransformer``.
        image: (B, 3, H', W') CLIP-normalised; any size that the patch size divides.
        method: "clip", "maskclip", "sclip", "naclip", "clearclip" or "surgery".
    Returns:
        :class:`DenseOutput`.
    """
    if method not in LAST_BLOCK:
        raise ValueError(f"unknown dense-CLIP method {method!r}; choose one of {sorted(LAST_BLOCK)}")
    x, grid = embed_patches(visual, image)  # (B, T, W)
    blocks = visual.transformer.resblocks
    if method == "surgery":
        start, xs = surgery_start(len(blocks)), None
        for i, blk in enumerate(blocks):
            if i == len(blocks) - 1:  # the weights the last block's Surgery stream uses (notebook maps)
                q, k, v = block_qkv(blk, x)
                weights = attention_weights("vv", q, k, v)
            if i >= start:
                x, xs = dual_block(blk, x, xs)
            else:
                x = clip_block(blk, x)
        tokens = torch.cat([x[:, :1], xs[:, 1:]], dim=1)  # CLS from the original stream (official)
    else:
        for blk in blocks[:-1]:
            x = clip_block(blk, x)
        tokens, weights = last_block(blocks[-1], x, method, grid=grid, sigma=sigma)
    emb = project_tokens(visual, tokens)  # (B, T, C) normalised
    b, _, c = emb.shape
    patches = emb[:, 1:].transpose(1, 2).reshape(b, c, *grid)  # (B, C, h, w)
    return DenseOutput(patches=patches, cls=emb[:, 0], weights=weights, grid=grid)


def feature_surgery(cosine: torch.Tensor, cls_cosine: torch.Tensor) -> torch.Tensor:
    """CLIP Surgery's feature surgery on cosines (``clip_feature_surgery`` without a redundant text).

    Each class is weighted by how likely the whole image is to show it, ``w = p / mean(p)`` with
    ``p = softmax(2 * cls_cosine)``; the class-mean of the weighted cosines, the part every class
    shares, is subtracted: ``S[.., k] = w_k c_k - mean_k'(w_k' c_k')``.

    Args:
        cosine: (B, K, h, w) patch-text cosines.  cls_cosine: (B, K) CLS-text cosines.
    Returns:
        (B, K, h, w).
    """
    p = (2 * cls_cosine).softmax(-1)  # (B, K)
    weighted = cosine * (p / p.mean(-1, keepdim=True))[:, :, None, None]
    return weighted - weighted.mean(1, keepdim=True)


def patch_logits(out: DenseOutput, text: torch.Tensor, method: str) -> torch.Tensor:
    """Per-patch class scores before the logit scale: cosines, feature surgery for "surgery".

    Args:
        out: :class:`DenseOutput`.  text: (K, C) normalised class embeddings.
    Returns:
        (B, K, h, w).
    """
    cosine = torch.einsum("bchw,kc->bkhw", out.patches, text.to(out.patches))
    if method == "surgery":
        return feature_surgery(cosine, out.cls @ text.to(out.cls).t())
    return cosine
