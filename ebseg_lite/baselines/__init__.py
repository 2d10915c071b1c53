"""Seed baselines, run on the same CLIP, vocabulary and evaluator as EBSeg-lite.

* SimSeg (two-stage; :mod:`.simseg`, :mod:`.simseg_pipeline`) with EBSeg-lite's masks ("simseg")
  or segment-anything's automatic masks ("simseg-sam") as proposals;
* the training-free dense-CLIP family (:mod:`.dense_clip`, :mod:`.dense_segmenter`): MaskCLIP,
  SCLIP, NACLIP, ClearCLIP, CLIP Surgery.

:func:`build_method` turns an ``EBSegPredictor`` into any of them. Each has the predictor's interface:
``encode(image)`` (the vocabulary-free, expensive part), ``classify(encoded, class_names, seen=...)``
(cheap, any vocabulary; ``.labels`` at the original size), ``predict`` = both, and ``resolve_seen``;
so :func:`ebseg_lite.eval.loop.evaluate` and ``ebseg-lite eval --method`` run them unchanged.
"""
from __future__ import annotations

from ebseg_lite.baselines.dense_segmenter import DENSE_METHODS, DenseClipSegmenter
from ebseg_lite.baselines.simseg_pipeline import SimSeg

METHODS = ("ebseg", "simseg", "simseg-sam") + DENSE_METHODS


def load_sam(checkpoint: str, model_type: str = "vit_b"):
    """A full segment-anything ``Sam`` (image encoder, prompt encoder, mask decoder) from a checkpoint,
    read with ``torch.load(weights_only=True)`` / safetensors (segment-anything's own builder unpickles)."""
    from segment_anything import sam_model_registry
    from ebseg_lite.io.files import read_state_dict
    sam = sam_model_registry[model_type](checkpoint=None)
    sam.load_state_dict(read_state_dict(checkpoint), strict=True)
    return sam.eval()


def sam_mask_generator(checkpoint: str, *, device="cpu", model_type: str = "vit_b", **kwargs):
    """segment-anything's ``SamAutomaticMaskGenerator`` (its defaults: 32 x 32 points, IoU 0.88,
    stability 0.95) over :func:`load_sam`; ``kwargs`` override its settings."""
    from segment_anything import SamAutomaticMaskGenerator
    return SamAutomaticMaskGenerator(load_sam(checkpoint, model_type).to(device), **kwargs)


def build_method(method: str, predictor, *, mask_generator=None, **kwargs):
    """One evaluable segmenter per method name.

    Args:
        method: one of :data:`METHODS`.
        predictor: an ``EBSegPredictor`` (its CLIP, text cache and seen/new rule are shared).
        mask_generator: for "simseg-sam", e.g. ``sam_mask_generator("sam_vit_b_01ec64.pth")``.
        kwargs: passed to :class:`SimSeg` or :class:`DenseClipSegmenter`.
    """
    if method == "ebseg":
        return predictor
    if method == "simseg":
        return SimSeg(predictor, proposals="ebseg", **kwargs)
    if method == "simseg-sam":
        if mask_generator is None:
            raise ValueError("simseg-sam needs a mask_generator, e.g. sam_mask_generator('sam_vit_b_01ec64.pth')")
        return SimSeg(predictor, proposals="sam", mask_generator=mask_generator, **kwargs)
    if method in DENSE_METHODS:
        return DenseClipSegmenter.from_ebseg(predictor, method, **kwargs)
    raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")


__all__ = ["METHODS", "DENSE_METHODS", "DenseClipSegmenter", "SimSeg", "build_method", "load_sam", "sam_mask_generator"]
