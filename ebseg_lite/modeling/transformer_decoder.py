"""The AdaB decoder (paper eq. 2, Fig. 2): Mask2Former's masked-attention transformer decoder
whose prediction head gives, for every decoder output, the masks M, the fully supervised
embeddings A and the per-head attention bias for the CLIP mask-attention head.

Prediction head for decoder queries q (official ``forward_prediction_heads``):
    o = LN(q);  e = MLP3(o);  M = <e, mask_features>                        (mask logits)
    A = clamp(s, max=10) * normalize(MLP3(Linear(LN(meanpool(mask_features, M > 0))) + o))
    bias = w * <e, MLP3_attn(mask_features)_head> + c                     (per CLIP head)
and the next layer's cross-attention mask is ``sigmoid(resize(M)) < 0.5``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ebseg_lite.modeling.attn_bias import folded_per_head_bias, per_head_bias
from ebseg_lite.config import DecoderConfig
from ebseg_lite.modeling.deform_attn import sine_position_embedding
from ebseg_lite.modeling.mask_pool import masked_mean


class MLP(nn.Module):
    """``layers`` linear layers with ReLU between them."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, layers: int = 3):
        super().__init__()
        dims = [d_in] + [d_hidden] * (layers - 1) + [d_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """Everything but the last linear layer."""
        for layer in self.layers[:-1]:
            x = F.relu(layer(x), inplace=not torch.is_grad_enabled())   # at inference: no second buffer
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers[-1](self.hidden(x))


class DecoderLayer(nn.Module):
    """Masked cross-attention -> self-attention -> FFN, each post-norm (Mask2Former)."""

    def __init__(self, d: int, nheads: int, ffn: int):
        super().__init__()
        # sequence-first, as the official decoder. The official calls keep need_weights=True, so PyTorch
        # materialises and head-averages attention weights nobody reads; at inference need_weights=False gives
        # the same outputs (float rounding) through fused attention (the AdaB decoder 0.51 -> 0.49 s at 640 px).
        # Training keeps the official call, so trained weights reproduce bit for bit.
        self.cross_attn = nn.MultiheadAttention(d, nheads)
        self.norm1 = nn.LayerNorm(d)
        self.self_attn = nn.MultiheadAttention(d, nheads)
        self.norm2 = nn.LayerNorm(d)
        self.linear1 = nn.Linear(d, ffn)
        self.linear2 = nn.Linear(ffn, d)
        self.norm3 = nn.LayerNorm(d)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, q, query_pos, memory, memory_pos, attn_mask):
        """q, query_pos: (B, N, D); memory, memory_pos: (B, S, D); attn_mask: (B*nh, N, S) bool."""
        q, query_pos = q.transpose(0, 1), query_pos.transpose(0, 1)        # (N, B, D)
        memory, memory_pos = memory.transpose(0, 1), memory_pos.transpose(0, 1)
        weights = torch.is_grad_enabled()                                  # see __init__
        q = self.norm1(q + self.cross_attn(q + query_pos, memory + memory_pos, memory, attn_mask=attn_mask,
                                          need_weights=weights)[0])
        qk = q + query_pos
        q = self.norm2(q + self.self_attn(qk, qk, q, need_weights=weights)[0])
        q = self.norm3(q + self.linear2(F.relu(self.linear1(q))))
        return q.transpose(0, 1)


