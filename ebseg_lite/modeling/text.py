"""Text embeddings of class names (paper section 3.4): the 14 ViLD prompt templates, each
embedding normalised, averaged over templates, normalised again; batched and cached.

The text tower is causal, so a token's states depend only on the tokens before it: each
template's prefix ("<sot> a photo of a") is computed once per layer and its keys/values cached for
every name's suffix (:func:`plan_prefixes`, :func:`prefix_attention`). Exact, not an approximation;
written by hand here because open_clip has no KV cache for its text tower. Towers it does not cover
use the padded path.  P prompts, R computed rows (Rp of them prefixes), L rows per sequence,
W tower width, nh heads, hd = W / nh."""
from __future__ import annotations

from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ebseg_lite import registry

# The prompt set of ViLD (Gu et al., 2022), as the official EBSeg uses it ("vild").
VILD_TEMPLATES: Tuple[str, ...] = (
    "a photo of a {}.",
    "This is a photo of a {}",
    "There is a {} in the scene",
    "There is the {} in the scene",
    "a photo of a {} in the scene",
    "a photo of a small {}.",
    "a photo of a medium {}.",
    "a photo of a large {}.",
    "This is a photo of a small {}.",
    "This is a photo of a medium {}.",
    "This is a photo of a large {}.",
    "There is a small {} in the scene.",
    "There is a medium {} in the scene.",
    "There is a large {} in the scene.",
)
TEMPLATE_SETS = {"vild": VILD_TEMPLATES, "photo": ("a photo of a {}.",)}
for _name, _tpl in TEMPLATE_SETS.items():
    registry.register("templates", _name, _tpl)


def get_templates(name: str) -> Tuple[str, ...]:
    """A registered template set ("vild", "photo", or a plug-in's, e.g. the toy world's "toy")."""
    return registry.lookup("templates", name)


