"""What ``encode`` and ``classify`` return, and the label map at the original image size.

:class:`Encoded` holds everything that does not depend on the vocabulary (the expensive part);
:class:`Prediction` adds what does (text embeddings, balancing, the semantic map). Every tensor
is detached; shapes use the legend of :mod:`ebseg_lite.shapes` (no batch axis: one image).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from ebseg_lite.modeling.balance import semantic_inference


@dataclass
class Encoded:
    """The vocabulary-free result of ``model.encode(image)``."""
    image: torch.Tensor                    # (3, h', w') uint8, the resized model input
    orig_size: Tuple[int, int]             # (H, W) of the image as given: the output size
    input_size: Tuple[int, int]            # (h', w') after resizing to the test short side
    padded_size: Tuple[int, int]           # (Hp, Wp) after padding to a multiple of 32
    clip_grid: Tuple[int, int]             # (h, w)
    A: torch.Tensor                        # (N, C) last decoder layer (scale s included)
    B: torch.Tensor                        # (N, C) mask-attention embeddings (normalised)
    D: torch.Tensor                        # (N, C) frozen embeddings (eq. 3; not renormalised)
    masks: torch.Tensor                    # (N, Hm, Wm) last-layer mask logits (Hm = Hp / 4)
    F_clip: torch.Tensor                   # (C, h, w) CLIP Surgery features
    attn_bias: torch.Tensor                # (nh, N, h, w) last bias, max-pooled to the CLIP grid
    A_per_layer: torch.Tensor              # (L+1, N, C)
    masks_per_layer: Optional[torch.Tensor] = None   # (L+1, N, Hm, Wm) when kept
    clip_feats: Dict[int, torch.Tensor] = field(default_factory=dict)    # block -> (W, h, w)
    sam_feats: Dict[str, torch.Tensor] = field(default_factory=dict)     # res2..res5 after fusion
    mask_features: Optional[torch.Tensor] = None     # (Dm, Hm, Wm)


@dataclass
class Prediction:
    """``model.classify(encoded, class_names)``: per-branch tables, balanced classes, labels."""
    class_names: List[str]
    seen: torch.Tensor                     # (K,) bool
    labels: torch.Tensor                   # (H, W) long, at the original image size
    score: torch.Tensor                    # (H, W) max of the semantic map
    class_probs: torch.Tensor              # (N, K+1) final, void last
    probs: Dict[str, torch.Tensor]         # "A", "B", "D": (N, K) per-branch softmax over K
    p_void: torch.Tensor                   # (N,)
    logits: Dict[str, torch.Tensor]        # "A", "B", "D": (N, K+1) scaled logits (background last)
    text: torch.Tensor                     # (K, C) class text embeddings
    A: torch.Tensor
    B: torch.Tensor
    D: torch.Tensor
    masks: torch.Tensor                    # (N, Hm, Wm)
    balancing: str
    weights: Dict[str, tuple]
    encoded: Encoded
    map_probs: Optional[torch.Tensor] = None   # (N, K) what the semantic map sums (eq. 14)
    _sem_seg: Optional[torch.Tensor] = None

    @property
    def sem_seg(self) -> torch.Tensor:
        """(K, H, W) semantic map at the original size; computed on first access (it is large:
        K * H * W floats), the labels never need it whole."""
        if self._sem_seg is None:
            m = upsample_masks(self.masks, self.encoded)
            self._sem_seg = semantic_inference(self.map_probs, m)
        return self._sem_seg


def upsample_masks(masks: torch.Tensor, enc: Encoded) -> torch.Tensor:
    """Official post-processing: (N, Hm, Wm) -> padded size -> crop the input part -> original
    size, bilinear each time. Returns (N, H, W) logits."""
    m = F.interpolate(masks[None].float(), size=enc.padded_size, mode="bilinear", align_corners=False)[0]
    h, w = enc.input_size
    m = m[:, :h, :w]
    if tuple(enc.orig_size) != (h, w):
        m = F.interpolate(m[None], size=enc.orig_size, mode="bilinear", align_corners=False)[0]
    return m


def label_map(map_probs: torch.Tensor, masks_up: torch.Tensor, max_elems: int = 1 << 25):
    """Argmax of ``sum_n P[n, k] sigmoid(M[n])`` computed in row chunks (bounded memory).

    Args:
        map_probs: (N, K).  masks_up: (N, H, W) logits.
    Returns:
        labels (H, W) long and the max score (H, W).
    """
    n, h, w = masks_up.shape
    k = map_probs.shape[1]
    rows = max(1, max_elems // max(1, k * w))
    labels = torch.empty(h, w, dtype=torch.long, device=masks_up.device)
    score = torch.empty(h, w, dtype=map_probs.dtype, device=masks_up.device)
    for r in range(0, h, rows):
        s = semantic_inference(map_probs, masks_up[:, r:r + rows])  # (K, rows, W), eq. 14
        score[r:r + rows], labels[r:r + rows] = s.max(dim=0)
    return labels, score
