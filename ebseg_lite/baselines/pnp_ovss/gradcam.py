"""GradCAM of BLIP's ITM score over the text encoder's cross-attention (PnP-OVSS, first step).

For a text encoder layer l and head n, the cross-attention ``A[t, j]`` of text token t over image
token j (softmax over the j) and the gradient of the positive ITM logit ``s = itm(image, text)[1]``
with respect to it give

    G[t, j] = A[t, j] * max(dA s[t, j], 0) * m[t]          (m: the text attention mask)

(official ``compute_gradcam_ensemble``: backpropagate the summed positive logits of the batch,
drop the image's CLS token j = 0, clamp the gradient at 0, multiply by the mask). A class's map is
the mean of G over its word pieces (:func:`class_maps`); the official code averages the pieces of
one *word*, and treats each space-separated word as its own class, which breaks on two-word names
("dining table"): we average over all pieces of the whole name.

One forward and one backward give every layer and head at once (:func:`itm_gradcam`), which is what
makes the label-free search over (layer, head) cheap.

Shapes: B batch, nh heads, T text tokens, P = 1 + h*w image tokens, K classes.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, Iterator, List, Sequence, Tuple

import torch


def gradcam(attention: torch.Tensor, grad: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
    """``A * relu(dA) * m`` on (B, nh, T, P) attention and gradient with a (B, T) mask -> (B, nh, T, P)."""
    if attention.shape != grad.shape:
        raise ValueError(f"attention {tuple(attention.shape)} and gradient {tuple(grad.shape)} differ")
    m = text_mask.to(attention.dtype)[:, None, :, None]                 # (B, 1, T, 1)
    return attention * grad.clamp(min=0) * m


def to_grid(token_maps: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(..., P = 1 + h*w) over image tokens -> (..., h, w) without the CLS token."""
    if token_maps.shape[-1] != 1 + h * w:
        raise ValueError(f"expected 1 + {h}*{w} image tokens, got {token_maps.shape[-1]}")
    return token_maps[..., 1:].reshape(*token_maps.shape[:-1], h, w)


def class_maps(token_maps: torch.Tensor, spans: Sequence[Tuple[int, int]]) -> torch.Tensor:
    """(T, h, w) per-token maps -> (K, h, w): class k = the mean over tokens ``spans[k]``."""
    return torch.stack([token_maps[a:b].mean(0) for a, b in spans])


class CrossAttentionProbe:
    """Keeps the cross-attention probabilities of chosen text-encoder layers with their gradients.

    Hooks ``text_encoder.encoder.layer[l].crossattention.self`` (which returns ``(context, probs)``)
    and calls ``retain_grad`` on ``probs``, so after ``backward`` both are at hand.
    """

    def __init__(self, model, layers: Sequence[int]):
        self.model, self.layers = model, list(layers)
        n = len(model.text_encoder.encoder.layer)
        bad = [l for l in self.layers if not 0 <= l < n]
        if bad:
            raise ValueError(f"layers {bad} out of range: the text encoder has {n} layers (0..{n - 1})")
        self.probs: Dict[int, torch.Tensor] = {}
        self._handles: List = []

    def _hook(self, layer: int):
        def fn(module, inputs, output):
            probs = output[1]                                           # (B, nh, T, P)
            if probs.requires_grad:
                probs.retain_grad()
            self.probs[layer] = probs
        return fn

    def __enter__(self) -> "CrossAttentionProbe":
        for l in self.layers:
            mod = self.model.text_encoder.encoder.layer[l].crossattention.self
            self._handles.append(mod.register_forward_hook(self._hook(l)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


@dataclass
class ItmGradcam:
    """One image-text pass. Maps are per layer (keys of ``attention``), detached, on the image grid."""
    itm_logits: torch.Tensor                 # (B, 2); [:, 1] is the "match" logit
    attention: Dict[int, torch.Tensor]       # layer -> (B, nh, T, h, w) cross-attention A
    gradcam: Dict[int, torch.Tensor]         # layer -> (B, nh, T, h, w) A * relu(dA s) * m


def itm_gradcam(model, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                *, layers: Sequence[int]) -> ItmGradcam:
    """Forward BLIP's ITM, backpropagate the summed positive logit, read A and G at ``layers``.

    Args:
        pixel_values: (B, 3, S, S) normalised images.
        input_ids, attention_mask: (B, T) prompt ids (first id ``[ENC]``) and mask.
    """
    vc = model.config.vision_config
    h = w = vc.image_size // vc.patch_size
    model.zero_grad(set_to_none=True)

    def leaf(module, inputs, output):       # image tokens become the leaf: no backward through the ViT
        output.last_hidden_state = output.last_hidden_state.detach().requires_grad_(True)
        return output

    handle = model.vision_model.register_forward_hook(leaf)
    try:
        with torch.enable_grad(), frozen(model), CrossAttentionProbe(model, layers) as probe:
            out = model(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask,
                        use_itm_head=True)
            logits = out.itm_score                                      # (B, 2)
            logits[:, 1].sum().backward()
    finally:
        handle.remove()
    att, cam = {}, {}
    for l in layers:
        a = probe.probs[l]
        if a.grad is None:
            raise RuntimeError(f"no gradient reached layer {l}'s cross-attention")
        att[l] = to_grid(a.detach(), h, w)
        cam[l] = to_grid(gradcam(a.detach(), a.grad.detach(), attention_mask), h, w)
    return ItmGradcam(logits.detach(), att, cam)


@contextmanager
def frozen(model) -> Iterator[None]:
    """Parameters need no gradient for GradCAM (only the attention does): saves memory and time."""
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
