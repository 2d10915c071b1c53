"""A training-free dense-CLIP segmenter: one of :mod:`ebseg_lite.baselines.dense_clip`'s last blocks,
run window by window over an image, scored against the class texts.

The protocol of SCLIP and NACLIP for ViT-B/16 (their ``forward_slide``), taken relative to CLIP's own
input size S so that the toy CLIP (S = 64) follows it too:

* resize the image so its short side is 1.5 S (336 for S = 224; mmseg ``Resize((2048, 336))``);
* cut S x S windows every S / 2 pixels (224 / 112), the last one moved back to end at the border
  (:func:`ebseg_lite.inference.sliding.sliding_windows`, the same grid as mmseg's);
* per window: patch-text cosines (K, h, w), bilinearly resized to the window, summed into the image
  and divided by the number of windows covering each pixel;
* resize to the original size, argmax; probabilities are ``softmax(logit_scale * cosine)`` with the
  method's own scale: SCLIP 40, NACLIP 40, ClearCLIP 50 (their configs), CLIP's own (100 for OpenAI
  CLIP) for MaskCLIP and CLIP Surgery, whose code scores raw cosines.

ClearCLIP's own configs use 448 windows every 224 at short side 448; ``short_side``, ``window`` and
``stride`` override the defaults. Text embeddings come from the same templates and text tower as
EBSeg (``EBSeg.text_embeddings``), not each paper's 80 ImageNet templates, so that only the image
side differs between methods.

:meth:`DenseClipSegmenter.encode` runs CLIP on every window (no vocabulary); :meth:`DenseClipSegmenter.classify`
scores the stored tokens for any vocabulary, so :func:`ebseg_lite.eval.loop.evaluate` runs it unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ebseg_lite.baselines.dense_clip import NACLIP_SIGMA, DenseOutput, dense_features, patch_logits
from ebseg_lite.inference.sliding import Box, resize_argmax, sliding_windows
from ebseg_lite.io.images import load_image, resize_shortest_edge
from ebseg_lite.vocabulary import validate_class_names

DENSE_METHODS = ("maskclip", "sclip", "naclip", "clearclip", "surgery")
#: softmax temperature per method (None: CLIP's own ``exp(logit_scale)``).
LOGIT_SCALES = {"maskclip": None, "sclip": 40.0, "naclip": 40.0, "clearclip": 50.0, "surgery": None, "clip": None}


@dataclass
class DenseEncoded:
    """The vocabulary-free part of one image (:meth:`DenseClipSegmenter.encode`): every window's tokens."""
    windows: List[Box]                  # (y0, y1, x0, x1) in resized coordinates
    outputs: List[DenseOutput]          # per window: patches (1, C, h, w), cls (1, C), last-block weights
    input_size: Tuple[int, int]         # (h', w') after resizing to the short side
    orig_size: Tuple[int, int]          # (H, W)

    @property
    def attention(self) -> torch.Tensor:
        """(nh, T, T) last-block attention weights of the first window."""
        return self.outputs[0].weights[0]


@dataclass
class DensePrediction:
    """What :meth:`DenseClipSegmenter.classify` returns (one image)."""
    class_names: List[str]
    seen: torch.Tensor                  # (K,) bool
    labels: torch.Tensor                # (H, W) long, at the original size
    logits: torch.Tensor                # (K, h', w') window-averaged scores at the resized size (before the scale)
    probs: torch.Tensor                 # (K, h', w') softmax(logit_scale * logits)
    encoded: DenseEncoded = field(repr=False)


