"""Loading and saving ebseg_lite weights (safetensors, ``torch.load(weights_only=True)``).

Shape mismatches name the keys and both shapes; an official EBSeg checkpoint is recognised and
converted (:mod:`ebseg_lite.io.official`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional

from torch import nn

from ebseg_lite.io.files import CheckpointError, atomic_write, check_shapes, read_state_dict
from ebseg_lite.io.official import load_official_state_dict

__all__ = ["CheckpointError", "atomic_write", "read_state_dict", "load_sam_checkpoint", "save_checkpoint",
           "checkpoint_metadata", "load_checkpoint", "saved_sam_scale"]


def load_sam_checkpoint(encoder: nn.Module, path) -> None:
    """Load segment-anything's ``sam_vit_b_01ec64.pth`` (or an encoder-only file) into the image
    encoder; the prompt encoder, mask decoder and neck are not used by EBSeg."""
    sd = read_state_dict(path)
    if any(k.startswith("image_encoder.") for k in sd):
        sd = {k[len("image_encoder."):]: v for k, v in sd.items() if k.startswith("image_encoder.")}
    sd = {k: v for k, v in sd.items() if not k.startswith("neck.")}
    own = encoder.state_dict()
    check_shapes(own, sd, f"SAM checkpoint {path}")
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))  # e.g. blocks 12.. of a deeper SAM (ViT-L/H) would be dropped
    if missing or unexpected:
        raise CheckpointError(f"SAM checkpoint {path} does not fit this image encoder: {len(missing)} weights missing "
                              f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}); "
                              "is it a SAM ViT-B checkpoint (sam_vit_b_01ec64.pth)?")
    encoder.load_state_dict(sd, strict=True)


def module_of(model) -> nn.Module:
    """The ``nn.Module`` behind a predictor (``EBSegPredictor.model``), or the module itself."""
    return model if isinstance(model, nn.Module) else model.model


def save_checkpoint(model, path, *, trainable_only: bool = False,
                    metadata: Optional[Dict[str, str]] = None) -> Path:
    """Write the model's weights as safetensors, atomically.

    Args:
        trainable_only: keep only the weights EBSeg trains (new modules + the two positional
            embeddings): a few MB instead of the frozen CLIP and SAM.
    """
    from safetensors.torch import save_file
    model = module_of(model)
    names = {n for n, p in model.named_parameters() if p.requires_grad} if trainable_only else None
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if names is None or k in names}
    meta = {"format": "ebseg_lite", "trainable_only": str(int(trainable_only))}
    cfg = getattr(model, "cfg", None)
    if cfg is not None:
        meta["config"] = json.dumps(cfg.to_dict())
    meta.update(metadata or {})
    return atomic_write(path, lambda tmp: save_file(sd, tmp, metadata=meta))


def checkpoint_metadata(path) -> Dict[str, str]:
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def saved_sam_scale(meta: Dict[str, str]) -> Optional[float]:
    """The SAM feature scale (``SamConfig.feature_scale``) in a file's saved config: 1 for a config written
    before the field existed, None without a config (an official or a ``.pth`` checkpoint)."""
    try:
        return float(json.loads(meta["config"])["sam"].get("feature_scale", 1.0))
    except (KeyError, TypeError, ValueError):
        return None


def check_sam_scale(model, meta: Dict[str, str], path) -> None:
    """Weights trained with SAM's features scaled before the fusion (``SamConfig.feature_scale``) only
    predict right in a model built with the same scale; no tensor shape tells, so the saved config does."""
    cfg = getattr(model, "cfg", None)
    saved = saved_sam_scale(meta)
    if cfg is not None and saved is not None and saved != cfg.sam.feature_scale:
        raise CheckpointError(f"checkpoint {path} was trained with SAM's features scaled by {saved:g} before the fusion, "
                              f"the model scales them by {cfg.sam.feature_scale:g}: build it with "
                              f"sam={{'feature_scale': {saved:g}}}")


def load_checkpoint(model, path, *, strict: bool = True) -> Dict[str, list]:
    """Load ebseg_lite weights (safetensors or .pth state dict) into ``model``.

    An official EBSeg checkpoint (EBSeg_base.pth) is recognised and converted with
    :func:`ebseg_lite.io.official.load_official_state_dict`.
    Returns ``{"missing": [...], "unexpected": [...]}``.
    """
    sd = read_state_dict(path)
    model = module_of(model)
    if any(k.startswith(("sem_seg_head.", "clip_visual_extractor.")) for k in sd):
        return load_official_state_dict(model, sd)
    partial, meta = False, {}
    if Path(path).suffix == ".safetensors":
        meta = checkpoint_metadata(path)
        partial = meta.get("trainable_only") == "1"
    check_sam_scale(model, meta, path)
    own = model.state_dict()
    check_shapes(own, sd, f"checkpoint {path}")
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    if strict and (unexpected or (missing and not partial)):
        raise CheckpointError(f"checkpoint {path} does not match the model: {len(missing)} missing keys "
                              f"{missing[:3]}, {len(unexpected)} unexpected keys {unexpected[:3]}")
    model.load_state_dict(sd, strict=False)
    if "class_names" in meta and hasattr(model, "train_class_names"):
        # weights from `ebseg-lite train`: seen/new is decided against the vocabulary they were trained on
        model.train_class_names = json.loads(meta["class_names"])
    if hasattr(model, "weights_version"):  # text embeddings made with the old CLIP weights are stale now
        model.weights_version += 1
    return {"missing": missing, "unexpected": unexpected}
