"""SimSeg's two stages on one image: class-agnostic mask proposals, then CLIP on masked crops.

Stage 1 proposals come from

* ``"ebseg"``: EBSeg-lite's own masks M (its decoder, trained on seen classes: the role MaskFormer
  plays in zsseg), together with its trained classifier A (``Prediction.probs["A"]`` and the void
  probability), so the crop scores are ensembled with A as zsseg ensembles with MaskFormer's head;
* ``"sam"``: segment-anything's ``SamAutomaticMaskGenerator`` (points on a grid, no classes). No
  trained classifier exists there, so the crop scores are used alone; the pixels no SAM mask covers
  become one more proposal ("the rest of the image") so that every pixel is labelled.

Stage 2 is :mod:`ebseg_lite.baselines.simseg` (crops, CLIP scores, ensemble). The semantic map is
eq. 14, :func:`ebseg_lite.modeling.balance.semantic_inference`, summed a few rows at a time, then
argmaxed. CLIP runs once per proposal: its cost grows with the number of masks, unlike EBSeg's.

As with EBSeg's predictor, :meth:`SimSeg.encode` does the vocabulary-free, expensive part (proposals,
crops, CLIP on every crop) and :meth:`SimSeg.classify` the cheap part for any vocabulary (text
cosines, the ensemble, eq. 14), so :func:`ebseg_lite.eval.loop.evaluate` runs it unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np
import torch

from ebseg_lite.baselines.simseg import crop_embeddings, crop_probs, ensemble_probs, masked_crops, scatter_valid
from ebseg_lite.inference.outputs import Encoded, upsample_masks
from ebseg_lite.io.images import load_image
from ebseg_lite.modeling.balance import official_map_probs, semantic_inference, with_void
from ebseg_lite.vocabulary import validate_class_names

BINARY_LOGIT = 20.0  # a 0/1 SAM mask as logits +-20: sigmoid gives 1 - 2e-9 and 2e-9


@dataclass
class SimSegEncoded:
    """The vocabulary-free part of one image (:meth:`SimSeg.encode`): proposals and their crops' embeddings."""
    masks: torch.Tensor                    # (N, H, W) proposal logits at the original size
    valid: torch.Tensor                    # (N,) bool, proposals that got a crop
    crop_embeds: torch.Tensor              # (N', C) CLIP embeddings of the crops (normalised)
    boxes: list                            # N boxes (x1, y1, x2, y2) or None
    ebseg: Optional[Encoded] = None        # EBSeg-lite's encoding (proposals "ebseg": masks M and A)
    crops: Optional[torch.Tensor] = field(default=None, repr=False)  # (N', 3, S, S) when kept


@dataclass
class SimSegPrediction:
    """What :meth:`SimSeg.classify` returns (one image)."""
    class_names: List[str]
    seen: torch.Tensor                     # (K,) bool
    labels: torch.Tensor                   # (H, W) long, at the original size
    p_clip: torch.Tensor                   # (N, K) CLIP on the crops (ones where not valid)
    p_trained: Optional[torch.Tensor]      # (N, K) EBSeg-lite's A (proposals "ebseg" only)
    class_probs: torch.Tensor              # (N, K) what eq. 14 sums
    encoded: SimSegEncoded = field(repr=False)

    @property
    def masks(self) -> torch.Tensor:
        return self.encoded.masks

    @property
    def valid(self) -> torch.Tensor:
        return self.encoded.valid

    @property
    def crops(self) -> Optional[torch.Tensor]:
        return self.encoded.crops


def sam_proposal_logits(records: Sequence[dict], size) -> torch.Tensor:
    """``SamAutomaticMaskGenerator`` records -> (N + 1, H, W) logits: each "segmentation", then the
    pixels none of them covers (all-background when every pixel is covered)."""
    h, w = size
    masks = [torch.as_tensor(np.asarray(r["segmentation"]), dtype=torch.bool) for r in records]
    stack = torch.stack(masks) if masks else torch.zeros((0, h, w), dtype=torch.bool)
    rest = ~stack.any(0) if masks else torch.ones((h, w), dtype=torch.bool)
    stack = torch.cat([stack, rest[None]])
    return torch.where(stack, BINARY_LOGIT, -BINARY_LOGIT)


def semantic_labels(class_probs: torch.Tensor, mask_logits: torch.Tensor, rows: int = 64) -> torch.Tensor:
    """argmax_k of eq. 14 ``sum_n P[n, k] sigmoid(M[n])``, ``rows`` image rows at a time.

    Args:
        class_probs: (N, K).  mask_logits: (N, H, W).
    Returns:
        (H, W) long.
    """
    out = []
    for r in range(0, mask_logits.shape[1], rows):
        out.append(semantic_inference(class_probs[None], mask_logits[None, :, r:r + rows])[0].argmax(0))
    return torch.cat(out)


