"""Optimiser, schedule and clipping of the official recipe (Mask2Former / detectron2 conventions).

* AdamW, weight decay 0.05, with the official exemptions (``train_net.py: build_optimizer`` and
  ``ebseg/config.py`` of slonetime/EBSeg): a trainable parameter gets 0 when

  - its module is one of torch's normalisation classes (``NORM_TYPES``: BatchNorm, SyncBatchNorm,
    GroupNorm, InstanceNorm, LayerNorm, LocalResponseNorm), or an ``nn.Embedding``
    (the decoder's queries and level embeddings), or
  - its own name contains one of ``EMBED_NAMES`` (CLIP's ``positional_embedding``, SAM's
    ``pos_embed``, ``query_embed``, ...).

  Everything else is decayed -- among it the fusion's channels-first LayerNorm (the official
  code's own ``LayerNorm`` class is not among the norm types; ebseg_lite uses segment-anything's
  ``LayerNorm2d``, equally not a torch norm), the pixel decoder's ``level_embed``, the background
  embedding and the scale s of A. ``rule="all_norms"`` is the alternative that also exempts
  ``LayerNorm2d`` (what the official code presumably meant).
* Poly schedule: ``lr_t = lr * (1 - t / max_iters) ** 0.9`` (detectron2's ``WarmupPolyLR``, no warm-up).
* Gradient clipping by the L2 norm of all gradients together ("full_model", 0.01).
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import nn

from ebseg_lite.modeling.fusion import LayerNorm2d

#: torch's normalisation classes as the official ``build_optimizer`` lists them.
NORM_TYPES: Tuple[type, ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm,
                                nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm,
                                nn.LocalResponseNorm)
#: ``cfg.SOLVER.WEIGHT_DECAY_EMBED_GROUP``: substrings of a parameter's own name that exempt it.
EMBED_NAMES: Tuple[str, ...] = ("absolute_pos_embed", "positional_embedding", "pos_embed", "query_embed",
                                "relative_position_bias_table")
WEIGHT_DECAY_RULES = ("official", "all_norms")


def _exempt(module: nn.Module, pname: str, rule: str) -> bool:
    norms = NORM_TYPES + ((LayerNorm2d,) if rule == "all_norms" else ())
    return (isinstance(module, norms) or isinstance(module, nn.Embedding)
            or any(s in pname for s in EMBED_NAMES))


def no_decay_names(model: nn.Module, rule: str = "official") -> List[str]:
    """Names of the trainable parameters that get no weight decay under ``rule`` (module doc)."""
    if rule not in WEIGHT_DECAY_RULES:
        raise ValueError(f"weight-decay rule must be one of {WEIGHT_DECAY_RULES}, got {rule!r}")
    names, memo = [], set()
    for mname, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in memo:
                continue
            memo.add(id(p))
            if _exempt(module, pname, rule):
                names.append(f"{mname}.{pname}" if mname else pname)
    return names


def param_groups(model: nn.Module, weight_decay: float, rule: str = "official") -> List[Dict]:
    """Two AdamW groups, each trainable parameter once: decayed and not decayed (module doc)."""
    skip = set(no_decay_names(model, rule))
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if name in skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay, "name": "decay"},
            {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}]


def build_optimizer(model: nn.Module, *, lr: float, weight_decay: float, betas=(0.9, 0.999),
                    rule: str = "official") -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, weight_decay, rule), lr=lr, betas=tuple(betas))


def poly_factor(step: int, max_iters: int, power: float = 0.9) -> float:
    """Multiplier of the base lr at ``step`` (0-based): ``(1 - step / max_iters) ** power``."""
    return max(0.0, 1.0 - step / max_iters) ** power


def build_scheduler(optimizer: torch.optim.Optimizer, *, max_iters: int, power: float = 0.9):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: poly_factor(step, max_iters, power))


def clip_gradients(params, max_norm: float) -> torch.Tensor:
    """Clip the L2 norm of all gradients together to ``max_norm`` (0 = only measure). Returns the norm before."""
    params = [p for p in params if p.grad is not None]
    if not params:
        return torch.zeros(())
    if max_norm > 0:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad.detach().float()) for p in params]))
