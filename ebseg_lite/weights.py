"""Loading and saving weights safely.

* Never unpickle code: ``.pth``/``.pt`` files go through ``torch.load(weights_only=True)``;
  ``.safetensors`` through safetensors. A pickle carrying code is refused with a clear message.
* Checkpoints are written atomically (temporary file in the same folder, fsync, ``os.replace``),
  so an interrupted save never leaves a half-written file where the last good one was.
* Shape mismatches name the keys and both shapes.
"""
from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Callable, Dict, Optional

import torch
from torch import nn


class WeightsUnavailable(RuntimeError):
    """Pretrained weights are needed but cannot be found (typically: offline)."""


class CheckpointError(RuntimeError):
    """A weights file is missing, unreadable, unsafe or does not fit the model."""


def _new_file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file (0o666 less the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then move the file onto ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _new_file_mode())  # mkstemp makes 0600; a checkpoint should get the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def read_state_dict(path) -> Dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` or ``.pth`` file (unwrapping "model"/"state_dict" entries)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            sd = load_file(str(path), device="cpu")
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message starts with advice to retry with weights_only=False; never pass that on.
        # Only a pickle that names a global (a class or function) is "code"; anything else (an HTML
        # page, a Git LFS pointer, zeros) is simply not a checkpoint.
        lines = [ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln or "global" in ln]
        if lines:
            raise CheckpointError(
                f"refused to load {path}: it contains pickled objects other than tensors (possibly code). "
                "ebseg_lite only loads plain weights (torch.load(weights_only=True)); re-save it as a state "
                f"dict or as .safetensors. Detail: {lines[0]}") from None
        raise CheckpointError(f"could not read weights from {path}: the file is corrupt, truncated or not a "
                              "checkpoint (not a valid torch.save file)") from None
    except Exception as e:  # truncated zip, wrong format, ...
        raise CheckpointError(f"could not read weights from {path}: the file is corrupt, truncated or not a "
                              f"checkpoint ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    for key in ("model", "state_dict"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return sd


def check_shapes(model_sd: Dict[str, torch.Tensor], sd: Dict[str, torch.Tensor], what: str):
    bad = [f"{k}: file {tuple(v.shape)} vs model {tuple(model_sd[k].shape)}"
           for k, v in sd.items() if k in model_sd and tuple(v.shape) != tuple(model_sd[k].shape)]
    if bad:
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise CheckpointError(f"{what} does not fit this model; shape mismatches: " + "; ".join(bad[:5]) + more +
                              ". Check the preset (tiny / vit_b / vit_l) the weights were made for.")


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


def save_checkpoint(model: nn.Module, path, *, trainable_only: bool = False,
                    metadata: Optional[Dict[str, str]] = None) -> Path:
    """Write the model's weights as safetensors, atomically.

    Args:
        trainable_only: keep only the weights EBSeg trains (new modules + the two positional
            embeddings): a few MB instead of the frozen CLIP and SAM.
    """
    from safetensors.torch import save_file
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


def load_checkpoint(model: nn.Module, path, *, strict: bool = True) -> Dict[str, list]:
    """Load ebseg_lite weights (safetensors or .pth state dict) into ``model``.

    An official EBSeg checkpoint (EBSeg_base.pth) is recognised and converted with
    :func:`ebseg_lite.official.load_official_state_dict`.
    Returns ``{"missing": [...], "unexpected": [...]}``.
    """
    sd = read_state_dict(path)
    if any(k.startswith(("sem_seg_head.", "clip_visual_extractor.")) for k in sd):
        from .official import load_official_state_dict
        return load_official_state_dict(model, sd)
    partial, meta = False, {}
    if Path(path).suffix == ".safetensors":
        meta = checkpoint_metadata(path)
        partial = meta.get("trainable_only") == "1"
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
    cache = getattr(model, "_text_cache", None)
    if cache is not None:  # text embeddings made with the old CLIP weights are stale now
        cache.clear()
    return {"missing": missing, "unexpected": unexpected}
