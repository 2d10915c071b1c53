"""Optimiser, schedule and clipping of the official recipe (Mask2Former / detectron2 conventions).

* AdamW; weight decay 0.05 except on normalisation layers, ``nn.Embedding`` tables (queries, level
  embeddings) and positional embeddings (CLIP's ``positional_embedding``, SAM's ``pos_embed``), which
  get 0 (detectron2's ``WEIGHT_DECAY_NORM`` / ``WEIGHT_DECAY_EMBED`` = 0 plus the positional rule).
* Poly schedule: ``lr_t = lr * (1 - t / max_iters) ** 0.9`` (detectron2's ``WarmupPolyLR``, no warm-up).
* Gradient clipping by the L2 norm of all gradients together ("full_model", 0.01).
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import nn

from ebseg_lite.modeling.fusion import LayerNorm2d

NORM_TYPES: Tuple[type, ...] = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
                                nn.SyncBatchNorm, nn.InstanceNorm2d, nn.LocalResponseNorm, LayerNorm2d)
POSITIONAL_NAMES: Tuple[str, ...] = ("positional_embedding", "pos_embed")


def no_decay_names(model: nn.Module) -> List[str]:
    """Names of the trainable parameters that get no weight decay."""
    names = []
    for mname, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            full = f"{mname}.{pname}" if mname else pname
            if isinstance(module, NORM_TYPES) or isinstance(module, nn.Embedding) or pname in POSITIONAL_NAMES:
                names.append(full)
    return names


def param_groups(model: nn.Module, weight_decay: float) -> List[Dict]:
    """Two AdamW groups, each parameter once: decayed and not decayed (see module doc)."""
    skip = set(no_decay_names(model))
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if name in skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay, "name": "decay"},
            {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}]


def build_optimizer(model: nn.Module, *, lr: float, weight_decay: float, betas=(0.9, 0.999)) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=tuple(betas))


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
