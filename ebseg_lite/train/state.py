"""Resumable training state: one file per checkpoint, written atomically, read without unpickling code.

A checkpoint holds the trainable weights (the new modules and the two positional embeddings; the frozen
CLIP and SAM come from their own pretrained files), the optimiser, scheduler and gradient-scaler states,
the RNG states, the step, and both configs (model and training) as JSON. It is written with
``torch.save`` to a temporary file and renamed over the old one (``atomic_write``), so a crash while
saving leaves the previous checkpoint intact, and it is read with ``torch.load(weights_only=True)``.

Layout of ``out_dir``: ``last.pt`` (newest), ``step_0005000.pt`` ... (the newest ``keep`` of them),
``model.safetensors`` (final trainable weights, loadable by ``build_model(checkpoint=...)``).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, Optional

import torch

from ebseg_lite.io.files import CheckpointError, atomic_write

FORMAT = "ebseg_lite-train-1"
_NUMBERED = re.compile(r"^step_(\d{7,})\.pt$")


def rng_state() -> Dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state(model) -> Dict[str, torch.Tensor]:
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k in names}


def save_state(path, *, model, optimizer, scheduler, scaler, step: int, train_cfg, extra: Optional[Dict] = None) -> Path:
    """Write the whole training state atomically to ``path``."""
    state = {
        "format": FORMAT,
        "step": int(step),
        "model": trainable_state(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
        "rng": rng_state(),
        "model_config": json.dumps(model.cfg.to_dict(), sort_keys=True),
        "train_config": train_cfg.to_json(),
        "extra": json.dumps(extra or {}),
    }
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def read_state(path) -> Dict:
    """Read a training checkpoint safely; a clear :class:`CheckpointError` for anything wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no training checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, corrupt, or a pickle that names code
        raise CheckpointError(f"training checkpoint {path} is corrupt or unsafe and was not loaded "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}); "
                              "it was left untouched. Resume from an older step_*.pt with --resume PATH, "
                              "or start a new run in another --out folder.") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an ebseg_lite training checkpoint (format "
                              f"{state.get('format') if isinstance(state, dict) else type(state).__name__!r}, "
                              f"expected {FORMAT!r})")
    return state


# Training-config fields that may differ on resume (bookkeeping, not the run's mathematics).
RESUMABLE_CHANGES = {"max_iters", "out_dir", "log_every", "ckpt_every", "keep_checkpoints", "tensorboard",
                     "device", "num_workers", "data_root"}


def check_compatible(state: Dict, model, train_cfg, path) -> None:
    """Refuse a checkpoint made for another model or recipe (saying which fields differ)."""
    mine = json.loads(json.dumps(model.cfg.to_dict(), sort_keys=True))  # tuples -> lists, as saved
    theirs = json.loads(state["model_config"])
    diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if diff:
        raise CheckpointError(f"{path} was made for another model configuration (differs in {diff}); "
                              "resume with the same --preset and model options, or start a new run")
    t_mine, t_theirs = json.loads(train_cfg.to_json()), json.loads(state["train_config"])
    t_diff = sorted(k for k in set(t_mine) | set(t_theirs)
                    if k not in RESUMABLE_CHANGES and json.dumps(t_mine.get(k)) != json.dumps(t_theirs.get(k)))
    if t_diff:
        raise CheckpointError(f"{path} was made with another training recipe (differs in {t_diff}); only "
                              f"{sorted(RESUMABLE_CHANGES)} may change on resume")
    own = {n: p.shape for n, p in model.named_parameters() if p.requires_grad}
    saved = {k: v.shape for k, v in state["model"].items()}
    if own != saved:
        missing, extra = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
        shape = sorted(k for k in set(own) & set(saved) if own[k] != saved[k])
        raise CheckpointError(f"{path} does not fit this model's trainable weights: missing {missing[:3]}, "
                              f"unexpected {extra[:3]}, other shapes {shape[:3]}")


def load_state(path, *, model, optimizer, scheduler, scaler, train_cfg) -> Dict:
    """Restore everything saved by :func:`save_state`; returns the raw state (``step`` etc.)."""
    state = read_state(path)
    check_compatible(state, model, train_cfg, path)
    model.load_state_dict(state["model"], strict=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    return state


def numbered_checkpoints(out_dir) -> Dict[int, Path]:
    out = {}
    for p in Path(out_dir).glob("step_*.pt"):
        m = _NUMBERED.match(p.name)
        if m:
            out[int(m.group(1))] = p
    return dict(sorted(out.items()))


def prune_checkpoints(out_dir, keep: int) -> None:
    """Delete all but the newest ``keep`` numbered checkpoints (``last.pt`` is never touched)."""
    ckpts = numbered_checkpoints(out_dir)
    for step in list(ckpts)[:-keep] if keep > 0 else list(ckpts):
        ckpts[step].unlink(missing_ok=True)
