"""Is A's open-vocabulary cost a shift along the seen texts' mean? A measured ablation (answer: no).

A is trained with a softmax over the seen names and the background (paper section 3.4). Let ``m`` be
the unit mean of the seen classes' text embeddings. Adding ``c * m`` to A moves the logit of a class k
by ``scale * c * (t_k . m)``: for the seen classes nearly the same amount (``t_k . m`` spans 0.60 to 0.82
in the toy world), and a softmax does not see a common shift, so training leaves ``c`` almost free.
At test time the new names compete too; a new name whose words never occur in a seen name tends to lie
less along ``m`` (0.68 to 0.74 for "purple ..." and "... zigzag", 0.71 to 0.82 for the seen things), so
a negative ``c`` would hand seen regions to new names. On one toy seed (3, the fusion balanced, 1000
steps) A's embeddings do carry ``c`` = -0.2 and A gives whole seen classes to new names (red solid to
"purple dotted"), so the question is worth asking.

:func:`offset_ablation` answers it: it classifies every region with A as trained and with A's
component along ``m`` removed (:func:`remove_offset`, norms kept) or set to other levels
(:func:`set_offset`), on the same encodings. The functions here are analysis, not part of EBSeg: the
model and its predictor never call them.

    python -m ebseg_lite.toyworld.text_offset CHECKPOINT [CHECKPOINT ...] [--scenes 300] [--levels=-0.3,0,0.3,0.6]
"""
from __future__ import annotations

import argparse
import copy
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F

from ebseg_lite.eval.metrics import SemSegEvaluator
from ebseg_lite.toyworld.modes import MODES
from ebseg_lite.toyworld.world import ToyWorld


def variant_name(level: float) -> str:
    """The name of A with its offset set to ``level`` in :func:`offset_ablation`'s result ("A centred" at 0)."""
    return "A centred" if level == 0 else f"A at offset {level:+.2f}"


