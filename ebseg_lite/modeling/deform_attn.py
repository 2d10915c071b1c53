"""Multi-scale deformable attention (Deformable DETR), pure PyTorch.

The pixel decoder of Mask2Former (and so of EBSeg, paper section 3.2) uses it; the official code
compiles a CUDA op and falls back to the ``grid_sample`` computation of :func:`ms_deform_attn`.
Written here because it is part of the lesson: every query samples ``n_points`` locations per head
and level around a reference point and mixes them with softmax weights.

:func:`ms_deform_attn` is the readable reference (one ``grid_sample`` per level).
:func:`ms_deform_attn_gather` is the same sum written as one weighted gather: each bilinear sample
is 4 corner rows of ``value`` times (attention weight x bilinear weight), out-of-range corners
weighted 0 (``grid_sample``'s zero padding), so all heads, levels, points and corners of a query go
into one ``embedding_bag`` call (no (B*nh, dh, Q, np) intermediate, no per-level loop). Equal to the
reference up to float summation order, gradients included.

Which one the module runs (``MSDeformAttn.impl``, default ``"auto"``): the gather when no gradient is
recorded (inference: 344 -> 72 ms forward for ViT-B's 80/40/20 levels on one CPU thread), ``grid_sample``
when autograd records, because ``embedding_bag``'s backward sorts every sampled row index: at the toy
size (batch 8, 16/8/4 levels, 4 heads) forward + backward took 82 ms with the gather against 38 ms with
``grid_sample`` (one thread, ``torch.set_num_threads(1)``). ``"gather"`` or ``"grid_sample"`` force one.
"""
from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn


