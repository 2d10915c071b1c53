"""Sliding-window inference: an option beside the official whole-image protocol.

EBSeg is evaluated on whole images (short side 640, one ``model.predict`` per image); that stays
the default everywhere (``evaluate(..., sliding=False)``). Many segmentation codebases also offer
"slide" inference: cut the resized image into overlapping ``window x window`` crops, segment each
crop on its own, and average the per-pixel class scores where crops overlap. It keeps every crop at
the training resolution when the long side is much longer than 640, at the cost of one encoder run
per window. Written by hand: it is short, and the averaging is the lesson.

Per window the score is the semantic map of Stage 6 that ``label_map`` argmaxes,

    S[k, y, x] = sum_n P[n, k] sigmoid(M[n, y, x])    (P: balanced class probabilities (N, K), M: mask logits)

taken from ``Prediction.sem_seg`` of the crop. The scores are summed in the resized image's
coordinates, divided by the number of windows covering each pixel, resized bilinearly to the original
size and argmaxed.

One window over an image that is already at the test size reproduces ``model.predict`` exactly. When
the image needs resizing the two paths differ slightly: ``predict`` resizes the mask *logits* to the
original size before the sigmoid, this path resizes the averaged *scores*.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ebseg_lite.io.images import load_image, resize_shortest_edge
from ebseg_lite.vocabulary import validate_class_names

Box = Tuple[int, int, int, int]  # (y0, y1, x0, x1) in the resized image, end exclusive


@dataclass
class SlidingPrediction:
    """What ``sliding_window_predict`` returns."""
    class_names: List[str]
    seen: torch.Tensor                 # (K,) bool
    labels: torch.Tensor               # (H, W) long, at the original image size
    score: torch.Tensor                # (H, W) max of the averaged semantic map
    scores: torch.Tensor               # (K, h', w') averaged semantic map at the model's input size
    count: torch.Tensor                # (h', w') how many windows covered each pixel (>= 1)
    windows: List[Box]                 # the crops, in input-size coordinates
    orig_size: Tuple[int, int]         # (H, W)
    input_size: Tuple[int, int]        # (h', w') after resizing to the test short side


def window_and_stride(short_side: int, window: Optional[int] = None, stride: Optional[int] = None) -> Tuple[int, int]:
    """The defaults: window = the test short side, stride = 2/3 of the window (rounded up)."""
    window = int(window or short_side)
    return window, int(stride or -(-2 * window // 3))


def window_starts(length: int, window: int, stride: int) -> List[int]:
    """Start offsets along one axis: every ``stride`` pixels, plus a last window moved back to end at
    the border, so each position is covered. A window longer than the axis becomes one crop at 0."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def sliding_windows(size: Tuple[int, int], window: int, stride: int) -> List[Box]:
    """The (y0, y1, x0, x1) crops tiling an (h, w) image, row by row; each side is min(window, side)."""
    if window < 1 or not 1 <= stride <= window:
        raise ValueError(f"need window >= 1 and 1 <= stride <= window (else pixels are skipped), "
                         f"got window={window}, stride={stride}")
    h, w = size
    wh, ww = min(window, h), min(window, w)
    return [(y, y + wh, x, x + ww) for y in window_starts(h, wh, stride) for x in window_starts(w, ww, stride)]


def resize_argmax(scores: torch.Tensor, size: Tuple[int, int], max_elems: int = 1 << 25):
    """Bilinear resize of a (K, h, w) score map to ``size`` and its argmax, a few classes at a time
    (a running max) so that (K, H, W) at the original size never exists whole.

    Returns:
        labels (H, W) long and the max score (H, W).
    """
    k, h, w = scores.shape
    if (h, w) == tuple(size):
        best, labels = scores.max(dim=0)
        return labels, best
    step = max(1, max_elems // max(1, size[0] * size[1]))
    best = labels = None
    for k0 in range(0, k, step):
        s = F.interpolate(scores[None, k0:k0 + step], size=size, mode="bilinear", align_corners=False)[0]
        top, idx = s.max(dim=0)  # (H, W) each
        if best is None:
            best, labels = top, idx
        else:
            better = top > best  # strict: ties keep the lower class id, as torch.max does
            best, labels = torch.where(better, top, best), torch.where(better, idx + k0, labels)
    return labels, best


@torch.no_grad()
def sliding_window_predict(model, image, class_names: Sequence[str], *, window: Optional[int] = None,
                           stride: Optional[int] = None, seen=None, precision: Optional[str] = None,
                           **classify_kwargs) -> SlidingPrediction:
    """Segment ``image`` window by window and average the overlapping scores (an option; the
    official protocol is whole-image ``model.predict``).

    Args:
        model: an :class:`~ebseg_lite.modeling.ebseg.EBSeg`.
        image: a path, PIL image, (H, W, 3) uint8 array or (3, H, W) uint8 tensor.
        class_names: K names.
        window: crop side in pixels of the resized image (default: the test short side, 640 for
            vit_b / vit_l, so a crop has the training size).
        stride: step between crops (default: 2/3 of ``window``, rounded up).
        seen: (K,) bool or None (the synonym rule), as in ``classify``.
        precision: "fp32" or "bf16" for the encoder runs.
        classify_kwargs: ``balancing``, ``w_seen``, ``w_new``, ``paper_abg``, as in ``classify``.
    Returns:
        :class:`SlidingPrediction` with ``labels`` (H, W) at the original size and the averaged
        score map ``scores`` (K, h', w') at the model's input size.
    """
    inf = model.cfg.inference
    img = load_image(image)  # (3, H, W)
    orig = tuple(img.shape[-2:])
    img, size = resize_shortest_edge(img, inf.short_side, inf.max_size)  # (3, h', w'), as encode does
    window, stride = window_and_stride(inf.short_side, window, stride)
    boxes = sliding_windows(size, window, stride)
    names = validate_class_names(class_names)
    seen_t = model.resolve_seen(names, seen)
    scores = count = None
    for y0, y1, x0, x1 in boxes:
        enc = model.encode(img[:, y0:y1, x0:x1], resize=False, keep_intermediates=False, precision=precision)
        crop = model.classify(enc, names, seen=seen_t, **classify_kwargs).sem_seg  # (K, y1-y0, x1-x0)
        if scores is None:
            scores = crop.new_zeros((len(names),) + tuple(size))  # (K, h', w')
            count = crop.new_zeros(tuple(size))  # (h', w')
        scores[:, y0:y1, x0:x1] += crop
        count[y0:y1, x0:x1] += 1
    scores /= count
    labels, score = resize_argmax(scores, orig)
    return SlidingPrediction(class_names=names, seen=seen_t, labels=labels, score=score, scores=scores,
                             count=count, windows=boxes, orig_size=orig, input_size=tuple(size))
