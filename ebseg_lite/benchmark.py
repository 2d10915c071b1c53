"""Where inference time goes: per-stage wall-clock of ``encode`` and the cost of ``classify``.

    ebseg-lite benchmark --preset vit_b --size 640 --repeat 2 --out bench.json

Random weights are enough (the cost does not depend on the values). Reports the two frozen
encoders (CLIP at p * size, SAM at size) next to everything else, so the claim "costs little more
than its encoders" is a measured figure, not a promise. Not a test: nothing is asserted.
"""
from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Dict

import torch

from . import clip_dense, mask_attention, sam_features
from .attn_bias import pool_bias
from .mask_pool import mask_pool


def _timed(times: Dict[str, float], name: str, fn):
    t = time.perf_counter()
    out = fn()
    times[name] = times.get(name, 0.0) + time.perf_counter() - t
    return out


@torch.no_grad()
def stage_times(model, size: int = 640, repeat: int = 2) -> Dict[str, float]:
    """Mean seconds per stage over ``repeat`` runs after one warm-up run."""
    cfg = model.cfg
    img = torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8)
    blocks = tuple(cfg.clip.feature_blocks)
    total: Dict[str, float] = {}
    for r in range(repeat + 1):
        t: Dict[str, float] = {}
        clip_in, sam_in = _timed(t, "preprocess", lambda: model.preprocess(img))
        dense = _timed(t, "clip_encoder", lambda: clip_dense.dense_clip_features(
            model.clip.visual, clip_in, feature_blocks=blocks, surgery=True, surgery_start=cfg.clip.surgery_start))
        sam = _timed(t, "sam_encoder", lambda: sam_features.sam_multiscale_features(
            model.sam, sam_in, global_attn_indexes=cfg.sam.global_attn_indexes, scales=cfg.sam.scales))
        fused = _timed(t, "fusion", lambda: model.fusion(sam, [dense.feats[b] for b in blocks]))
        mf, mem = _timed(t, "pixel_decoder", lambda: model.pixel_decoder(fused))
        dec = _timed(t, "transformer_decoder", lambda: model.decoder(mem, mf))
        pooled = _timed(t, "attn_bias_pool", lambda: pool_bias(dec.attn_bias[-1], dense.grid))
        _, f = _timed(t, "mask_attention_head", lambda: mask_attention.clip_mask_attention(
            model.clip.visual, dense, pooled, start_block=blocks[-1]))
        _timed(t, "mask_pool_D", lambda: mask_pool(dec.masks[-1], f))
        if r > 0:
            for k, v in t.items():
                total[k] = total.get(k, 0.0) + v / repeat
    total["encoders"] = total["clip_encoder"] + total["sam_encoder"]
    total["encode_total"] = sum(v for k, v in total.items() if k not in ("encoders",))
    total["ratio_to_encoders"] = total["encode_total"] / total["encoders"]
    return total


def classify_times(model, size: int = 640, num_classes: int = 150) -> Dict[str, float]:
    img = torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
    enc = model.encode(img, keep_intermediates=False)
    names = [f"class {i}" for i in range(num_classes)]
    t = time.perf_counter(); model.classify(enc, names); first = time.perf_counter() - t
    t = time.perf_counter(); model.classify(enc, names, w_seen=(0.3, 0.6, 0.1)); again = time.perf_counter() - t
    return {"classify_new_vocabulary": first, "classify_cached_vocabulary": again, "num_classes": num_classes}


def run(preset: str = "vit_b", size: int = 640, repeat: int = 2, out=None) -> Dict[str, float]:
    from .builder import build_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(preset)
    res = {"preset": preset, "size": size, "threads": torch.get_num_threads(), **stage_times(model, size, repeat),
           **classify_times(model, size)}
    if out:
        Path(out).write_text(json.dumps(res, indent=1))
    return res