def ms_deform_attn(value: torch.Tensor, shapes: Sequence[Tuple[int, int]],
                   locations: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Sample and mix.

    Args:
        value: (B, S, nh, dh) values of all levels, flattened (S = sum of h_l * w_l).
        shapes: [(h_l, w_l)] per level.
        locations: (B, Q, nh, nl, np, 2) sampling points as (x, y) in [0, 1].
        weights: (B, Q, nh, nl, np) attention weights (softmax over nl * np).
    Returns:
        (B, Q, nh * dh).
    """
    b, _, nh, dh = value.shape
    _, q, _, nl, npnt, _ = locations.shape
    per_level = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * locations - 1  # grid_sample wants [-1, 1]
    out = None
    for lvl, (h, w) in enumerate(shapes):
        v = per_level[lvl].permute(0, 2, 3, 1).reshape(b * nh, dh, h, w)  # (B*nh, dh, h, w)
        g = grids[:, :, :, lvl].transpose(1, 2).reshape(b * nh, q, npnt, 2)  # (B*nh, Q, np, 2)
        s = F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False)  # (B*nh, dh, Q, np)
        wl = weights[:, :, :, lvl].transpose(1, 2).reshape(b * nh, 1, q, npnt)
        part = (s * wl).sum(-1)  # (B*nh, dh, Q): accumulate level by level, no stacked copy
        out = part if out is None else out + part
    out = out.view(b, nh * dh, q)
    return out.transpose(1, 2).contiguous()


def _per_point(values, npnt: int, device) -> torch.Tensor:
    """One number per level -> (nl * np,): the level's number repeated for each of its points."""
    return torch.tensor(values, dtype=torch.float32, device=device).repeat_interleave(npnt)


def ms_deform_attn_gather(value: torch.Tensor, shapes: Sequence[Tuple[int, int]],
                          locations: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """:func:`ms_deform_attn` as one weighted gather (same arguments, same result).

    Bilinear sampling with ``align_corners=False`` reads pixel ``(x * w_l - 0.5, y * h_l - 0.5)``:
    corners ``(x0, y0) .. (x0 + 1, y0 + 1)`` with weights ``(1 - fx)(1 - fy) .. fx fy``.

    Every sampled point of a query head is a column of an (M, K) table (M = B * Q * nh rows, K = nl * np
    columns), and each level's width, height and first row are (K,) vectors: every step below runs on
    contiguous rows (a (nl, 1, 2)-shaped broadcast is ten times slower on a CPU).

    Returns:
        (B, Q, nh * dh).
    """
    b, s, nh, dh = value.shape
    _, q, _, nl, npnt, _ = locations.shape
    dev, m, k = locations.device, b * q * nh, nl * npnt
    w = _per_point([w for _, w in shapes], npnt, dev)                   # (K,)
    h = _per_point([h for h, _ in shapes], npnt, dev)
    start = _per_point([sum(hh * ww for hh, ww in shapes[:i]) for i in range(nl)], npnt, dev)
    loc = locations.float().reshape(m, k, 2)
    px, py = loc[..., 0] * w - 0.5, loc[..., 1] * h - 0.5              # (M, K) pixel coordinates
    x0, y0 = px.floor(), py.floor()
    fx, fy = px - x0, py - y0
    wx = ((1 - fx) * ((x0 >= 0) & (x0 <= w - 1)), fx * ((x0 >= -1) & (x0 <= w - 2)))  # 0 outside
    wy = ((1 - fy) * ((y0 >= 0) & (y0 <= h - 1)), fy * ((y0 >= -1) & (y0 <= h - 2)))
    xc = (torch.minimum(x0.clamp(min=0), w - 1), torch.minimum((x0 + 1).clamp(min=0), w - 1))
    yc = (torch.minimum(y0.clamp(min=0), h - 1) * w + start, torch.minimum((y0 + 1).clamp(min=0), h - 1) * w + start)
    # row of value.reshape(B*S*nh, dh) for pixel p of a level starting at row start_l: (b * S + start_l + p) * nh + head
    rows_dt = torch.float32 if b * s * nh < 2 ** 24 else torch.float64   # row numbers exact in this float
    head_row = (torch.arange(b, device=dev).view(b, 1, 1) * (s * nh)
                + torch.arange(nh, device=dev).view(1, 1, nh)).expand(b, q, nh).reshape(m, 1).to(rows_dt)
    a = weights.float().reshape(m, k)
    corners = ((0, 0), (1, 0), (0, 1), (1, 1))                          # (dx, dy)
    idx = torch.stack([(yc[j] + xc[i]).to(rows_dt) * nh + head_row for i, j in corners], 1)  # (M, 4, K)
    wts = torch.stack([a * wy[j] * wx[i] for i, j in corners], 1)
    index_dt = torch.int32 if b * s * nh < 2 ** 31 else torch.int64
    out = F.embedding_bag(idx.view(m, 4 * k).to(index_dt), value.reshape(b * s * nh, dh),
                          per_sample_weights=wts.view(m, 4 * k).to(value.dtype), mode="sum")  # (M, dh)
    return out.view(b, q, nh * dh)


def softmax_small(x: torch.Tensor) -> torch.Tensor:
    """``x.softmax(-1)`` for a short last dimension (the nl * np = 12 attention weights of a query head),
    written out: PyTorch's softmax kernel runs a 12-wide row three times slower than these four steps."""
    e = (x - x.amax(-1, keepdim=True)).exp()                          # not in place: autograd keeps exp's output
    return e / e.sum(-1, keepdim=True)


class MSDeformAttn(nn.Module):
    """Projections around :func:`ms_deform_attn` (offsets and weights predicted from the query)."""

    IMPLS = ("auto", "gather", "grid_sample")

    def __init__(self, dim: int = 256, n_levels: int = 3, n_heads: int = 8, n_points: int = 4, impl: str = "auto"):
        super().__init__()
        if impl not in self.IMPLS:
            raise ValueError(f"impl must be one of {self.IMPLS}, got {impl!r}")
        self.impl = impl
        if dim % n_heads:
            raise ValueError(f"dim {dim} must be divisible by n_heads {n_heads}")
        self.dim, self.n_levels, self.n_heads, self.n_points = dim, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(dim, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(dim, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        self.reset_parameters()

    def reset_parameters(self):
        # Offsets start on a ring of directions, one per head, growing with the point index.
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.n_heads, dtype=torch.float32) * (2 * math.pi / self.n_heads)
        ring = torch.stack([angles.cos(), angles.sin()], -1)
        ring = ring / ring.abs().max(-1, keepdim=True).values
        ring = ring[:, None, None, :].repeat(1, self.n_levels, self.n_points, 1)
        ring = ring * torch.arange(1, self.n_points + 1, dtype=torch.float32)[None, None, :, None]
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(ring.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for lin in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, query: torch.Tensor, reference: torch.Tensor, memory: torch.Tensor,
                shapes: List[Tuple[int, int]]) -> torch.Tensor:
        """
        Args:
            query: (B, Q, D) (with positions added).  reference: (B, Q, nl, 2) in [0, 1].
            memory: (B, S, D) flattened levels.  shapes: [(h_l, w_l)].
        Returns:
            (B, Q, D).
        """
        b, q, _ = query.shape
        nh, nl, npnt = self.n_heads, self.n_levels, self.n_points
        value = self.value_proj(memory).view(b, memory.shape[1], nh, self.dim // nh)
        offsets = self.sampling_offsets(query).view(b, q, nh, nl * npnt * 2)
        logits = self.attention_weights(query).view(b, q, nh, nl * npnt)
        # the written-out softmax at inference; training keeps PyTorch's kernel, so trained weights reproduce
        weights = (logits.softmax(-1) if torch.is_grad_enabled() else softmax_small(logits)).view(b, q, nh, nl, npnt)
        # offsets are in pixels of their level: divide by (w_l, h_l), laid out as the offsets are
        wh = torch.tensor([[w, h] for h, w in shapes], dtype=query.dtype, device=query.device)  # (nl, 2) as (x, y)
        wh = wh[:, None, :].expand(nl, npnt, 2).reshape(-1)                  # (nl * np * 2,)
        ref = reference[:, :, None, :, None, :].expand(b, q, 1, nl, npnt, 2).reshape(b, q, 1, -1)
        locations = (ref + offsets / wh).view(b, q, nh, nl, npnt, 2)
        use_grid = self.impl == "grid_sample" or (self.impl == "auto" and torch.is_grad_enabled() and (
            value.requires_grad or locations.requires_grad or weights.requires_grad))
        fn = ms_deform_attn if use_grid else ms_deform_attn_gather
        return self.output_proj(fn(value, shapes, locations, weights))


def sine_position_embedding(b: int, h: int, w: int, num_feats: int, *, device=None,
                            temperature: float = 10000.0) -> torch.Tensor:
    """DETR's normalised 2-D sine embedding. Returns (B, 2*num_feats, h, w) (y channels first)."""
    scale, eps = 2 * math.pi, 1e-6
    ones = torch.ones(b, h, w, device=device)
    y = ones.cumsum(1)
    x = ones.cumsum(2)
    y = y / (y[:, -1:, :] + eps) * scale
    x = x / (x[:, :, -1:] + eps) * scale
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
    px = x[..., None] / dim_t
    py = y[..., None] / dim_t
    px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=4).flatten(3)
    py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=4).flatten(3)
    return torch.cat((py, px), dim=3).permute(0, 3, 1, 2)
