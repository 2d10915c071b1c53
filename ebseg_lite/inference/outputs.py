"""What ``encode`` and ``classify`` return, and the label map at the original image size.

:class:`Encoded` holds everything that does not depend on the vocabulary (the expensive part);
:class:`Prediction` adds what does (text embeddings, balancing, the semantic map). Every tensor
is detached; shapes use the legend of :mod:`ebseg_lite.shapes` (no batch axis: one image).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

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
        first read by :func:`fast_label_map` (only tiles whose class bounds overlap are summed)."""
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
        (no upsampling; what a widget redraws on every slider move), pruned by :func:`tiled_label_map`."""
        hm, wm = self.masks.shape[-2:]
        hp, wp = self.encoded.padded_size
        h, w = self.encoded.input_size
        m = self.masks[:, :-(-h * hm // hp), :-(-w * wm // wp)]
        eye = lambda n: torch.eye(n, device=m.device)
        return tiled_label_map(self.map_probs, m, eye(m.shape[1]), eye(m.shape[2]), full=lambda: m, tile=4)

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
    """``label_map(map_probs, upsample_masks(masks, enc))[0]``, summing eq. 14 only where it is undecided.

    Args:
        map_probs: (N, K).  masks: (N, Hm, Wm) logits.
    Returns:
        (H, W) long labels at ``enc.orig_size`` (:func:`tiled_label_map` with the resize's taps).
    """
    (hm, wm), (hp, wp), (h, w), (ho, wo) = masks.shape[-2:], enc.padded_size, enc.input_size, enc.orig_size
    ry, rx = (t.to(masks.device) for t in (_axis_taps(hm, hp, h, ho), _axis_taps(wm, wp, w, wo)))  # (H, Hm), (W, Wm)
    return tiled_label_map(map_probs, masks, ry, rx, full=lambda: upsample_masks(masks, enc), tile=16, margin=margin)


def tiled_label_map(map_probs: torch.Tensor, masks: torch.Tensor, ry: torch.Tensor, rx: torch.Tensor, *,
                    full: Callable[[], torch.Tensor], tile: int = 16, margin: float = 1e-5) -> torch.Tensor:
    """Argmax over k of eq. 14, ``S_k = sum_n P[n, k] sigmoid(M_n)``, on resized masks
    ``M_n = ry @ masks[n] @ rx^T``, pruned by bounds; the same labels as the dense sum.

    Every resized logit is a convex combination of the low-resolution logits in its support, so on a
    tile of ``tile`` x ``tile`` output pixels ``sigmoid`` of the support's min and max, ``lo_n`` and
    ``hi_n``, bound it. Per tile a leader j (the best class at the bounds' midpoint) beats class k on
    the whole tile when ``min S_j - S_k = sum_n d_n+ lo_n - d_n- hi_n > margin`` (d = P[:, j] - P[:, k]);
    a difference bound, so nearly equal classes (an untrained model's) still separate. Tiles where
    the leader beats every class take its label; the others' pixels get the sum over the classes
    not beaten there, and pixels whose top two scores are within ``margin`` (float ties) are redone
    as the reference does, on ``full()``.

    Args:
        map_probs: (N, K).  masks: (N, Hm, Wm) logits.  ry: (H, Hm), rx: (W, Wm) resize taps.
        full: () -> (N, H, W) the resized logits as the library computes them.
    Returns:
        (H, W) long labels.
    """
    p, masks = map_probs.float(), masks.float()
    (hh, ww), (ty, tx) = (len(ry), len(rx)), (-(-len(ry) // tile), -(-len(rx) // tile))
    lo, hi = (t.flatten(1).sigmoid() for t in _tile_range(masks, _tile_support(ry, tile), _tile_support(rx, tile)))
    lead = (p.t() @ (lo + hi)).argmax(0)                                 # (T,) leader of each tile
    beaten = torch.ones(p.shape[1], len(lead), dtype=torch.bool, device=p.device)   # (K, T)
    for j in lead.unique().tolist():
        t = (lead == j).nonzero()[:, 0]
        d = p[:, j:j + 1] - p                                            # (N, K)
        gap = d.clamp(min=0).t() @ lo[:, t] - (-d).clamp(min=0).t() @ hi[:, t]     # (K, Tj) min of S_j - S_k
        scale = (p[:, j] @ hi[:, t]).clamp(min=1.0)
        beaten[:, t] = gap > margin * scale
        beaten[j, t] = False
    pix = lambda v: v.view(ty, tx).repeat_interleave(tile, 0)[:hh].repeat_interleave(tile, 1)[:, :ww]
    labels = pix(lead)                                                   # (H, W)
    cand = ~beaten
    open_ = cand.sum(0) > 1
    if not bool(open_.any()):
        return labels
    classes = cand[:, open_].any(1).nonzero()[:, 0]                      # (Kc,) candidates of open tiles
    ys, xs = pix(open_).nonzero(as_tuple=True)                           # (Pn,) their pixels
    m = full() if len(ys) * 4 > labels.numel() else None                 # mostly open: the library's resize
    logit = m[:, ys, xs] if m is not None else _resized(masks, ry, rx, ys, xs)   # (N, Pn)
    s = logit.sigmoid().t() @ p[:, classes]                             # (Pn, Kc), eq. 14 there
    labels[ys, xs] = classes[s.argmax(1)]
    top = s.topk(2, dim=1).values
    tie = top[:, 0] - top[:, 1] <= margin * top[:, 0].abs().clamp(min=1.0)
    if bool(tie.any()):                                                  # float ties: the reference's own choice
        m = full() if m is None else m
        labels[ys[tie], xs[tie]] = semantic_inference(map_probs, m[:, ys[tie], xs[tie]][:, :, None])[:, :, 0].argmax(0)
    return labels


def _tile_support(r: torch.Tensor, tile: int) -> torch.Tensor:
    """(n_out, n_in) taps -> (T, 2): first and last input index any output of each tile of ``tile`` reads."""
    nz = r > 0
    first = nz.float().argmax(1)
    last = r.shape[1] - 1 - nz.flip(1).float().argmax(1)
    pad = -len(r) % tile                                                 # the last tile may be short
    first = F.pad(first, (0, pad), value=int(first[-1])).view(-1, tile).amin(1)
    last = F.pad(last, (0, pad), value=int(last[-1])).view(-1, tile).amax(1)
    return torch.stack([first, last], 1)


def _tile_range(masks: torch.Tensor, cells_y: torch.Tensor, cells_x: torch.Tensor):
    """Min and max of ``masks[:, a..b, c..d]`` for every (row range, column range): (N, Ty, Tx) each."""
    def along(x, cells, dim):
        span = int((cells[:, 1] - cells[:, 0]).max()) + 1
        idx = (cells[:, :1] + torch.arange(span, device=x.device)[None]).minimum(cells[:, 1:])  # (T, span)
        shape = list(x.shape)
        shape[dim:dim + 1] = [len(cells), span]
        g = x.index_select(dim, idx.flatten()).view(shape)
        return g.amin(dim + 1), g.amax(dim + 1)
    lo_r, hi_r = along(masks, cells_y, 1)                                # (N, Ty, Wm)
    return along(lo_r, cells_x, 2)[0], along(hi_r, cells_x, 2)[1]


def _resized(masks: torch.Tensor, ry: torch.Tensor, rx: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """(N, Pn) resized logits ``(ry @ masks[n] @ rx^T)[ys, xs]`` from the taps, never the whole map."""
    (iy, wy), (ix, wx) = _taps(ry), _taps(rx)                           # (H, t), (W, t)
    rows, at = torch.unique(ys, return_inverse=True)
    m_rows = (masks[:, iy[rows]] * wy[rows][None, :, :, None]).sum(2)    # (N, R, Wm)
    return (m_rows[:, at[:, None], ix[xs]] * wx[xs][None]).sum(-1)      # (N, Pn)


def _taps(r: torch.Tensor):
    """(n_out, n_in) tap matrix -> (n_out, t) input indices and weights (t = the widest support)."""
    nz = r > 0
    first = nz.float().argmax(1)
    span = int((r.shape[1] - 1 - nz.flip(1).float().argmax(1) - first).max()) + 1
    idx = first[:, None] + torch.arange(span, device=r.device)[None]
    return idx.clamp(max=r.shape[1] - 1), r.gather(1, idx.clamp(max=r.shape[1] - 1)) * (idx < r.shape[1])


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
