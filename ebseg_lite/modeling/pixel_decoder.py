"""The pixel decoder (paper section 3.2, Mask2Former's MSDeformAttn pixel decoder).

res3..res5 (fused SAM+CLIP) go through a 6-layer multi-scale deformable-attention encoder;
one FPN step adds res2; a 1x1 conv gives ``mask_features`` at stride 4. The three encoder
outputs (coarse to fine) are the memories the transformer decoder attends to, round-robin.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ebseg_lite.config import DecoderConfig
from ebseg_lite.modeling.deform_attn import MSDeformAttn, sine_position_embedding
from ebseg_lite.modeling.sam_features import resize_level


def _inference() -> bool:
    """In-place steps (no second buffer) only without autograd: training keeps the official operations and
    their memory layout, so trained weights reproduce bit for bit."""
    return not torch.is_grad_enabled()


class DeformEncoderLayer(nn.Module):
    """Post-norm: ``x = LN(x + MSDeformAttn(x + pos))``; ``x = LN(x + FFN(x))``."""

    def __init__(self, dim: int, ffn: int, n_levels: int, n_heads: int, n_points: int):
        super().__init__()
        self.self_attn = MSDeformAttn(dim, n_levels, n_heads, n_points)
        self.norm1 = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, ffn)
        self.linear2 = nn.Linear(ffn, dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x, pos, reference, shapes):
        x = self.norm1(x + self.self_attn(x + pos, reference, x, shapes))
        return self.norm2(x + self.linear2(F.relu(self.linear1(x), inplace=_inference())))


def reference_points(shapes: List[Tuple[int, int]], b: int, device=None) -> torch.Tensor:
    """Pixel centres of every level in [0, 1], shared by all levels: (B, S, nl, 2) as (x, y)."""
    refs = []
    for h, w in shapes:
        ys = torch.linspace(0.5, h - 0.5, h, device=device) / h
        xs = torch.linspace(0.5, w - 0.5, w, device=device) / w
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        refs.append(torch.stack([gx.reshape(-1), gy.reshape(-1)], -1))
    ref = torch.cat(refs, 0)  # (S, 2)
    return ref[None, :, None, :].expand(b, -1, len(shapes), -1)


def _gn(groups: int, ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(groups, ch), ch)


class PixelDecoder(nn.Module):
    """MSDeformAttn encoder over res5, res4, res3 + FPN on res2 -> mask features."""

    def __init__(self, in_dim: int, cfg: DecoderConfig):
        super().__init__()
        d = cfg.conv_dim
        self.levels = ("res5", "res4", "res3")  # coarse to fine, as the decoder consumes them
        self.input_proj = nn.ModuleList(nn.Sequential(nn.Conv2d(in_dim, d, 1), _gn(cfg.gn_groups, d)) for _ in self.levels)
        self.level_embed = nn.Parameter(torch.randn(len(self.levels), d))
        self.layers = nn.ModuleList(
            DeformEncoderLayer(d, cfg.enc_ffn, len(self.levels), cfg.enc_heads, cfg.enc_points)
            for _ in range(cfg.enc_layers))
        self._init_encoder(cfg.enc_init)
        self.lateral = nn.Sequential(nn.Conv2d(in_dim, d, 1, bias=False), _gn(cfg.gn_groups, d))
        self.output = nn.Sequential(nn.Conv2d(d, d, 3, padding=1, bias=False), _gn(cfg.gn_groups, d), nn.ReLU())
        self.mask_features = nn.Conv2d(d, cfg.mask_dim, 1)
        for m in [p[0] for p in self.input_proj]:
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
        for conv in (self.lateral[0], self.output[0], self.mask_features):
            nn.init.kaiming_uniform_(conv.weight, a=1)
        nn.init.zeros_(self.mask_features.bias)

    def _init_encoder(self, mode: str) -> None:
        """Official (``msdeformattn.py``, ``MSDeformAttnTransformerEncoderOnly._reset_parameters``):
        xavier-uniform on every encoder parameter with more than one dimension (so the FFN linears
        too), then each deformable attention's own reset; ``level_embed`` is N(0, 1) either way.
        ``"torch"`` keeps PyTorch's default init of the FFN linears."""
        if mode not in ("official", "torch"):
            raise ValueError(f"decoder.enc_init must be 'official' or 'torch', got {mode!r}")
        if mode == "official":
            for p in self.layers.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
            for layer in self.layers:
                layer.self_attn.reset_parameters()

    def forward(self, feats: Dict[str, torch.Tensor], *,
                res2_scale: Optional[float] = None) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """
        Args:
            feats: {"res2".."res5"}: (B, E, H/4, W/4) ... (B, E, H/32, W/32).
            res2_scale: None (official): res2 comes at stride 4. A number: res2 comes at its SAM block's
                own stride and is resized by this factor between the lateral's 1x1 conv and its GroupNorm
                (:meth:`lateral_res2`).
        Returns:
            mask_features (B, mask_dim, H/4, W/4) and the multi-scale memories
            [(B, D, H/32, W/32), (B, D, H/16, W/16), (B, D, H/8, W/8)].
        """
        srcs, pos, shapes = [], [], []
        for i, name in enumerate(self.levels):
            x = feats[name].float()
            b, _, h, w = x.shape
            srcs.append(self.input_proj[i](x).flatten(2).transpose(1, 2))  # (B, h*w, D)
            p = sine_position_embedding(b, h, w, srcs[-1].shape[-1] // 2, device=x.device)
            pos.append(p.flatten(2).transpose(1, 2) + self.level_embed[i])
            shapes.append((h, w))
        x = torch.cat(srcs, 1)  # (B, S, D)
        p = torch.cat(pos, 1)
        ref = reference_points(shapes, x.shape[0], device=x.device)
        for layer in self.layers:
            x = layer(x, p, ref, shapes)
        memories = [t.transpose(1, 2).reshape(x.shape[0], -1, h, w)
                    for t, (h, w) in zip(x.split([h * w for h, w in shapes], 1), shapes)]
        res2 = self.lateral_res2(feats["res2"].float(), res2_scale)
        up = F.interpolate(memories[-1], size=res2.shape[-2:], mode="bilinear", align_corners=False)
        y = self.output(res2.add_(up) if _inference() else res2 + up)
        return self.mask_features(y), memories

    def lateral_res2(self, res2: torch.Tensor, scale: Optional[float] = None) -> torch.Tensor:
        """The FPN lateral (1x1 conv, GroupNorm) on res2: (B, E, h, w) -> (B, D, h*scale, w*scale).

        With ``scale`` the 1x1 conv runs before the bilinear resizing instead of after it: both are
        linear, the conv per pixel and the resizing per channel with weights summing to one, so the order
        changes float rounding only (about 1e-6), while the conv reads 16x fewer pixels at stride 16
        (768 -> 256 channels at 40x40 instead of 160x160 for ViT-B at 640 px). GroupNorm's statistics
        are spatial, so it runs after the resizing either way.
        """
        if scale is None:
            return self.lateral(res2)
        conv, norm = self.lateral
        return norm(resize_level(conv(res2), scale))            # the resize SAM's res2 would have had