class DenseClipSegmenter:
    """Segment with a frozen open_clip model and one method's last block (no training, no masks).

    Args:
        clip_model: open_clip ``CLIP`` (its ``visual`` tower and ``logit_scale`` are used).
        method: one of :data:`DENSE_METHODS` (or "clip", the unmodified block, for reference).
        text_embeddings: class names -> (K, C) normalised embeddings (EBSeg's cached text path).
        mean, std: CLIP's pixel statistics in 0..1 units.
        resolve_seen: (names, seen) -> (K,) bool, for mIoU_seen / mIoU_new (default: all new).
        sliding: windows as in the module docstring; False runs the whole resized image at once.
        short_side, window, stride: pixels; defaults 1.5 S, S and S / 2 for CLIP input size S.
        logit_scale: default :data:`LOGIT_SCALES` of the method.
    """

    def __init__(self, clip_model: nn.Module, method: str, *, text_embeddings: Callable[[Sequence[str]], torch.Tensor],
                 mean: Sequence[float], std: Sequence[float], resolve_seen: Optional[Callable] = None,
                 sliding: bool = True, short_side: Optional[int] = None, window: Optional[int] = None,
                 stride: Optional[int] = None, logit_scale: Optional[float] = None, sigma: float = NACLIP_SIGMA):
        if method not in LOGIT_SCALES:
            raise ValueError(f"unknown dense-CLIP method {method!r}; choose one of {DENSE_METHODS}")
        self.clip, self.method, self.sigma = clip_model, method, sigma
        self._text, self._resolve_seen = text_embeddings, resolve_seen
        size = clip_model.visual.image_size
        size = size[0] if isinstance(size, (tuple, list)) else int(size)
        self.window = int(window or size)
        self.stride = int(stride or self.window // 2)
        self.short_side = int(short_side or round(1.5 * size))
        self.sliding = sliding
        scale = LOGIT_SCALES[method] if logit_scale is None else logit_scale
        self.logit_scale = float(clip_model.logit_scale.detach().exp()) if scale is None else float(scale)
        dev = next(clip_model.parameters()).device
        self.mean = torch.tensor(mean, device=dev).view(3, 1, 1) * 255.0
        self.std = torch.tensor(std, device=dev).view(3, 1, 1) * 255.0

    @classmethod
    def from_ebseg(cls, model, method: str, **kwargs) -> "DenseClipSegmenter":
        """The same CLIP, text cache, pixel statistics and seen/new rule as an ``EBSegPredictor``."""
        return cls(model.model.clip, method, text_embeddings=model.text_embeddings, mean=model.cfg.clip.mean,
                   std=model.cfg.clip.std, resolve_seen=model.resolve_seen, **kwargs)

    def resolve_seen(self, class_names: Sequence[str], seen=None) -> torch.Tensor:
        if self._resolve_seen is not None:
            return self._resolve_seen(class_names, seen)
        return torch.zeros(len(class_names), dtype=torch.bool) if seen is None else torch.as_tensor(seen, dtype=torch.bool)

    @torch.no_grad()
    def encode(self, image, *, keep_intermediates: bool = True, **_ignored) -> DenseEncoded:
        """Resize, cut the windows and run CLIP with the method's last block on each (no vocabulary).

        Args:
            image: a path, PIL image, (H, W, 3) array or (3, H, W) uint8 tensor.
            keep_intermediates: keep every window's last-block attention weights (else the first only).
        """
        img = load_image(image)  # (3, H, W) uint8
        orig = tuple(img.shape[-2:])
        img, size = resize_shortest_edge(img, self.short_side, self.short_side * 2048 // 336)  # mmseg (2048, 336)
        x = ((img.to(self.mean.device).float() - self.mean) / self.std)[None]  # (1, 3, h', w')
        boxes = sliding_windows(size, self.window, self.stride) if self.sliding else [(0, size[0], 0, size[1])]
        outputs = []
        for i, (y0, y1, x0, x1) in enumerate(boxes):
            out = dense_features(self.clip.visual, x[:, :, y0:y1, x0:x1], self.method, sigma=self.sigma)
            if i and not keep_intermediates:
                out.weights = out.weights[:, :, :0]  # (1, nh, T, 0): dropped
            outputs.append(out)
        return DenseEncoded(windows=boxes, outputs=outputs, input_size=size, orig_size=orig)

    @torch.no_grad()
    def classify(self, encoded: DenseEncoded, class_names: Sequence[str], *, seen=None, **_ignored) -> DensePrediction:
        """Score every window against the class texts, average where windows overlap, argmax.

        Extra keyword arguments of ``EBSegPredictor.classify`` (``balancing``, ...) are accepted and
        ignored, so the evaluation loop runs every method alike.
        """
        names = validate_class_names(class_names)
        seen_t = self.resolve_seen(names, seen)
        first = encoded.outputs[0].patches
        text = self._text(names).to(first.device)  # (K, C)
        total = first.new_zeros((len(names),) + tuple(encoded.input_size))  # (K, h', w')
        count = first.new_zeros(tuple(encoded.input_size))
        for (y0, y1, x0, x1), out in zip(encoded.windows, encoded.outputs):
            logits = patch_logits(out, text, self.method)  # (1, K, h, w) tokens
            total[:, y0:y1, x0:x1] += F.interpolate(logits, size=(y1 - y0, x1 - x0), mode="bilinear",
                                                    align_corners=False)[0]
            count[y0:y1, x0:x1] += 1
        total /= count
        labels, _ = resize_argmax(total, encoded.orig_size)
        return DensePrediction(class_names=names, seen=seen_t, labels=labels.cpu(), logits=total,
                               probs=(self.logit_scale * total).softmax(0), encoded=encoded)

    def predict(self, image, class_names: Sequence[str], *, seen=None, keep_intermediates: bool = True,
                **_ignored) -> DensePrediction:
        """``classify(encode(image), class_names)``."""
        return self.classify(self.encode(image, keep_intermediates=keep_intermediates), class_names, seen=seen)
