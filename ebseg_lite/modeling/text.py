"""Text embeddings of class names (paper section 3.4): the 14 ViLD prompt templates, each
embedding normalised, averaged over templates, normalised again; batched and cached."""
from __future__ import annotations

from typing import Callable, Sequence, Tuple

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
                       templates: Sequence[str] = VILD_TEMPLATES, batch_size: int = 256) -> torch.Tensor:
    """(K, C) normalised text embeddings, template-averaged.

    All K * T prompts go through the text tower in batches of ``batch_size`` so memory stays
    bounded for large vocabularies (847 ADE classes x 14 templates). Prompts are sorted by token
    length first, so each batch is trimmed to its own longest prompt (:func:`encode_text_trimmed`)
    and short prompts do not pay for long ones; the result is put back in the original order.
    """
    prompts = [t.format(c) for c in class_names for t in templates]  # class-major: K * T
    device = next(clip_model.parameters()).device
    tokens = tokenizer(prompts)                                       # (K*T, context)
    order = torch.argsort(tokens.argmax(dim=-1), stable=True)         # by end-of-text position
    out = torch.empty(0)
    for i in range(0, len(prompts), batch_size):
        idx = order[i:i + batch_size]
        emb = encode_text_trimmed(clip_model, tokens[idx].to(device)).float()
        if out.numel() == 0:
            out = torch.empty(len(prompts), emb.shape[-1], device=emb.device)
        out[idx.to(emb.device)] = emb
    emb = out.reshape(len(class_names), len(templates), -1)          # (K, T, C)
    return F.normalize(emb.mean(dim=1), dim=-1)


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