class PredictionHead(nn.Module):
    """Masks M, embeddings A and the per-head attention bias from decoder queries."""

    def __init__(self, cfg: DecoderConfig, clip_dim: int, clip_heads: int):
        super().__init__()
        d, md = cfg.hidden_dim, cfg.mask_dim
        self.norm = nn.LayerNorm(d)
        self.mask_embed = MLP(d, d, md)
        self.pool_proj = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d))
        self.embed_proj = MLP(d, d, clip_dim)
        self.logit_scale = nn.Parameter(torch.ones([]))
        self.attn_proj = MLP(md, md, md * clip_heads)
        self.bias_scaling = nn.Linear(1, 1)
        self.clip_heads = clip_heads

    def forward(self, q: torch.Tensor, mask_features: torch.Tensor):
        """
        Args:
            q: (B, N, D) decoder queries.  mask_features: (B, Dm, Hm, Wm).
        Returns:
            e (B, N, Dm), masks (B, N, Hm, Wm) logits, A (B, N, C).
        """
        o = self.norm(q)
        e = self.mask_embed(o)
        masks = torch.einsum("bnd,bdhw->bnhw", e, mask_features)
        pooled = masked_mean(mask_features, masks.detach() > 0)          # (B, N, Dm)
        a = self.embed_proj(self.pool_proj(pooled) + o)
        a = torch.clamp(self.logit_scale, max=10) * F.normalize(a, dim=-1)
        return e, masks, a

    def attn_hidden(self, mask_features: torch.Tensor) -> torch.Tensor:
        """Per-pixel hidden features of the bias MLP, (B, Dm, Hm, Wm); shared by all layers."""
        return self.attn_proj.hidden(mask_features.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def attn_bias(self, e: torch.Tensor, hidden: torch.Tensor, *, folded: bool = True) -> torch.Tensor:
        """(B, N, Dm), (B, Dm, Hm, Wm) -> (B, nh, N, Hm, Wm) per-head attention bias."""
        last = self.attn_proj.layers[-1]
        w, c = self.bias_scaling.weight, self.bias_scaling.bias
        if folded:
            return folded_per_head_bias(e, hidden, last.weight, last.bias, weight=w, bias=c)
        b, dm, hm, wm = hidden.shape
        feats = last(hidden.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)      # (B, nh*Dm, Hm, Wm)
        feats = feats.reshape(b, self.clip_heads, e.shape[-1], hm, wm)
        return per_head_bias(e, feats, weight=w, bias=c)


def cross_attention_mask(masks: torch.Tensor, size: Tuple[int, int], nheads: int) -> torch.Tensor:
    """Mask2Former's masked attention: attend only where sigmoid(M) >= 0.5 at the memory's size.

    Args:
        masks: (B, N, Hm, Wm) logits.
    Returns:
        (B * nheads, N, h * w) bool, True = not attended; rows that would mask everything are cleared.
    """
    m = F.interpolate(masks.detach(), size=size, mode="bilinear", align_corners=False)
    m = m.sigmoid().flatten(2) < 0.5                                      # (B, N, h*w)
    m = m[:, None].expand(-1, nheads, -1, -1).flatten(0, 1)
    return m & ~m.all(dim=-1, keepdim=True)


@dataclass
class DecoderOutput:
    """Per decoder output l = 0 (initial queries) .. dec_layers."""
    masks: List[torch.Tensor] = field(default_factory=list)      # (B, N, Hm, Wm) logits
    A: List[torch.Tensor] = field(default_factory=list)          # (B, N, C)
    mask_embeds: List[torch.Tensor] = field(default_factory=list)  # (B, N, Dm)
    attn_bias: List[Optional[torch.Tensor]] = field(default_factory=list)  # (B, nh, N, Hm, Wm) or None


class AdaBDecoder(nn.Module):
    """Transformer decoder over the pixel decoder's memories (levels used round-robin)."""

    def __init__(self, cfg: DecoderConfig, clip_dim: int, clip_heads: int):
        super().__init__()
        d = cfg.hidden_dim
        self.nheads = cfg.nheads
        self.query_feat = nn.Embedding(cfg.num_queries, d)
        self.query_embed = nn.Embedding(cfg.num_queries, d)
        self.level_embed = nn.Embedding(3, d)
        self.layers = nn.ModuleList(DecoderLayer(d, cfg.nheads, cfg.ffn_dim) for _ in range(cfg.dec_layers))
        self.head = PredictionHead(cfg, clip_dim, clip_heads)

    def forward(self, memories: List[torch.Tensor], mask_features: torch.Tensor, *,
                bias_for: str = "last", folded: bool = True) -> DecoderOutput:
        """
        Args:
            memories: three (B, D, h_l, w_l) maps, coarse to fine.
            mask_features: (B, Dm, Hm, Wm).
            bias_for: "last" (inference needs only the last output's bias) or "all" (training).
        Returns:
            :class:`DecoderOutput` with dec_layers + 1 entries per list.
        """
        b = mask_features.shape[0]
        sizes = [m.shape[-2:] for m in memories]
        mem, pos = [], []
        for i, m in enumerate(memories):
            pos.append(sine_position_embedding(b, *m.shape[-2:], m.shape[1] // 2, device=m.device).flatten(2).transpose(1, 2))
            mem.append(m.flatten(2).transpose(1, 2) + self.level_embed.weight[i])
        qpos = self.query_embed.weight[None].expand(b, -1, -1)
        q = self.query_feat.weight[None].expand(b, -1, -1)
        hidden = self.head.attn_hidden(mask_features)
        out = DecoderOutput()
        n_out = len(self.layers) + 1
        for l in range(n_out):
            if l > 0:
                lvl = (l - 1) % len(mem)
                q = self.layers[l - 1](q, qpos, mem[lvl], pos[lvl], attn_mask)
            e, masks, a = self.head(q, mask_features)
            out.masks.append(masks)
            out.A.append(a)
            out.mask_embeds.append(e)
            want_bias = bias_for == "all" or l == n_out - 1
            out.attn_bias.append(self.head.attn_bias(e, hidden, folded=folded) if want_bias else None)
            if l < n_out - 1:
                attn_mask = cross_attention_mask(masks, tuple(sizes[l % len(mem)]), self.nheads)
        return out
