"""How loud each addend of eq. 1 is in the toy world, and what quieting SAM's does to A.

EBSeg's fusion (paper eq. 1, :mod:`ebseg_lite.modeling.fusion`) adds SAM's raw residual stream to a
LayerNorm-ed CLIP grid through a freshly initialised 1x1 conv. SAM never sees its residual stream's
scale (its neck is a bias-free conv and a LayerNorm), so the scale is whatever pretraining left: the
toy SAM's is 32 to 52 times the CLIP term's at initialisation (the toy SAM shipped before 2026-12-07:
17 to 20), so at scale 1 the fused features the decoder learns from are mostly SAM's, which knows no
class. :func:`addend_table` measures it; :func:`balanced_scale` gives the SAM scale that puts both
addends at the same RMS at initialisation, which the ``toy`` preset uses (0.025,
``presets.TOY_SAM_FEATURE_SCALE``; the official code: 1); ``ebseg-lite toyworld demo --sam-feature-scale
S`` trains and evaluates at another; :func:`collect` keeps the figures of such runs
(``data_samples/toyworld/fusion_scale.json``, notebook 02, section 5).

    ebseg-lite toyworld fusion-scale                                   # the addends' RMS, the balanced scale
    ebseg-lite toyworld fusion-scale --reports R1 R2 --out FILE        # + the figures of finished demo runs
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from ebseg_lite.builder import build_model
from ebseg_lite.io.checkpoints import checkpoint_metadata, saved_sam_scale
from ebseg_lite.io.files import atomic_write
from ebseg_lite.modeling.fusion import FUSED, addend_rms
from ebseg_lite.toyworld.world import ToyWorld

#: what the shipped summary keeps of each mode, and which modes
KEPT_MODES = ("A", "B", "D", "B+D", "A+B+D official")


def addend_table(model=None, *, n_scenes: int = 16, seed: int = 5, checkpoint: Optional[str] = None) -> Dict:
    """RMS of eq. 1's two addends per fused level on ``n_scenes`` toy training scenes (drawn from ``seed``).

    Args:
        model: an EBSeg ``nn.Module``; default: the ``toy`` preset, from ``checkpoint`` when given (at the
            SAM scale it was trained with), else freshly initialised (the fusion as training starts).
    Returns:
        ``{"res3": {"sam": .., "clip": ..}, .., "sam_scale": the model's scale}``.
    """
    if model is None:   # a checkpoint brings the SAM scale it was trained with (build_model reads it)
        model = (build_model("toy", checkpoint=checkpoint) if checkpoint else build_model("toy")).model
    data = ToyWorld().dataset(n_scenes, seed=seed, split="train", size=128)
    images = torch.stack([data[i]["image"] for i in range(n_scenes)])
    was_training = model.training
    model.eval()
    with torch.no_grad():
        frozen = model.frozen_features(images, inference=False)
    model.train(was_training)
    table = addend_rms(model.fusion, frozen["sam"], [frozen["dense"].feats[b] for b in model.cfg.clip.feature_blocks])
    return {**table, "sam_scale": model.fusion.sam_scale}


def balanced_scale(table: Dict) -> float:
    """The SAM scale that gives both addends the same RMS, from a table measured at scale ``table["sam_scale"]``:
    the mean over the fused levels of ``clip / sam``, times that scale."""
    ratios = [table[k]["clip"] / table[k]["sam"] for k in FUSED]
    return table["sam_scale"] * sum(ratios) / len(ratios)


def format_table(table: Dict) -> str:
    scale = table["sam_scale"]
    lines = [f"{'level':6s} {'SAM term':>9s} {'CLIP term':>10s} {'SAM / CLIP':>11s} {'at scale 1':>11s}   (RMS; SAM scale {scale:g})"]
    for k in FUSED:
        s, c = table[k]["sam"], table[k]["clip"]
        lines.append(f"{k:6s} {s:9.3f} {c:10.3f} {s / c:11.2f} {s / c / scale:11.1f}")
    return "\n".join(lines)


def trained_scale(folder) -> float:
    """The SAM scale a demo report's models were trained at, as their weights files saved it
    (:func:`~ebseg_lite.io.checkpoints.saved_sam_scale`; the preset's default has changed, so a report's
    overrides alone do not tell it); every run must agree."""
    scales = {saved_sam_scale(checkpoint_metadata(f)) for f in sorted(Path(folder).glob("runs/*/model.safetensors"))}
    if len(scales) != 1:
        raise ValueError(f"{folder}: expected the runs of one SAM scale under runs/, found {sorted(scales) or 'none'}")
    return float(scales.pop())


def _summary(metrics: Dict, sam_scale: float) -> Dict:
    """The part of a demo's ``metrics.json`` the shipped file keeps, with the SAM scale it was trained at."""
    keep = {tag: {m: stats[m] for m in KEPT_MODES} for tag, stats in metrics["stats"].items()}
    per_seed = {tag: [{"seed": r["seed"], **{m: r["summary"][m] for m in KEPT_MODES}} for r in rows]
                for tag, rows in metrics["per_seed"].items()}
    return {"run": metrics["run"], "sam_scale": sam_scale, "model_overrides": metrics.get("model_overrides") or {},
            "seeds": metrics["seeds"],
            "stats": keep, "per_seed": per_seed, "readings": metrics.get("readings", []),
            "affinity_gap": metrics.get("affinity_gap"), "seconds": metrics["seconds"]}


def collect(reports: Sequence, *, table: Optional[Dict] = None, measured_on: str = "a fresh fusion", out=None) -> Dict:
    """Gather finished ``toyworld demo`` report folders into one summary (written to ``out`` when given),
    with ``table`` (:func:`addend_table`) and what it was measured on (a fresh fusion or a checkpoint)."""
    runs: List[Dict] = []
    for folder in reports:
        metrics = json.loads((Path(folder) / "metrics.json").read_text())
        runs.append(_summary(metrics, trained_scale(folder)))
    result = {"addends": table, "addends_measured_on": measured_on if table else None,
              "balanced_scale": balanced_scale(table) if table else None, "runs": runs}
    if out is not None:
        atomic_write(Path(out), lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1)))
    return result


def format_runs(result: Dict) -> str:
    """One line per run and mode: seen / new mIoU with SSC (mean +- std), and A's lead on seen classes."""
    lines = []
    for r in result["runs"]:
        scale = r["sam_scale"]
        st = r["stats"]["ssc"]
        lines.append(f"{r['run']['steps']} steps x {r['run']['batch_size']}, SAM scale {scale:g}, SSC on, "
                     f"seeds {r['seeds']} ({r['seconds']:.0f} s):")
        for m in KEPT_MODES:
            s, n = st[m]["mIoU_seen"], st[m]["mIoU_new"]
            lines.append(f"  {m:16s} seen {s['mean']:5.1f} +- {s['std']:4.1f}   new {n['mean']:5.1f} +- {n['std']:4.1f}")
        premise = next((x for x in r["readings"] if x["claim"].startswith("A is the best")), None)
        if premise:
            lines.append(f"  A the best on seen classes: {'yes' if premise['holds'] else 'no'} ({premise['figures']}; "
                         f"{premise.get('seeds_holding', '?')} seeds)")
    return "\n".join(lines)


def load(path) -> Dict:
    return json.loads(Path(path).read_text())


__all__ = ["addend_table", "balanced_scale", "format_table", "collect", "format_runs", "load", "trained_scale", "KEPT_MODES"]
