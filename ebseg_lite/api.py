"""One-call use: ``ebseg_lite.segment(image, ["cat", "sofa"])``.

By default it uses EBSeg-B with the released weights (EBSeg_base.pth, which carries CLIP and SAM
too): from ``EBSEG_CHECKPOINT_DIR`` or the Hugging Face hub; offline it says what to download
and where to put it. Models are built once per configuration and reused.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

from ebseg_lite import registry
from ebseg_lite.builder import build_model, resolve_device
from ebseg_lite.inference.outputs import Prediction
from ebseg_lite.inference.predictor import EBSegPredictor
from ebseg_lite.io.official import download_released

_MODELS: Dict[Tuple, EBSegPredictor] = {}


def get_model(preset: str = "vit_b", checkpoint: Optional[str] = "released", *, device: Optional[str] = "auto",
              clip_pretrained: Optional[str] = None, sam_checkpoint: Optional[str] = None) -> EBSegPredictor:
    """A cached model. ``checkpoint``: "released" (official weights for vit_b / vit_l, the shipped toy-world
    model for toy), a path,
    or None (random decoder; only meaningful for tests and the tiny preset)."""
    dev = str(resolve_device(device))
    key = (preset, checkpoint, dev, clip_pretrained, sam_checkpoint)
    if key not in _MODELS:
        ckpt = checkpoint
        if checkpoint == "released" and registry.has("released", preset):  # a plug-in's trained model (toy)
            _MODELS[key] = registry.lookup("released", preset)(dev)
            return _MODELS[key]
        if checkpoint == "released":
            ckpt = None if preset == "tiny" else str(download_released(preset))
        _MODELS[key] = build_model(preset, checkpoint=ckpt, device=dev, clip_pretrained=clip_pretrained,
                                   sam_checkpoint=sam_checkpoint)
    return _MODELS[key]


def segment(image, class_names: Sequence[str], *, model: Optional[EBSegPredictor] = None, preset: str = "vit_b",
            checkpoint: Optional[str] = "released", device: Optional[str] = "auto", seen=None,
            **classify_kwargs) -> Prediction:
    """Segment ``image`` with an own vocabulary.

    Args:
        image: a path, PIL image, (H, W, 3) uint8 array or (3, H, W) uint8 tensor.
        class_names: e.g. ``["cat", "sofa", "road, route"]`` (commas inside a name = synonyms).
        seen: (K,) bool, or None for the synonym rule against COCO-Stuff (the training vocabulary).
        classify_kwargs: ``balancing="paper"``, ``w_seen=...``, ``w_new=...``.
    Returns:
        :class:`~ebseg_lite.inference.outputs.Prediction` (``labels``, ``class_probs``, ``sem_seg``, ...).
    """
    model = model or get_model(preset, checkpoint, device=device)
    return model.predict(image, class_names, seen=seen, **classify_kwargs)
