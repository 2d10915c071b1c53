"""Where inference time goes: per-stage wall-clock of ``encode`` and the cost of ``classify``.

    ebseg-lite benchmark --preset vit_b --size 640 --repeat 2 --out bench.json

Random weights are enough (the cost does not depend on the values). Reports the two frozen
encoders (CLIP at p * size, SAM at size) next to everything else, so the claim "costs little more
than its encoders" is a measured figure, not a promise. Not a test: nothing is asserted.
"""
from __future__ import annotations

import contextlib
import functools
import json
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, Iterator

import torch

from ebseg_lite.builder import build_model
from ebseg_lite.io.checkpoints import module_of
from ebseg_lite.modeling import clip_dense, mask_attention, sam_features
from ebseg_lite.modeling import ebseg as ebseg_module
from ebseg_lite.modeling.ebseg import EBSeg


#: (module, function name, stage name): the functions ``EBSeg.forward_features`` calls by module
#: attribute, timed by wrapping them for the duration of a :func:`stage_timer` block.
_TIMED_FUNCTIONS = (
    (clip_dense, "dense_clip_features", "clip_encoder"),
    (sam_features, "sam_multiscale_features", "sam_encoder"),
    (mask_attention, "clip_mask_attention", "mask_attention_head"),
    (ebseg_module, "pool_bias", "attn_bias_pool"),
    (ebseg_module, "mask_pool", "mask_pool_D"),
)
#: Sub-modules of EBSeg timed with forward hooks.
_TIMED_MODULES = (("fusion", "fusion"), ("pixel_decoder", "pixel_decoder"), ("decoder", "transformer_decoder"))


@contextlib.contextmanager
def stage_timer(model: EBSeg, clock: Callable[[], float] = time.perf_counter) -> Iterator[Dict[str, float]]:
    """Seconds spent in each stage while the block runs the real ``model.forward_features``.

    Yields a dict that fills as stages run (several calls add up). Functions are wrapped and restored
    on exit; sub-modules get forward pre/post hooks, removed on exit. Nothing is re-spelled: what is
    timed is exactly what inference runs. ``clock`` is what is read at each stage's start and end:
    seconds by default; a running FLOP count gives FLOPs per stage (:func:`ebseg_lite.eval.flops.flop_counts`).
    """
    times: Dict[str, float] = {}
    saved = []

    def wrap(fn, name):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            t = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                times[name] = times.get(name, 0.0) + clock() - t
        return timed

    for mod, attr, name in _TIMED_FUNCTIONS:
        saved.append((mod, attr, getattr(mod, attr)))
        setattr(mod, attr, wrap(getattr(mod, attr), name))
    model.preprocess = wrap(model.preprocess, "preprocess")  # instance attribute shadows the method
    starts: Dict[str, float] = {}
    handles = []
    for attr, name in _TIMED_MODULES:
        sub = getattr(model, attr)
        handles.append(sub.register_forward_pre_hook(lambda m, a, name=name: starts.__setitem__(name, clock())))
        handles.append(sub.register_forward_hook(
            lambda m, a, o, name=name: times.__setitem__(name, times.get(name, 0.0) + clock() - starts[name])))
    try:
        yield times
    finally:
        for mod, attr, fn in saved:
            setattr(mod, attr, fn)
        del model.preprocess
        for h in handles:
            h.remove()


@torch.no_grad()
def stage_times(model, size: int = 640, repeat: int = 2) -> Dict[str, float]:
    """Mean seconds per stage of ``forward_features(inference=True)`` over ``repeat`` runs after one
    warm-up run, plus the whole call (``encode_total``) and what no stage accounts for (``other``)."""
    model = module_of(model)
    img = torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8)
    total: Dict[str, float] = {}
    for r in range(repeat + 1):
        with stage_timer(model) as t:
            t0 = time.perf_counter()
            model.forward_features(img, inference=True)
            t["encode_total"] = time.perf_counter() - t0
        if r > 0:
            for k, v in t.items():
                total[k] = total.get(k, 0.0) + v / repeat
    stages = [k for k in total if k != "encode_total"]
    total["other"] = total["encode_total"] - sum(total[k] for k in stages)
    # our own encoder stages; the ratio against the libraries' unmodified encoders is the suite's
    # (``ebseg-lite benchmark --suite``, :mod:`ebseg_lite.eval.benchmark_suite`)
    total["own_encoder_stages"] = total["clip_encoder"] + total["sam_encoder"]
    total["ratio_to_own_encoder_stages"] = total["encode_total"] / total["own_encoder_stages"]
    return total


def classify_times(model, size: int = 640, num_classes: int = 150) -> Dict[str, float]:
    img = torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
    enc = model.encode(img, keep_intermediates=False)
    names = [f"class {i}" for i in range(num_classes)]
    t = time.perf_counter(); model.classify(enc, names); first = time.perf_counter() - t
    t = time.perf_counter(); model.classify(enc, names, w_seen=(0.3, 0.6, 0.1)); again = time.perf_counter() - t
    return {"classify_new_vocabulary": first, "classify_cached_vocabulary": again, "num_classes": num_classes}


def run(preset: str = "vit_b", size: int = 640, repeat: int = 2, out=None) -> Dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(preset)
    res = {"preset": preset, "size": size, "threads": torch.get_num_threads(), **stage_times(model, size, repeat),
           **classify_times(model, size)}
    if out:
        Path(out).write_text(json.dumps(res, indent=1))
    return res
