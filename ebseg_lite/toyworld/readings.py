"""What a toy run shows of the paper: each of EBSeg's claims about the embeddings, read off the run's own figures.

The demo (:func:`ebseg_lite.toyworld.experiments.run_demo`) writes these readings into ``metrics.json``
("readings") and under its table, so a reader sees at once which of the paper's effects their run
reproduces, with the numbers that decide it. Every reading compares means over the training seeds
(the h-mean is taken per seed, then averaged) and says on how many seeds it holds.

The claims (EBSeg, CVPR 2024; ADE20K-150, ViT-B):
* the premise of balancing: A, trained on the seen classes, is the best single embedding on them and
  the worst on new ones;
* table 3: B is the strongest single embedding (29.0 against D 19.7 and A 17.7, all classes);
* eq. 8-14 / table 4: the balanced result beats every single embedding, and balancing raises seen and
  new mIoU over the same weights for every class (39.5 / 20.5 -> 40.3 / 21.6);
* table 6 (seen / new with and without SSC; table 5 gives SSC on A's last output +0.8 mIoU over all
  classes): SSC raises new-class mIoU; here a gain counts only beyond the spread over seeds.
"""
from __future__ import annotations

from typing import Dict, List, Optional

from ebseg_lite.toyworld.stats import mean_std

Summary = Dict[str, Dict[str, float]]   # mode -> {"mIoU", "mIoU_seen", "mIoU_new"}
SINGLE = ("A", "B", "D")
BALANCED = "A+B+D official"


def harmonic(seen: float, new: float) -> float:
    """Harmonic mean of seen and new mIoU (0 when either is 0)."""
    return 0.0 if seen <= 0 or new <= 0 else 2 * seen * new / (seen + new)


def _mean(values: List[float]) -> float:
    return mean_std(values)["mean"]


def _std(values: List[float]) -> float:
    return mean_std(values)["std"]


def _per_seed(runs: List[Summary], mode: str, key: str) -> List[float]:
    if key == "hmean":
        return [harmonic(r[mode]["mIoU_seen"], r[mode]["mIoU_new"]) for r in runs]
    return [r[mode][key] for r in runs]


def _best(runs: List[Summary], key: str, *, lowest: bool = False) -> Dict[str, object]:
    """Which single embedding has the highest (or lowest) mean of ``key`` over the seeds."""
    means = {m: _mean(_per_seed(runs, m, key)) for m in SINGLE}
    return {"means": means, "winner": (min if lowest else max)(means, key=means.get)}


def _reading(claim: str, paper: str, holds: bool, figures: str, seeds: Optional[List[bool]] = None) -> dict:
    out = {"claim": claim, "paper": paper, "holds": bool(holds), "figures": figures}
    if seeds is not None:
        out["seeds_holding"] = f"{sum(seeds)} of {len(seeds)}"
    return out


