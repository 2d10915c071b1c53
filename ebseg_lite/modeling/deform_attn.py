"""Multi-scale deformable attention (Deformable DETR), pure PyTorch with ``grid_sample``.

The pixel decoder of Mask2Former (and so of EBSeg, paper section 3.2) uses it; the official code
compiles a CUDA op and falls back to this same computation. Written here because it is part of
the lesson: every query samples ``n_points`` locations per head and level around a reference
point and mixes them with softmax weights.
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


class MSDeformAttn(nn.Module):
    """Projections around :func:`ms_deform_attn` (offsets and weights predicted from the query)."""

    def __init__(self, dim: int = 256, n_levels: int = 3, n_heads: int = 8, n_points: int = 4):
        super().__init__()
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
        offsets = self.sampling_offsets(query).view(b, q, nh, nl, npnt, 2)
        weights = self.attention_weights(query).view(b, q, nh, nl * npnt).softmax(-1).view(b, q, nh, nl, npnt)
        wh = torch.tensor([[w, h] for h, w in shapes], dtype=query.dtype, device=query.device)  # (nl, 2) as (x, y)
        locations = reference[:, :, None, :, None, :] + offsets / wh[None, None, None, :, None, :]
        return self.output_proj(ms_deform_attn(value, shapes, locations, weights))


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
