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
    _labels: Optional[torch.Tensor] = None
    _score: Optional[torch.Tensor] = None

    @property
    def labels(self) -> torch.Tensor:
        """(H, W) long, argmax of the semantic map (eq. 14) at the original image size; computed on
        first read by :func:`fast_label_map` (only pixels whose class bounds overlap are summed)."""
        if self._labels is None:
            self._labels = fast_label_map(self.map_probs, self.masks, self.encoded)
        return self._labels

    @property
    def score(self) -> torch.Tensor:
        """(H, W) max of the semantic map at the original size (the full sum, on first read)."""
        if self._score is None:
            self._score = label_map(self.map_probs, upsample_masks(self.masks, self.encoded))[1]
        return self._score

    @property
    def mask_labels(self) -> torch.Tensor:
        """(ceil(h'/4), ceil(w'/4)) long: eq. 14's argmax at mask resolution, over the input region
        (no upsampling; what a widget redraws on every slider move)."""
        hm, wm = self.masks.shape[-2:]
        hp, wp = self.encoded.padded_size
        h, w = self.encoded.input_size
        m = self.masks[:, :-(-h * hm // hp), :-(-w * wm // wp)]
        return semantic_inference(self.map_probs, m).argmax(0)

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


def _axis_taps(n_in: int, n_mid: int, n_crop: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) weights of ``upsample_masks`` along one axis (bilinear to n_mid, crop to n_crop,
    bilinear to n_out): the resize applied to the identity, so exactly the library's weights."""
    eye = torch.eye(n_in)[None, None]                                     # (1, 1, n_in, n_in)
    r = F.interpolate(eye, size=(n_mid, n_in), mode="bilinear", align_corners=False)[0, 0, :n_crop]
    if n_crop != n_out:
        r = F.interpolate(r[None, None], size=(n_out, n_in), mode="bilinear", align_corners=False)[0, 0]
    return r


def fast_label_map(map_probs: torch.Tensor, masks: torch.Tensor, enc: Encoded, margin: float = 1e-5) -> torch.Tensor:
    """``label_map(map_probs, upsample_masks(masks, enc))[0]`` without summing eq. 14 at every pixel.

    Every output pixel's mask logit is a convex combination of the few low-resolution logits in
    its support (rows r_lo..r_hi, columns c_lo..c_hi), so ``sigmoid`` of their min and max bound it.
    Pixels sharing a support form a cell; per cell ``L_k = sum_n P[n, k] sigmoid(min_n)`` and
    ``U_k`` (with max) bound every pixel's S_k. Where only one class has ``U_k >= max_j L_j``
    (minus a rounding margin) it is the label; the other cells' pixels get the full sum over
    the candidate classes. Exact up to float ties within ``margin``.

    Args:
        map_probs: (N, K).  masks: (N, Hm, Wm) logits.
    Returns:
        (H, W) long labels at ``enc.orig_size``.
    """
    n, hm, wm = masks.shape
    (hp, wp), (h, w), (ho, wo) = enc.padded_size, enc.input_size, enc.orig_size
    ry, rx = _axis_taps(hm, hp, h, ho), _axis_taps(wm, wp, w, wo)         # (H, Hm), (W, Wm)
    cells_y, row_cell = _supports(ry)                                     # (Uy, 2) ranges; (H,) cell of each row
    cells_x, col_cell = _supports(rx)
    lo, hi = _range_reduce(masks, cells_y, cells_x)                       # (N, Uy, Ux) min / max logits
    p = map_probs.float()
    low = torch.einsum("nk,nc->kc", p, lo.flatten(1).sigmoid())           # (K, cells)
    up = torch.einsum("nk,nc->kc", p, hi.flatten(1).sigmoid())
    best, cell_label = low.max(0)                                         # (cells,)
    cand = up >= best - margin * best.abs().clamp(min=1.0)                # (K, cells)
    labels = cell_label.view(len(cells_y), len(cells_x))[row_cell][:, col_cell]   # (H, W)
    amb = (cand.sum(0) > 1).view(len(cells_y), len(cells_x))[row_cell][:, col_cell]
    if amb.any():
        ys, xs = amb.nonzero(as_tuple=True)
        classes = cand[:, (cand.sum(0) > 1)].any(1).nonzero()[:, 0]        # candidates of ambiguous cells
        if len(ys) > labels.numel() // 4:   # mostly ambiguous: the plain sum over the candidate classes
            full = label_map(p[:, classes], upsample_masks(masks, enc))[0]
            labels[ys, xs] = classes[full[ys, xs]]
            return labels
        (iy, wy), (ix, wx) = _taps(ry), _taps(rx)                         # (H, t), (W, t)
        rows, at = torch.unique(ys, return_inverse=True)
        m_rows = (masks.float()[:, iy[rows]] * wy[rows][None, :, :, None]).sum(2)     # (N, R, Wm)
        logit = (m_rows[:, at[:, None], ix[xs]] * wx[xs][None]).sum(-1)             # (N, P)
        s = p[:, classes].t() @ logit.sigmoid()                           # (Kc, P), eq. 14 there
        labels[ys, xs] = classes[s.argmax(0)]
    return labels


def _taps(r: torch.Tensor):
    """(n_out, n_in) tap matrix -> (n_out, t) input indices and weights (t = the widest support)."""
    nz = r > 0
    first = nz.float().argmax(1)
    span = int((r.shape[1] - 1 - nz.flip(1).float().argmax(1) - first).max()) + 1
    idx = (first[:, None] + torch.arange(span)[None]).clamp(max=r.shape[1] - 1)
    return idx, r.gather(1, idx) * (first[:, None] + torch.arange(span)[None] < r.shape[1])


def _supports(r: torch.Tensor):
    """Rows of a (n_out, n_in) tap matrix -> unique (first, last) nonzero input index and each row's cell."""
    nz = r > 0
    first = nz.float().argmax(1)
    last = r.shape[1] - 1 - nz.flip(1).float().argmax(1)
    pairs = torch.stack([first, last], 1)
    cells, inverse = torch.unique(pairs, dim=0, return_inverse=True)
    return cells, inverse


def _range_reduce(masks: torch.Tensor, cells_y: torch.Tensor, cells_x: torch.Tensor):
    """Min and max of ``masks[:, a..b, c..d]`` for every (row range, column range): (N, Uy, Ux) each."""
    def along(x, cells, dim):
        span = int((cells[:, 1] - cells[:, 0]).max()) + 1
        idx = (cells[:, :1] + torch.arange(span)[None]).minimum(cells[:, 1:])   # (U, span), last repeated
        g = x.index_select(dim, idx.flatten())
        shape = list(x.shape)
        shape[dim:dim + 1] = [len(cells), span]
        g = g.view(shape)
        return g.amin(dim + 1), g.amax(dim + 1)
    lo_r, hi_r = along(masks.float(), cells_y, 1)                         # (N, Uy, Wm)
    return along(lo_r, cells_x, 2)[0], along(hi_r, cells_x, 2)[1]


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
