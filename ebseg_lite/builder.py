"""``build_model``: presets, open_clip and segment-anything weights, devices.

Weights never come from a hard-coded path:
* CLIP: an open_clip pretrained tag (``"openai"``), a local open_clip checkpoint file, or an
  ``"hf-hub:org/repo"`` name (open_clip's own loaders, so its caches and formats apply).
* SAM: ``sam_checkpoint=`` or the environment variable ``EBSEG_SAM_CHECKPOINT``.
Offline, a weight that cannot be found raises :class:`WeightsUnavailable` saying what to
download and where to put it.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import warnings
from typing import Any, Optional, Tuple

import open_clip
import torch
from open_clip.pretrained import download_pretrained_from_hf
from torch import nn

from ebseg_lite import registry
from ebseg_lite.config import EBSegConfig, get_preset
from ebseg_lite.inference.predictor import EBSegPredictor
from ebseg_lite.modeling.ebseg import EBSeg
from ebseg_lite.modeling.sam_features import build_sam_encoder
from ebseg_lite.io.checkpoints import checkpoint_metadata, load_checkpoint, load_sam_checkpoint, saved_sam_scale
from ebseg_lite.io.files import CheckpointError, WeightsUnavailable, read_state_dict
from ebseg_lite.io.hub import cache_only_when_offline

SAM_ENV = "EBSEG_SAM_CHECKPOINT"
SAM_URLS = {768: "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"}




def resolve_device(device: Optional[str] = None) -> torch.device:
    """"auto"/None -> cuda, else mps, else cpu; otherwise the named device (checked)."""
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here; use device='cpu'")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r} requested but Apple MPS is not available here; use device='cpu'")
    return dev


def _clip_unavailable(cfg, pretrained: str, e: Exception) -> WeightsUnavailable:
    """Say what to download, how, and where the cache lives."""
    try:
        from huggingface_hub import constants
        where = f"the Hugging Face hub cache ({constants.HF_HUB_CACHE}; set HF_HOME or HF_HUB_CACHE to move it)"
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        where = "the Hugging Face hub cache (HF_HOME, default ~/.cache/huggingface)"
    call = (f"open_clip.create_model('{pretrained}')" if pretrained.startswith("hf-hub:")
            else f"open_clip.create_model('{cfg.model_name}', pretrained='{pretrained}')")
    detail = str(e).splitlines()[0][:200] if str(e) else ""
    return WeightsUnavailable(
        f"could not load CLIP weights {pretrained!r} for {cfg.model_name} ({type(e).__name__}: {detail}). "
        f"Offline? On a machine with internet run\n    python -c \"import open_clip; {call}\"\n"
        f"and copy {where} here, or pass clip_pretrained='/path/to/open_clip_checkpoint.safetensors'.")


def _refuse_pickled_code(path: str) -> None:
    """open_clip retries ``torch.load`` *without* ``weights_only`` when the safe load raises a
    TypeError, and before torch 2.6 that unpickles anything; so a pickle is read by our strict
    reader first (it raises :class:`CheckpointError` and never falls back)."""
    if not str(path).endswith(".safetensors"):
        read_state_dict(path)


def _load_clip_file(model: nn.Module, path: str) -> None:
    """A local open_clip checkpoint (open_clip's loader: safetensors or torch.load(weights_only=True))."""
    _refuse_pickled_code(path)
    try:
        open_clip.load_checkpoint(model, path, strict=True, weights_only=True)
    except Exception as e:
        detail = " ".join(str(e).split())[:400]  # torch lists the mismatched keys on later lines
        raise CheckpointError(f"could not load CLIP weights from {path}: corrupt, unsafe (pickled code) or made "
                              f"for another CLIP architecture ({type(e).__name__}: {detail})") from None


def build_clip(cfg, pretrained: Optional[str]) -> Tuple[nn.Module, Any]:
    """An open_clip CLIP model and its tokenizer.

    ``"hf-hub:org/repo"`` always goes through open_clip (the repo's ``open_clip_config.json``
    decides the architecture, even for the tiny preset); missing weights there are an error,
    never a silently random CLIP.
    """
    if pretrained and pretrained.startswith("hf-hub:"):
        with cache_only_when_offline():  # offline: answers from the hub cache at once, no retries
            try:  # the same file open_clip will load (cached after this call)
                weights = download_pretrained_from_hf(pretrained[len("hf-hub:"):])
            except Exception as e:
                raise _clip_unavailable(cfg, pretrained, e) from None
            _refuse_pickled_code(weights)
            try:
                model = open_clip.create_model(pretrained, require_pretrained=True)
                return model, open_clip.get_tokenizer(pretrained)
            except Exception as e:
                raise _clip_unavailable(cfg, pretrained, e) from None
    if cfg.custom_cfg is not None:
        mcfg = copy.deepcopy(cfg.custom_cfg)
        mcfg["quick_gelu"] = cfg.quick_gelu
        model = open_clip.CLIP(**mcfg)
        tok = open_clip.SimpleTokenizer(context_length=mcfg["text_cfg"].get("context_length", 77))
        if cfg.tokenizer != "open_clip":  # a plug-in's tokenizer (the toy world's compact one)
            tok = registry.lookup("tokenizer", cfg.tokenizer)(mcfg, pretrained)
        if pretrained:
            if not os.path.isfile(pretrained):
                raise WeightsUnavailable(f"CLIP weights file {pretrained!r} not found; the {cfg.model_name} "
                                         "CLIP takes a local open_clip checkpoint (.safetensors or .pt state dict) "
                                         "or an 'hf-hub:org/repo' name")
            _load_clip_file(model, pretrained)
        return model, tok
    if pretrained and os.path.isfile(pretrained):  # a local file: errors are about the file, not the network
        model = open_clip.create_model(cfg.model_name, force_quick_gelu=cfg.quick_gelu)
        _load_clip_file(model, pretrained)
        return model, open_clip.get_tokenizer(cfg.model_name)
    try:
        with cache_only_when_offline() if pretrained else contextlib.nullcontext():
            model = open_clip.create_model(cfg.model_name, pretrained=pretrained, force_quick_gelu=cfg.quick_gelu)
    except Exception as e:
        if pretrained is None:
            raise
        raise _clip_unavailable(cfg, pretrained, e) from None
    return model, open_clip.get_tokenizer(cfg.model_name)


def build_sam(cfg, checkpoint: Optional[str]) -> nn.Module:
    enc = build_sam_encoder(cfg)
    path = checkpoint or cfg.checkpoint or os.environ.get(SAM_ENV)
    if path:
        if not os.path.isfile(path):
            url = SAM_URLS.get(cfg.embed_dim, "the segment-anything README")
            raise WeightsUnavailable(
                f"SAM checkpoint not found at {path!r}. Download sam_vit_b_01ec64.pth from {url} "
                f"and pass sam_checkpoint='/path/to/sam_vit_b_01ec64.pth' or set {SAM_ENV}.")
        load_sam_checkpoint(enc, path)
    return enc


def _apply_overrides(cfg: EBSegConfig, overrides: dict) -> EBSegConfig:
    for key, val in overrides.items():
        if key in ("clip", "sam", "decoder", "inference") and isinstance(val, dict):
            setattr(cfg, key, dataclasses.replace(getattr(cfg, key), **val))
        elif hasattr(cfg, key):
            setattr(cfg, key, val)
        else:
            raise TypeError(f"unknown override {key!r}; use clip={{...}}, sam={{...}}, decoder={{...}}, "
                            f"inference={{...}} or a field of EBSegConfig")
    return cfg


def build_model(preset: str = "tiny", *, clip_pretrained: Optional[str] = None, sam_checkpoint: Optional[str] = None,
                checkpoint: Optional[str] = None, device: Optional[str] = "cpu", seed: Optional[int] = 0,
                **overrides) -> EBSegPredictor:
    """Build EBSeg at a preset ("tiny", "toy", "vit_b", "vit_l") and wrap it in a predictor.

    Returns an :class:`~ebseg_lite.inference.predictor.EBSegPredictor` (``encode``, ``classify``,
    ``predict``, ``text_embeddings``); its ``.model`` is the :class:`~ebseg_lite.modeling.ebseg.EBSeg`
    ``nn.Module`` (what training, checkpoints and the stage notebooks use).

    Args:
        clip_pretrained: open_clip tag ("openai"), local file, or "hf-hub:org/repo".
        sam_checkpoint: path to sam_vit_b_01ec64.pth (else env EBSEG_SAM_CHECKPOINT).
        checkpoint: ebseg_lite weights or an official EBSeg checkpoint (EBSeg_base.pth).
        device: "cpu", "cuda", "mps" or "auto".
        seed: seeds the random initialisation (None leaves the global RNG alone).
        overrides: e.g. ``inference={"balancing": "paper"}`` or ``decoder={"num_queries": 50}``. An
            ebseg_lite checkpoint's SAM feature scale (``sam={"feature_scale": s}``) is taken from its saved
            config unless given here; a different one given here is refused when the weights load.
    """
    cfg = _apply_overrides(get_preset(preset), overrides)
    if checkpoint and os.path.isfile(checkpoint) and "feature_scale" not in overrides.get("sam", {}):
        # weights trained with SAM's features scaled before the fusion carry the scale in their config
        saved = saved_sam_scale(checkpoint_metadata(checkpoint)) if str(checkpoint).endswith(".safetensors") else None
        if saved is not None:
            cfg.sam = dataclasses.replace(cfg.sam, feature_scale=saved)
    if registry.has("weights_check", cfg.preset):  # a plug-in preset explains how to make its weights
        registry.lookup("weights_check", cfg.preset)(clip_pretrained or cfg.clip.pretrained,
                                                     sam_checkpoint or cfg.sam.checkpoint)
    if seed is not None:
        torch.manual_seed(seed)
    clip_pretrained = clip_pretrained or cfg.clip.pretrained
    clip_model, tok = build_clip(cfg.clip, clip_pretrained)
    cfg.clip.pretrained = clip_pretrained
    sam = build_sam(cfg.sam, sam_checkpoint)
    model = EBSeg(cfg, clip_model, tok, sam)
    if checkpoint:
        load_checkpoint(model, checkpoint)
    elif preset != "tiny" and not (clip_pretrained and (sam_checkpoint or cfg.sam.checkpoint or os.environ.get(SAM_ENV))):
        warnings.warn(f"{preset}: built with random weights for CLIP and/or SAM and an untrained decoder; "
                      "predictions are meaningless. Pass checkpoint='EBSeg_base.pth' (official weights) or "
                      "clip_pretrained='openai' and sam_checkpoint=... before training.", stacklevel=2)
    return EBSegPredictor(model.to(resolve_device(device)).eval())
