"""Figures over toy runs: per-mode summaries, mean and spread over seeds, the text table, the chance floor.

Used by the demo (:mod:`ebseg_lite.toyworld.experiments`), the ablations and notebook 08.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch

from ebseg_lite.eval.metrics import SemSegEvaluator
from ebseg_lite.toyworld.modes import MODES
from ebseg_lite.toyworld.world import ToyWorld


def chance_miou(dataset, *, seed: int = 0) -> Dict[str, float]:
    """The evaluator on uniformly random labels: the floor every mode should clear."""
    names = list(dataset.class_names)
    seen = ToyWorld().seen if names == ToyWorld().class_names else None
    ev = SemSegEvaluator(len(names), seen=None if seen is None else torch.tensor(seen).numpy())
    g = torch.Generator().manual_seed(seed)
    for i in range(len(dataset)):
        label = dataset[i]["label"]
        ev.update(torch.randint(len(names), label.shape, generator=g), label)
    r = ev.compute()
    return {k: float(r[k]) for k in ("mIoU", "mIoU_seen", "mIoU_new") if k in r}


def summary(results: Dict[str, dict]) -> Dict[str, Dict[str, float]]:
    return {m: {k: float(r[k]) for k in ("mIoU", "mIoU_seen", "mIoU_new")} for m, r in results.items()}


def mean_std(values: Sequence[float]) -> Dict[str, float]:
    """Mean and sample standard deviation (n - 1; 0 for a single value) of figures over seeds."""
    vals = torch.tensor(list(values), dtype=torch.float64)
    return {"mean": float(vals.mean()), "std": float(vals.std(unbiased=True)) if len(vals) > 1 else 0.0}


def spread(per_seed: List[Dict[str, Dict[str, float]]]) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Mean and standard deviation over seeds of every mode's three numbers."""
    return {m: {k: mean_std([s[m][k] for s in per_seed]) for k in per_seed[0][m]} for m in per_seed[0]}


def format_report(stats: Dict[str, Dict], seeds: Sequence[int]) -> str:
    """The toy-world tables as text: rows = ways of classifying, columns = SSC off / on."""
    lines = [f"Toy world: mIoU % over {len(seeds)} seed(s) {list(seeds)} (mean +- std); "
             "seen = classes with training masks, new = never labelled", ""]
    head = f"{'mode':18s} | {'ssc':4s} | {'all':>12s} | {'seen':>12s} | {'new':>12s}"
    lines += [head, "-" * len(head)]
    for m in MODES:
        for tag in ("no_ssc", "ssc"):
            if tag not in stats or m not in stats[tag]:
                continue
            r = stats[tag][m]
            cell = lambda k: f"{r[k]['mean']:5.1f} +- {r[k]['std']:4.1f}"
            lines.append(f"{m:18s} | {'on' if tag == 'ssc' else 'off':4s} | {cell('mIoU'):>12s} | "
                         f"{cell('mIoU_seen'):>12s} | {cell('mIoU_new'):>12s}")
    return "\n".join(lines)
