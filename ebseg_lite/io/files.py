"""Files: atomic writes, the package's two error types, and reading a state dict safely.

* Never unpickle code: ``.pth``/``.pt`` files go through ``torch.load(weights_only=True)``;
  ``.safetensors`` through safetensors. A pickle carrying code is refused with a clear message.
* Files are written atomically (temporary file in the same folder, fsync, ``os.replace``), so an
  interrupted save never leaves a half-written file where the last good one was.
"""
from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Callable, Dict

import torch


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
