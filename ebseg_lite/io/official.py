"""Load the released EBSeg checkpoints (official key names) into ebseg_lite.

The official model (slonetime/EBSeg) registers CLIP in pieces: blocks 0..8 under
``clip_visual_extractor`` (blocks from ``layers // 6`` on rewritten as Surgery blocks whose
attention is named ``qkv``/``proj``), the head blocks 9..11 under ``clip_rec_head`` (same
renaming; its ``ln_post``/``proj`` alias the extractor's), the text tower under
``ov_classifier``, SAM's encoder under ``backbone`` and the decoder under ``sem_seg_head``.
:func:`convert_official_state_dict` renames every key onto one open_clip CLIP and our modules;
every official parameter is used exactly once or listed in :data:`UNUSED` with the reason.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch import nn

from ebseg_lite.io.files import CheckpointError, WeightsUnavailable, check_shapes, read_state_dict
from ebseg_lite.io.hub import ETAG_SECONDS, cache_only_when_offline

HF_REPO = "slonetime/EBSeg"
RELEASED = {"vit_b": "EBSeg_base.pth", "vit_l": "EBSeg_large.pth"}

UNUSED = {
    "criterion.empty_weight": "training-loss class weights (ones, last = no-object weight 0.1); rebuilt by the criterion",
    "ov_classifier.attn_mask": "open_clip's causal text mask, a constant buffer rebuilt by open_clip",
}
ALIASES = {  # official key -> the key it duplicates (same tensor)
    "clip_rec_head.proj": "clip_visual_extractor.proj",
    "clip_rec_head.ln_post.weight": "clip_visual_extractor.ln_post.weight",
    "clip_rec_head.ln_post.bias": "clip_visual_extractor.ln_post.bias",
}

_ATTN = [(r"\.attn\.qkv\.", ".attn.in_proj_"), (r"\.attn\.proj\.", ".attn.out_proj.")]
_DECODER = [
    (r"^sem_seg_head\.clip_fusion_layers\.", "fusion.layers."),
    (r"^sem_seg_head\.pixel_decoder\.transformer\.level_embed$", "pixel_decoder.level_embed"),
    (r"^sem_seg_head\.pixel_decoder\.transformer\.encoder\.layers\.", "pixel_decoder.layers."),
    (r"^sem_seg_head\.pixel_decoder\.input_proj\.", "pixel_decoder.input_proj."),
    (r"^sem_seg_head\.pixel_decoder\.mask_features\.", "pixel_decoder.mask_features."),
    (r"^sem_seg_head\.pixel_decoder\.adapter_1\.norm\.", "pixel_decoder.lateral.1."),
    (r"^sem_seg_head\.pixel_decoder\.adapter_1\.weight$", "pixel_decoder.lateral.0.weight"),
    (r"^sem_seg_head\.pixel_decoder\.layer_1\.norm\.", "pixel_decoder.output.1."),
    (r"^sem_seg_head\.pixel_decoder\.layer_1\.weight$", "pixel_decoder.output.0.weight"),
    (r"^sem_seg_head\.predictor\.transformer_self_attention_layers\.(\d+)\.norm\.", r"decoder.layers.\1.norm2."),
    (r"^sem_seg_head\.predictor\.transformer_self_attention_layers\.(\d+)\.self_attn\.", r"decoder.layers.\1.self_attn."),
    (r"^sem_seg_head\.predictor\.transformer_cross_attention_layers\.(\d+)\.norm\.", r"decoder.layers.\1.norm1."),
    (r"^sem_seg_head\.predictor\.transformer_cross_attention_layers\.(\d+)\.multihead_attn\.", r"decoder.layers.\1.cross_attn."),
    (r"^sem_seg_head\.predictor\.transformer_ffn_layers\.(\d+)\.norm\.", r"decoder.layers.\1.norm3."),
    (r"^sem_seg_head\.predictor\.transformer_ffn_layers\.(\d+)\.linear", r"decoder.layers.\1.linear"),
    (r"^sem_seg_head\.predictor\.(query_feat|query_embed|level_embed)\.", r"decoder.\1."),
    (r"^sem_seg_head\.predictor\.decoder_norm\.", "decoder.head.norm."),
    (r"^sem_seg_head\.predictor\.mask_embed1\.", "decoder.head.embed_proj."),
    (r"^sem_seg_head\.predictor\.(mask_embed|pool_proj|attn_proj|bias_scaling)\.", r"decoder.head.\1."),
    (r"^sem_seg_head\.predictor\.logit_scale$", "decoder.head.logit_scale"),
    (r"^backbone\.", "sam."),
    (r"^ov_classifier\.bg_embed$", "bg_embed"),
    (r"^ov_classifier\.", "clip."),
]


def official_key_to_ours(key: str, head_start: int) -> Optional[str]:
    """Our name for an official key (None for unused keys and aliases)."""
    if key in UNUSED or key in ALIASES:
        return None
    m = re.match(r"^clip_rec_head\.resblocks\.(\d+)\.(.*)$", key)
    if m:
        key = f"clip_visual_extractor.resblocks.{head_start + int(m.group(1))}.{m.group(2)}"
    if key.startswith("clip_visual_extractor."):
        rest = key[len("clip_visual_extractor."):]
        if rest.startswith("resblocks."):
            rest = "transformer." + rest
            for pat, rep in _ATTN:
                rest = re.sub(pat, rep, rest)
        return "clip.visual." + rest
    for pat, rep in _DECODER:
        if re.search(pat, key):
            return re.sub(pat, rep, key)
    raise CheckpointError(f"official key {key!r} has no counterpart in ebseg_lite; is this an EBSeg checkpoint?")


def convert_official_state_dict(sd: Dict[str, torch.Tensor], head_start: int) -> Dict[str, torch.Tensor]:
    """Rename an official EBSeg state dict to ebseg_lite keys (aliases checked, unused dropped)."""
    out = {}
    for key, val in sd.items():
        if key in ALIASES:
            src = ALIASES[key]
            if src in sd and not torch.equal(sd[src], val):
                raise CheckpointError(f"{key} should equal {src} (the official model shares them) but differs")
            continue
        ours = official_key_to_ours(key, head_start)
        if ours is not None:
            if ours in out:
                raise CheckpointError(f"two official keys map onto {ours}")
            out[ours] = val
    return out


def load_official_state_dict(model, state_dict_or_path) -> Dict[str, List[str]]:
    """Load an official EBSeg checkpoint (a state dict or a ``.pth`` path) into a ``vit_b`` /
    ``vit_l`` model, strictly: every model weight must be provided.

    Returns ``{"missing": [], "unexpected": [], "unused": [...official keys deliberately unused]}``.
    """
    model = model if isinstance(model, nn.Module) else model.model  # an EBSegPredictor or the module
    sd = state_dict_or_path if isinstance(state_dict_or_path, dict) else read_state_dict(state_dict_or_path)
    if not any(k.startswith("sem_seg_head.") for k in sd):
        raise CheckpointError("this is not an official EBSeg state dict (no 'sem_seg_head.' keys)")
    head_start = max(model.cfg.clip.feature_blocks)
    ours = convert_official_state_dict(sd, head_start)
    own = model.state_dict()
    check_shapes(own, ours, "the official checkpoint")
    unexpected = sorted(set(ours) - set(own))
    missing = sorted(set(own) - set(ours))
    if unexpected or missing:
        raise CheckpointError(
            f"official checkpoint does not fit preset {model.cfg.preset!r}: {len(missing)} model weights missing "
            f"(e.g. {missing[:3]}), {len(unexpected)} official weights unmatched (e.g. {unexpected[:3]}). "
            "A truncated file, or EBSeg_large.pth given to vit_b (or the reverse)?")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in ours.items()}, strict=True)
    model.weights_version += 1  # cached text embeddings of the old weights are stale
    return {"missing": [], "unexpected": [], "unused": sorted(k for k in sd if k in UNUSED)}


def download_released(preset: str = "vit_b", cache_dir: Optional[str] = None) -> Path:
    """Path to EBSeg_base.pth / EBSeg_large.pth: an existing local copy (env EBSEG_CHECKPOINT_DIR
    or ``cache_dir``) or a download from the Hugging Face hub (repo slonetime/EBSeg)."""
    if preset not in RELEASED:
        raise ValueError(f"released checkpoints exist for {sorted(RELEASED)}, not {preset!r}")
    name = RELEASED[preset]
    folder = cache_dir or os.environ.get("EBSEG_CHECKPOINT_DIR")
    if folder and (Path(folder) / name).is_file():
        return Path(folder) / name
    # One short look at the hub; offline: the local cache only (no retries, no request at all).
    with cache_only_when_offline() as offline:
        try:
            from huggingface_hub import hf_hub_download
            return Path(hf_hub_download(HF_REPO, name, cache_dir=cache_dir, local_files_only=offline is not None,
                                        etag_timeout=ETAG_SECONDS))
        except Exception as e:
            error = e
    why = f"{offline}; not in the Hugging Face cache" if offline else type(error).__name__
    raise WeightsUnavailable(
        f"could not get {name} ({why}). Offline? Download "
        f"https://huggingface.co/{HF_REPO}/resolve/main/{name} on a machine with internet, put it in a folder "
        f"and set EBSEG_CHECKPOINT_DIR=/that/folder (or pass checkpoint='/path/{name}').") from None