@torch.no_grad()
def encode_class_names(clip_model: nn.Module, tokenizer: Callable, class_names: Sequence[str],
                       templates: Sequence[str] = VILD_TEMPLATES, batch_size: int = 256, *,
                       shared_prefixes: bool = True, prefix_batch: int = 4096) -> torch.Tensor:
    """(K, C) normalised text embeddings, template-averaged.

    Shared path (default, for towers :func:`shares_prefixes` covers): the prompts of up to
    ``prefix_batch`` // T names at a time go through :func:`encode_text_shared` grouped by template,
    so each template's prefix is computed once per call, not once per name. Padded path (otherwise, or
    ``shared_prefixes=False``): all K * T prompts go through the tower in batches of ``batch_size``,
    sorted by token length so each batch is trimmed to its own longest prompt
    (:func:`encode_text_trimmed`); the result is put back in the original order. Both bound memory
    for large vocabularies (847 ADE classes x 14 templates).
    """
    prompts = [t.format(c) for c in class_names for t in templates]  # class-major: K * T
    device = next(clip_model.parameters()).device
    tokens = tokenizer(prompts)                                       # (K*T, context)
    if shared_prefixes and shares_prefixes(clip_model):
        step = max(1, prefix_batch // len(templates)) * len(templates)  # whole names per call
        groups = torch.arange(len(prompts)) % len(templates)           # (K*T,) template of each prompt
        out = torch.cat([encode_text_shared(clip_model, tokens[i:i + step].to(device), groups[i:i + step]).float()
                         for i in range(0, len(prompts), step)])
    else:
        order = torch.argsort(tokens.argmax(dim=-1), stable=True)     # by end-of-text position
        out = torch.empty(0)
        for i in range(0, len(prompts), batch_size):
            idx = order[i:i + batch_size]
            emb = encode_text_trimmed(clip_model, tokens[idx].to(device)).float()
            if out.numel() == 0:
                out = torch.empty(len(prompts), emb.shape[-1], device=emb.device)
            out[idx.to(emb.device)] = emb
    emb = out.reshape(len(class_names), len(templates), -1)          # (K, T, C)
    return F.normalize(emb.mean(dim=1), dim=-1)


class RowChunk(NamedTuple):
    """n sequences of L rows each, stored contiguously from row ``start`` (padded past ``own_len``):
    a shared prefix, or one prompt's suffix (``prompt`` (n,) its index, -1 for a prefix).
    ``mask`` (n, L, Rp + L) and ``mask_end`` (n, 1, Rp + L): additive masks over the Rp prefix rows
    and the sequence's own rows, for queries at every row and at the end-of-text row."""
    start: int
    own_len: torch.Tensor
    prompt: torch.Tensor
    mask: torch.Tensor
    mask_end: torch.Tensor


class PrefixPlan(NamedTuple):
    """How :func:`encode_text_shared` lays out P prompts as R rows (computed token positions): the
    ``n_prefix`` rows of the groups' common prefixes first, then the suffixes. ``token``, ``pos`` (R,)
    token id and position of each row; ``end`` (P,) the row of each prompt's end-of-text token."""
    token: torch.Tensor
    pos: torch.Tensor
    n_prefix: int
    chunks: List[RowChunk]
    end: torch.Tensor


def _buckets(lengths: torch.Tensor, bucket_cost: int) -> List[int]:
    """The lengths to pad sequences to (bucket tops): fewest padded rows plus ``bucket_cost`` per
    bucket (each bucket is a few kernel calls per block), by dynamic programming over the lengths."""
    vals, count = torch.unique(lengths, return_counts=True)
    vals, count = vals.tolist(), count.tolist()
    best, cut = [0], []                                               # best[j]: cost of vals[:j]
    for j, top in enumerate(vals):
        cost = [best[i] + bucket_cost + sum(c * (top - v) for v, c in zip(vals[i:j + 1], count[i:j + 1]))
                for i in range(j + 1)]
        cut.append(min(range(j + 1), key=cost.__getitem__))
        best.append(cost[cut[-1]])
    tops, j = [], len(vals)
    while j:
        tops.append(vals[j - 1]); j = cut[j - 1]
    return tops[::-1]


def plan_prefixes(tokens: torch.Tensor, groups: torch.Tensor, bucket_cost: int = 64) -> PrefixPlan:
    """Split each group's prompts into their longest common token prefix (computed once) and suffixes,
    and lay the rows out: prefixes first (padded to the longest), then suffixes in length buckets.

    Args:
        tokens: (P, context) ids; a prompt ends at its end-of-text (argmax) token.
        groups: (P,) ints: prompts expected to share a prefix (e.g. one template over all names); the
            prefix is read off the tokens, so any grouping is exact.
        bucket_cost: padded rows one more length bucket is worth (:func:`_buckets`).
    """
    tokens, ctx_len = tokens.cpu().long(), tokens.shape[1]
    eot = tokens.argmax(dim=-1)                                       # (P,)
    gid = torch.unique(groups.cpu(), return_inverse=True)[1]          # (P,) group 0..G-1
    lp, src = [], []                                                  # per group: prefix length, a member
    for g in range(int(gid.max()) + 1):
        t = tokens[gid == g]
        same = (t == t[:1]).all(0).long().cumprod(0)                  # (context,) 1 while all agree
        lp.append(min(int(same.sum()), int(eot[gid == g].min())))    # the end-of-text stays in the suffix
        src.append(int((gid == g).nonzero()[0]))
    lp, src = torch.tensor(lp), torch.tensor(src)
    has = (lp > 0).nonzero()[:, 0]                                    # groups with a prefix
    top_p = int(lp.max())
    ctx_at = torch.zeros(len(lp), dtype=torch.long)
    ctx_at[has] = top_p * torch.arange(len(has))                      # first row of each group's prefix
    n_prefix = top_p * len(has)
    # sequences: (source prompt, first position, length, prompt or -1, group or -1)
    seq = [(src[has], torch.zeros_like(has), lp[has], -torch.ones_like(has), -torch.ones_like(has), top_p)]
    p = torch.arange(len(tokens))
    own = eot + 1 - lp[gid]                                           # (P,) suffix lengths
    lo = 0
    for top in _buckets(own, bucket_cost):
        b = p[(own > lo) & (own <= top)]
        b = b[torch.argsort(own[b], stable=True)]
        seq.append((b, lp[gid[b]], own[b], b, gid[b], top))
        lo = top
    rows_tok, rows_pos, chunks, end, start = [], [], [], torch.empty(len(tokens), dtype=torch.long), 0
    for s, p0, length, prompt, g, top in seq:
        if not len(s):
            continue
        pos = (p0[:, None] + torch.arange(top)).clamp(max=ctx_len - 1)   # (n, L); rows past length pad
        rows_tok.append(tokens[s[:, None], pos].flatten()); rows_pos.append(pos.flatten())
        j = torch.arange(n_prefix)
        ctx = (g[:, None] >= 0) & (j >= ctx_at[g][:, None]) & (j < (ctx_at + lp)[g][:, None])   # (n, Rp)
        chunks.append(RowChunk(start, length, prompt, prefix_mask(ctx, torch.arange(top).expand(len(s), -1)),
                               prefix_mask(ctx, (length - 1)[:, None], top)))
        ok = prompt >= 0
        end[prompt[ok]] = start + top * torch.arange(len(s))[ok] + length[ok] - 1
        start += top * len(s)
    return PrefixPlan(torch.cat(rows_tok), torch.cat(rows_pos), n_prefix, chunks, end)


def prefix_mask(context: torch.Tensor, q_pos: torch.Tensor, length: Optional[int] = None) -> torch.Tensor:
    """(n, Lq, Rp + L) additive mask (0 or -inf) over the prefix rows then the sequence's own L rows:
    the query at own position ``q_pos`` (n, Lq) sees the prefix rows ``context`` (n, Rp) bool marks
    and its own positions up to itself (the tower's causal mask, shifted by the prefix)."""
    length = q_pos.shape[1] if length is None else length
    own = torch.arange(length)[None, None] <= q_pos[:, :, None]       # (n, Lq, L)
    seen = torch.cat([context[:, None].expand(-1, q_pos.shape[1], -1), own], 2)
    return torch.zeros(seen.shape).masked_fill_(~seen, float("-inf"))


def prefix_attention(q: torch.Tensor, k_prefix: torch.Tensor, v_prefix: torch.Tensor, k: torch.Tensor,
                     v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Attention of n sequences to the cached prefix keys/values (a KV cache) and to their own rows.

    Args:
        q: (nh, n, Lq, hd).  k_prefix, v_prefix: (nh, Rp, hd), the same for all.  k, v: (nh, n, L, hd).
        mask: (n, Lq, Rp + L) additive (:func:`prefix_mask`).
    Returns:
        (nh, n, Lq, hd): ``softmax(q [K_prefix; k]^T / sqrt(hd) + mask) [V_prefix; v]``.
    """
    nh, n, lq, hd = q.shape
    rp = k_prefix.shape[1]
    s_pre = (q.reshape(nh, n * lq, hd) @ k_prefix.transpose(1, 2)).view(nh, n, lq, rp)   # one GEMM per head
    a = ((torch.cat([s_pre, q @ k.transpose(-1, -2)], -1) * hd ** -0.5) + mask.to(q.dtype)).softmax(-1)
    return (a[..., :rp].reshape(nh, n * lq, rp) @ v_prefix).view(nh, n, lq, hd) + a[..., rp:] @ v


def _prefix_block(block: nn.Module, x: torch.Tensor, plan: PrefixPlan, last: bool = False) -> torch.Tensor:
    """open_clip's ``ResidualAttentionBlock.forward`` on the rows of a :class:`PrefixPlan`, with the
    block's own parameters: projections and MLP once per row, :func:`prefix_attention` per chunk.
    Heads lead, (nh, R, hd), so a chunk's rows are a view, not a copy.

    Args:
        x: (R, W) row states.  last: only the end-of-text rows are wanted (the last block).
    Returns:
        (R, W), or (P, W) in prompt order when ``last``.
    """
    attn, (r, w) = block.attn, x.shape
    nh, wt, b = attn.num_heads, attn.in_proj_weight, attn.in_proj_bias
    h = block.ln_1(x)
    kv = F.linear(h, wt[w:], None if b is None else b[w:])            # (R, 2W) keys, values of every row
    k, v = kv.view(r, 2, nh, -1).permute(1, 2, 0, 3).contiguous()     # (nh, R, hd) each
    if last:                                                          # queries at the end rows only
        x, h = x[plan.end], h[plan.end]
    q = F.linear(h, wt[:w], None if b is None else b[:w]).view(len(x), nh, -1).transpose(0, 1).contiguous()
    out = torch.empty_like(q)                                         # (nh, R or P, hd)
    kp, vp = k[:, :plan.n_prefix], v[:, :plan.n_prefix]               # (nh, Rp, hd) the KV cache
    for c in plan.chunks:
        n = len(c.prompt)
        rows = slice(c.start, c.start + n * c.mask.shape[1])
        own_k, own_v = (t[:, rows].view(nh, n, -1, t.shape[-1]) for t in (k, v))     # (nh, n, L, hd)
        if not last:
            o = prefix_attention(q[:, rows].view(own_k.shape), kp, vp, own_k, own_v, c.mask)
            out[:, rows] = o.flatten(1, 2)
        elif int(c.prompt[0]) >= 0:                                   # prefix chunks end no prompt
            o = prefix_attention(q[:, c.prompt, None], kp, vp, own_k, own_v, c.mask_end)
            out[:, c.prompt] = o[:, :, 0]
    x = x + block.ls_1(attn.out_proj(out.transpose(0, 1).reshape(len(x), w)))
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def shares_prefixes(clip_model: nn.Module) -> bool:
    """Whether :func:`encode_text_shared` covers this text tower: open_clip's ``CLIP`` text
    transformer of plain ``ResidualAttentionBlock`` s, a causal mask and argmax (end-of-text) pooling."""
    from open_clip.transformer import ResidualAttentionBlock
    mask = getattr(clip_model, "attn_mask", None)
    if (getattr(clip_model, "text_pool_type", None) != "argmax" or mask is None or not hasattr(clip_model, "token_embedding")
            or not torch.equal(mask, torch.full_like(mask, float("-inf")).triu(1))):   # causal, nothing else
        return False
    return all(type(blk) is ResidualAttentionBlock and not hasattr(blk, "ln_1_kv")
               and isinstance(blk.attn, nn.MultiheadAttention) and blk.attn._qkv_same_embed_dim
               and blk.attn.bias_k is None and not blk.attn.add_zero_attn
               for blk in clip_model.transformer.resblocks)


def encode_text_shared(clip_model: nn.Module, tokens: torch.Tensor, groups: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``clip_model.encode_text(tokens, normalize=True)``, each group's common prefix computed once.

    The tower is causal, so the states of a shared prefix ("<sot> a photo of a") are the same for
    every prompt that starts with it: :func:`plan_prefixes` runs it once per layer and keeps its
    keys/values (a KV cache) that the suffixes (name, rest of the template, end-of-text) attend to
    (:func:`prefix_attention`). Only the end-of-text rows go through the last block's MLP.
    150 ADE names x 14 ViLD templates: about 11.5k rows instead of 26k padded positions.
    Towers :func:`shares_prefixes` rejects use :func:`encode_text_trimmed`.

    Args:
        tokens: (P, context) ids.  groups: (P,) prompts expected to share a prefix (default: all).
    Returns:
        (P, C) normalised embeddings.
    """
    if not shares_prefixes(clip_model):
        return encode_text_trimmed(clip_model, tokens)
    dev, cast = tokens.device, clip_model.transformer.get_cast_dtype()
    plan = plan_prefixes(tokens, torch.zeros(len(tokens), dtype=torch.long) if groups is None else groups)
    plan = plan._replace(end=plan.end.to(dev), chunks=[
        RowChunk(c.start, *(t.to(dev) for t in c[1:])) for c in plan.chunks])
    x = clip_model.token_embedding(plan.token.to(dev)).to(cast) + clip_model.positional_embedding[plan.pos.to(dev)].to(cast)
    blocks = clip_model.transformer.resblocks
    for blk in blocks[:-1]:
        x = _prefix_block(blk, x, plan)                               # (R, W)
    x = _prefix_block(blocks[-1], x, plan, last=True)                 # (P, W)
    x = clip_model.ln_final(x)
    proj = clip_model.text_projection
    if proj is not None:
        x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
    return F.normalize(x, dim=-1)


def encode_text_trimmed(clip_model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """``clip_model.encode_text(tokens, normalize=True)``, computed on the first L positions only,
    L = last end-of-text position in the batch + 1.

    Exact, not an approximation: the text tower is causal, so positions after the end-of-text
    token never influence it; cutting the 77-token context to the ~15 tokens a prompt uses makes
    vocabulary encoding about 5x cheaper. Other text towers fall back to ``encode_text``.
    """
    simple = (getattr(clip_model, "text_pool_type", None) == "argmax" and getattr(clip_model, "attn_mask", None) is not None
              and hasattr(clip_model, "token_embedding"))
    if not simple:
        return clip_model.encode_text(tokens, normalize=True)
    eot = tokens.argmax(dim=-1)                                  # (P,) end-of-text positions
    L = int(eot.max()) + 1
    cast = clip_model.transformer.get_cast_dtype()
    x = clip_model.token_embedding(tokens[:, :L]).to(cast) + clip_model.positional_embedding[:L].to(cast)
    x = clip_model.ln_final(clip_model.transformer(x, attn_mask=clip_model.attn_mask[:L, :L]))
    x = x[torch.arange(x.shape[0], device=x.device), eot] @ clip_model.text_projection
    return F.normalize(x, dim=-1)