class SimSeg:
    """SimSeg with EBSeg-lite's masks or SAM's as proposals.

    Args:
        model: an ``EBSegPredictor``: its CLIP, text cache, seen/new rule and (``proposals="ebseg"``)
            its masks and classifier A.
        proposals: "ebseg" or "sam".
        mask_generator: for "sam", a ``segment_anything.SamAutomaticMaskGenerator`` (anything with
            ``generate(HxWx3 uint8) -> [{"segmentation": HxW bool}, ...]``).
        w: ensemble weight (zsseg: 0.8).  threshold, expand_ratio, fill: crop geometry (zsseg:
            0.5, 1.0, "mean").
        renormalize: True (default) renormalises the ensemble over K and then scales it by A's
            non-void probability (``with_void``, as EBSeg's classify); False is zsseg's own arithmetic,
            ``P_trained = softmax_{K+1}(A)[:K]`` in unnormalised products.
    """

    def __init__(self, model, *, proposals: str = "ebseg", mask_generator=None, w: float = 0.8,
                 threshold: float = 0.5, expand_ratio: float = 1.0, fill: str = "mean", renormalize: bool = True):
        if proposals not in ("ebseg", "sam"):
            raise ValueError(f"proposals must be 'ebseg' or 'sam', got {proposals!r}")
        if proposals == "sam" and mask_generator is None:
            raise ValueError("proposals='sam' needs a mask_generator (segment_anything.SamAutomaticMaskGenerator)")
        self.model, self.proposals, self.mask_generator = model, proposals, mask_generator
        self.w, self.threshold, self.expand_ratio, self.fill, self.renormalize = w, threshold, expand_ratio, fill, renormalize
        self.clip = model.model.clip
        size = self.clip.visual.image_size
        self.crop_size = size[0] if isinstance(size, (tuple, list)) else int(size)

    def resolve_seen(self, class_names: Sequence[str], seen=None) -> torch.Tensor:
        return self.model.resolve_seen(class_names, seen)

    @torch.no_grad()
    def encode(self, image, *, keep_intermediates: bool = True, **_ignored) -> SimSegEncoded:
        """Stage 1 and CLIP on every crop: everything that does not depend on the vocabulary."""
        img = load_image(image)  # (3, H, W) uint8
        enc = None
        if self.proposals == "ebseg":
            enc = self.model.encode(img, keep_intermediates=False)
            masks = upsample_masks(enc.masks, enc)  # (N, H, W) logits
        else:
            records = self.mask_generator.generate(img.permute(1, 2, 0).cpu().numpy())
            masks = sam_proposal_logits(records, img.shape[-2:]).to(self.model.device)
        cfg = self.model.cfg.clip
        crops, valid, boxes = masked_crops(img.to(masks.device), masks.sigmoid(), size=self.crop_size, mean=cfg.mean,
                                           std=cfg.std, threshold=self.threshold, expand_ratio=self.expand_ratio,
                                           fill=self.fill)
        return SimSegEncoded(masks=masks, valid=valid, crop_embeds=crop_embeddings(self.clip.visual, crops), boxes=boxes,
                             ebseg=enc, crops=crops if keep_intermediates else None)

    @torch.no_grad()
    def classify(self, encoded: SimSegEncoded, class_names: Sequence[str], *, seen=None, **_ignored) -> SimSegPrediction:
        """Stage 2 for a vocabulary: crop scores, the ensemble with A (proposals "ebseg"), eq. 14.
        Extra ``EBSegPredictor.classify`` keywords are accepted and ignored."""
        names = validate_class_names(class_names)
        seen_t = self.model.resolve_seen(names, seen)
        text = self.model.text_embeddings(names)  # (K, C), EBSeg's templates and cache
        scale = float(self.clip.logit_scale.detach().exp())
        p_clip = scatter_valid(crop_probs(encoded.crop_embeds, text, scale), encoded.valid)  # (N, K)
        p_trained = None
        if encoded.ebseg is None:
            class_probs = p_clip
        else:
            pred = self.model.classify(encoded.ebseg, names, seen=seen_t)
            p_trained, p_void = pred.probs["A"], pred.p_void  # (N, K), (N,)
            if self.renormalize:  # renormalised over K, then A's void mass as EBSeg's classify applies it
                fused = ensemble_probs(p_trained, p_clip, seen_t, w=self.w, renormalize=True)
                class_probs = official_map_probs(with_void(fused, p_void))
            else:  # zsseg's arithmetic: softmax over K + 1 without the void column, products unnormalised
                class_probs = ensemble_probs(p_trained * (1 - p_void)[:, None], p_clip, seen_t, w=self.w,
                                             renormalize=False)
        labels = semantic_labels(class_probs, encoded.masks)
        return SimSegPrediction(class_names=names, seen=seen_t, labels=labels.cpu(), p_clip=p_clip, p_trained=p_trained,
                                class_probs=class_probs, encoded=encoded)

    def predict(self, image, class_names: Sequence[str], *, seen=None, keep_intermediates: bool = True,
                **_ignored) -> SimSegPrediction:
        """``classify(encode(image), class_names)``."""
        return self.classify(self.encode(image, keep_intermediates=keep_intermediates), class_names, seen=seen)
