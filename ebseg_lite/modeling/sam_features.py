"""SAM's image encoder as a multi-scale backbone (paper section 3.1, Fig. 2 left).

The frozen segment-anything ``ImageEncoderViT`` sees the padded image at its own size (640, not
1024): its 64x64 positional embedding is resized bicubically to the 40x40 token grid, and the
relative position tables are resized by segment-anything itself. The outputs of the four
global-attention blocks (2, 5, 8, 11 for ViT-B) become res2..res5 by bilinear resizing x4, x2, x1,
x0.5 (strides 4, 8, 16, 32). The neck is not used.
"""
from __future__ import annotations

from functools import partial
from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn
from segment_anything.modeling import ImageEncoderViT

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


def sam_multiscale_features(encoder: ImageEncoderViT, image: torch.Tensor, *,
                            global_attn_indexes, scales=(4.0, 2.0, 1.0, 0.5)) -> Dict[str, torch.Tensor]:
    """Multi-scale SAM features.

    Args:
        image: (B, 3, H, W) SAM-normalised, H and W multiples of 32.
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
        x = blk(x)
        if i in global_attn_indexes:
            outs.append(x)
    feats = {}
    for name, o, s in zip(RES_NAMES, outs, scales):
        o = o.permute(0, 3, 1, 2)  # (B, E, gh, gw)
        feats[name] = o if s == 1 else F.interpolate(o, scale_factor=s, mode="bilinear", align_corners=False)
    return feats
