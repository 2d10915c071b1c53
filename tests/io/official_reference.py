"""Rebuild the official EBSeg-B state dict of ``../shared/reference`` from its JSON rule.

Test data support, not part of the package: the reference files were produced by running the
official code with weights made by this deterministic rule (see the reference README).
"""
from __future__ import annotations

import json
import math
import zlib
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch

REFERENCE_DIR = Path(__file__).resolve().parents[3] / "shared" / "reference"


def reference_dir() -> Optional[Path]:
    """The shared reference folder, or None when it is absent (e.g. on a user's machine)."""
    d = REFERENCE_DIR
    ok = (d / "ebseg_b_state_dict.json").is_file() and (d / "ebseg_b_public.npz").is_file()
    return d if ok else None


def rule_tensor(key: str, shape, salt: str = "", factors: Optional[dict] = None) -> np.ndarray:
    seed = zlib.crc32((salt + key).encode("utf-8")) & 0xFFFFFFFF
    z = np.random.RandomState(seed).standard_normal(shape).astype(np.float32)
    if key.endswith("bias"):
        w = np.float32(0.02) * z
    elif len(shape) == 1:
        w = np.float32(1.0) + np.float32(0.02) * z
    else:
        w = z / np.float32(math.sqrt(int(np.prod(shape[1:]))))
    for sub, f in (factors or {}).items():
        if sub in key:
            w = w * np.float32(f)
    return w.astype(np.float32)


def official_state_dict(json_path: Path, salt: str = "") -> Dict[str, torch.Tensor]:
    """Every parameter of the official state dict, made by the rule (aliases share tensors).
    Buffers are left out: the converter ignores them."""
    spec = json.loads(Path(json_path).read_text())
    sd: Dict[str, torch.Tensor] = {}
    for e in spec["keys"]:
        if e["kind"] != "param":
            continue
        key, shape = e["key"], tuple(e["shape"])
        if e["init"] == "rule":
            sd[key] = torch.from_numpy(rule_tensor(key, shape, salt, spec.get("factors")))
        elif e["init"] == "keep":
            sd[key] = torch.tensor(e["value"], dtype=torch.float32).reshape(shape)
        elif e["init"] == "alias":
            sd[key] = sd[e["alias_of"]]
        else:
            raise ValueError(f"unknown init {e['init']!r} for {key}")
    return sd