def paper_readings(ssc: List[Summary], no_ssc: Optional[List[Summary]] = None) -> List[dict]:
    """The paper's claims about A, B, D and balancing, read off a run's per-seed summaries.

    Args:
        ssc: per training seed, the summary of every mode with SSC on (the official setting).
        no_ssc: the same without SSC, for table 6's reading (left out when None).
    Returns:
        one dict per claim: "claim", "paper" (its figures), "holds" (on the seed means), "figures"
        (this run's), and "seeds_holding" ("k of n").
    """
    if not ssc:
        raise ValueError("paper_readings needs at least one seed's summary")
    missing = [m for m in SINGLE + (BALANCED, "A+B+D unbalanced") if m not in ssc[0]]
    if missing:
        raise ValueError(f"the summaries lack the modes {missing}")
    fmt = lambda means: ", ".join(f"{m} {v:.1f}" for m, v in means.items())
    out = []
    seen = _best(ssc, "mIoU_seen")
    out.append(_reading("A is the best single embedding on seen classes", "the premise of balancing",
                        seen["winner"] == "A", "seen mIoU " + fmt(seen["means"]),
                        [r["A"]["mIoU_seen"] > max(r["B"]["mIoU_seen"], r["D"]["mIoU_seen"]) for r in ssc]))
    new = _best(ssc, "mIoU_new", lowest=True)
    out.append(_reading("A is the worst single embedding on new classes", "the premise of balancing",
                        new["winner"] == "A", "new mIoU " + fmt(new["means"]),
                        [r["A"]["mIoU_new"] < min(r["B"]["mIoU_new"], r["D"]["mIoU_new"]) for r in ssc]))
    allc = _best(ssc, "mIoU")
    out.append(_reading("B is the strongest single embedding", "table 3: B 29.0, D 19.7, A 17.7 (all classes)",
                        allc["winner"] == "B", "all-class mIoU " + fmt(allc["means"]),
                        [r["B"]["mIoU"] > max(r["A"]["mIoU"], r["D"]["mIoU"]) for r in ssc]))
    h = {m: _per_seed(ssc, m, "hmean") for m in SINGLE + (BALANCED,)}
    best_single = max(SINGLE, key=lambda m: _mean(h[m]))
    out.append(_reading("the balanced result beats every single embedding on the h-mean of seen and new",
                        "table 3: A+B+D 30.0 above A 17.7, B 29.0, D 19.7 (all classes)",
                        _mean(h[BALANCED]) > _mean(h[best_single]),
                        f"h-mean {BALANCED} {_mean(h[BALANCED]):.1f}, " + fmt({m: _mean(h[m]) for m in SINGLE}),
                        [h[BALANCED][i] > max(h[m][i] for m in SINGLE) for i in range(len(ssc))]))
    seen_u, new_u = (_per_seed(ssc, "A+B+D unbalanced", k) for k in ("mIoU_seen", "mIoU_new"))
    seen_b, new_b = (_per_seed(ssc, BALANCED, k) for k in ("mIoU_seen", "mIoU_new"))
    out.append(_reading("balancing raises both seen and new mIoU", "table 4: 39.5 / 20.5 -> 40.3 / 21.6",
                        _mean(seen_b) > _mean(seen_u) and _mean(new_b) > _mean(new_u),
                        f"seen / new {_mean(seen_u):.1f} / {_mean(new_u):.1f} -> {_mean(seen_b):.1f} / {_mean(new_b):.1f}",
                        [seen_b[i] > seen_u[i] and new_b[i] > new_u[i] for i in range(len(ssc))]))
    if no_ssc:
        off, on = _per_seed(no_ssc, BALANCED, "mIoU_new"), _per_seed(ssc, BALANCED, "mIoU_new")
        gain, spread = _mean(on) - _mean(off), max(_std(off), _std(on))
        beyond = gain > spread
        verdict = ("one seed: no spread to compare with" if min(len(on), len(off)) < 2
                   else f"{'beyond' if beyond else 'within'} the spread {spread:.1f}")
        out.append(_reading("SSC raises new-class mIoU (official balance), beyond the spread over seeds",
                            "table 6; table 5: +0.8 mIoU over all classes", beyond,
                            f"new mIoU {_mean(off):.1f} +- {_std(off):.1f} -> {_mean(on):.1f} +- {_std(on):.1f}"
                            f" ({gain:+.1f}; {verdict})"))
    return out


def format_readings(readings: List[dict], n_seeds: int) -> str:
    """The readings as text lines under the demo's table."""
    lines = [f"What this run shows of the paper (SSC on, means over {n_seeds} seed(s)):"]
    for r in readings:
        seeds = f"; on {r['seeds_holding']} seeds" if "seeds_holding" in r else ""
        lines.append(f"  [{'shown' if r['holds'] else 'not shown'}] {r['claim']}: {r['figures']}{seeds}"
                     f"  (paper: {r['paper']})")
    return "\n".join(lines)


__all__ = ["paper_readings", "format_readings", "harmonic"]