def seen_text_direction(text: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """``m``: the unit mean of the seen classes' text embeddings. (K, C), (K,) bool -> (C,)."""
    if not bool(seen.any()):
        raise ValueError("seen_text_direction needs at least one seen class")
    return F.normalize(text[seen].mean(0), dim=0)


def text_offset(embeds: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """``c``: the cosine of each embedding with ``direction``. (N, C), (C,) -> (N,)."""
    return F.normalize(embeds, dim=-1) @ direction


def set_offset(embeds: torch.Tensor, direction: torch.Tensor, level: float) -> torch.Tensor:
    """Each embedding turned in the plane of itself and the unit ``direction`` until its cosine with the
    direction is ``level``, its norm kept (A keeps its learned scale s); the part orthogonal to the
    direction keeps its direction. (N, C), (C,), level in (-1, 1) -> (N, C)."""
    if not -1 < level < 1:
        raise ValueError(f"level must lie strictly between -1 and 1, got {level}")
    flat = F.normalize(embeds - (embeds @ direction)[..., None] * direction, dim=-1)
    return (flat * (1 - level ** 2) ** 0.5 + level * direction) * embeds.norm(dim=-1, keepdim=True)


def remove_offset(embeds: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Each embedding without its component along the unit ``direction``, norm kept: ``set_offset`` at 0."""
    return set_offset(embeds, direction, 0.0)


@torch.no_grad()
def offset_ablation(predictor, dataset=None, *, levels: Sequence[float] = (0.0,), mode: Optional[dict] = None,
                    limit: Optional[int] = None, progress: bool = False) -> Dict[str, dict]:
    """Seen / new mIoU of A as trained and of A with its offset along ``m`` set to each of ``levels``
    (0: A centred), all on the same encodings; and A's own offset.

    Args:
        predictor: an :class:`~ebseg_lite.inference.predictor.EBSegPredictor`.
        dataset: default the demo's 300 benchmark scenes (seed 99). Any benchmark works (its seen mask
            by the predictor's rule); for the toy world's names the world's own split is used.
        mode: the classify keywords of A alone (default :data:`~ebseg_lite.toyworld.modes.MODES` "A").
        limit: score only the first ``limit`` images.
    Returns:
        ``{"A": metrics, variant_name(level): metrics for each level, "offset": mean c over every query of
        every image, "offset_std": its spread}``, metrics as :meth:`SemSegEvaluator.compute` gives them.
    """
    from ebseg_lite.toyworld.experiments import held_out_scenes
    from tqdm.auto import tqdm
    dataset = held_out_scenes(300) if dataset is None else dataset
    world = ToyWorld()
    names = list(dataset.class_names)
    seen = predictor.resolve_seen(names, world.seen if names == world.class_names else None)
    m = seen_text_direction(predictor.text_embeddings(names), seen)
    mode = MODES["A"] if mode is None else mode
    variants = {"A": None, **{variant_name(float(l)): float(l) for l in levels}}
    evs = {v: SemSegEvaluator(len(names), ignore_index=getattr(dataset, "ignore_value", 255), seen=seen.numpy())
           for v in variants}
    offsets = []
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for i in tqdm(range(n), desc="offset ablation", disable=not progress):
        item = dataset[i]
        enc = predictor.encode(item["image"], keep_intermediates=False)
        offsets.append(text_offset(enc.A, m.to(enc.A)))
        for v, level in variants.items():
            e = enc
            if level is not None:
                e = copy.copy(enc)
                e.A = set_offset(enc.A, m.to(enc.A), level)
            evs[v].update(predictor.classify(e, names, seen=seen, **mode).labels.cpu(), item["label"])
    c = torch.cat(offsets)
    out = {v: ev.compute() for v, ev in evs.items()}
    out.update(offset=float(c.mean()), offset_std=float(c.std()) if c.numel() > 1 else 0.0)
    return out


def format_rows(results: Dict[str, dict]) -> str:
    """One line per checkpoint: A's offset, then seen / new mIoU of A and of each variant."""
    variants = [k for k in next(iter(results.values())) if k.startswith("A")]
    width = max(len(v) for v in variants) + 9
    lines = [f"{'checkpoint':<40} {'offset':>7} | " + " | ".join(f"{v + ' seen/new':>{width}}" for v in variants)]
    for name, r in results.items():
        pair = lambda v: f"{r[v]['mIoU_seen']:.1f} / {r[v]['mIoU_new']:.1f}"
        label = name[:-len("/model.safetensors")] if name.endswith("/model.safetensors") else name
        lines.append(f"{label[-40:]:<40} {r['offset']:>7.3f} | " + " | ".join(f"{pair(v):>{width}}" for v in variants))
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, dict]:
    ap = argparse.ArgumentParser(prog="python -m ebseg_lite.toyworld.text_offset", description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+", help="toy EBSeg-lite weights (model.safetensors of a toy run)")
    ap.add_argument("--scenes", type=int, default=300, help="benchmark scenes (seed 99), as the demo's")
    ap.add_argument("--levels", default="0", help="comma-separated offsets to set A to (0: centred), "
                    "e.g. --levels=-0.3,0,0.6 (with \"=\" before a minus)")
    args = ap.parse_args(argv)
    try:
        levels = [float(x) for x in args.levels.split(",")]
    except ValueError:
        ap.error(f"--levels takes comma-separated numbers, got {args.levels!r}")
    if not all(-1 < level < 1 for level in levels):
        ap.error(f"--levels must lie strictly between -1 and 1, got {args.levels!r}")
    from ebseg_lite.builder import build_model
    from ebseg_lite.toyworld.experiments import held_out_scenes
    data = held_out_scenes(args.scenes)
    results = {}
    for path in args.checkpoints:
        predictor = build_model("toy", checkpoint=path)
        predictor.train_class_names = ToyWorld().seen_names
        results[path] = offset_ablation(predictor, data, levels=levels, progress=True)
    print(format_rows(results))
    return results


if __name__ == "__main__":
    main()
