"""FLOP counts of ``encode`` and of the two library encoders: the floor a speed ratio is read against.

PyTorch's ``FlopCounterMode`` counts matrix products, convolutions and attention (a multiply-add = 2
FLOP; element-wise work and softmax are not counted; the CPU fused attention kernel, which it does not
know, is added here). If our stages ran at the libraries' own GFLOP/s, the time ratio encode / (CLIP +
SAM) would equal the count ratio: a time ratio near the count ratio means the remaining cost is
arithmetic the official computation does, not overhead.

    from ebseg_lite.eval.flops import flop_counts, gflop_per_second
    counts = flop_counts(predictor.model, visual, sam, clip_size, 640)   # encoders: benchmark_suite.library_encoders
"""
from __future__ import annotations

import contextlib
import math
from typing import Dict, Mapping

import torch
from torch.utils.flop_counter import FlopCounterMode

from ebseg_lite.eval.benchmark import stage_timer


@contextlib.contextmanager
def _countable(*modules: torch.nn.Module):
    """Inside the block: ``requires_grad`` off (the counter's module tracker would hook autograd on the
    parameters) and ``nn.MultiheadAttention``'s fused inference fast path off (one native op the
    counter does not see: open_clip's blocks would count their MLPs only); both restored after. The
    arithmetic is the same either way."""
    flags = [(p, p.requires_grad) for m in modules for p in m.parameters()]
    fastpath = torch.backends.mha.get_fastpath_enabled()
    for p, _ in flags:
        p.requires_grad_(False)
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        for p, f in flags:
            p.requires_grad_(f)


def _sdpa_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOP of PyTorch's CPU fused attention (``q k^T`` then ``p v``), which the counter does not know."""
    *batch, s_q, d = query_shape
    s_k, d_v = key_shape[-2], value_shape[-1]
    return 2 * math.prod(batch) * s_q * s_k * (d + d_v)


def _counter() -> FlopCounterMode:
    extra = {}
    if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
        extra[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = _sdpa_cpu_flop
    return FlopCounterMode(display=False, custom_mapping=extra)


def _gflop(fn) -> float:
    counter = _counter()
    with counter:
        fn()
    return counter.get_total_flops() / 1e9


@torch.no_grad()
def flop_counts(model, visual: torch.nn.Module, sam: torch.nn.Module, clip_size: int, size: int) -> Dict[str, float]:
    """GFLOP of one run of the library CLIP (``visual`` at ``clip_size``), the library SAM (``sam`` at
    ``size``) and ``model.forward_features`` on a ``size`` x ``size`` image, with ``stage_<name>`` per
    stage (:func:`stage_timer` reading the running count as its clock), and ``ratio`` =
    encode / (lib_clip + lib_sam). Counts do not depend on the weights' values."""
    model = model.eval()
    img = torch.zeros(1, 3, size, size, dtype=torch.uint8)
    counts: Dict[str, float] = {}
    with _countable(model, visual, sam):
        counts["lib_clip"] = _gflop(lambda: visual(torch.zeros(1, 3, clip_size, clip_size)))
        counts["lib_sam"] = _gflop(lambda: sam(torch.zeros(1, 3, size, size)))
        counter = _counter()
        with counter, stage_timer(model, clock=lambda: counter.get_total_flops() / 1e9) as stages:
            model.forward_features(img, inference=True)
        counts["encode"] = counter.get_total_flops() / 1e9
    counts.update({f"stage_{k}": v for k, v in stages.items()})
    counts["ratio"] = counts["encode"] / (counts["lib_clip"] + counts["lib_sam"])
    return counts


def gflop_per_second(counts: Mapping[str, float], seconds: Mapping[str, float]) -> Dict[str, float]:
    """Achieved GFLOP/s for every figure present in both (``seconds`` values: numbers or
    ``{"median": ...}`` spreads; a zero time is left out)."""
    med = lambda v: v["median"] if isinstance(v, Mapping) else v
    return {k: counts[k] / med(seconds[k]) for k in counts
            if k != "ratio" and k in seconds and med(seconds[k]) > 0}
