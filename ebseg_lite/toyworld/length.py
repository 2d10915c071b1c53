"""Training length and the paper's premise: how the seen and new mIoU of A, B, D and the official balance
change as the toy EBSeg trains longer (the demo's recipe, only the number of steps changes).

    ebseg-lite toyworld length --steps 300,500,1000,1500 --seeds 3 --out toyworld_length

The premise of balancing is that A, trained on the seen classes, is the best single embedding on them
and the worst on new ones. This curve shows where, and whether, A overtakes B and D on seen classes as
the training grows, with and without SSC. Each length is a full demo-style training per seed (the poly
schedule decays to 0 at the last step), not a checkpoint of one long run, so the point at 500 steps is
the demo's and the point at 1500 is ``make demo-long``'s, figure for figure: training is deterministic,
and finished runs in the folder are reused.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

from ebseg_lite.io.files import atomic_write
from ebseg_lite.toyworld.experiments import ToyRun, evaluate_runs, train_jobs
from ebseg_lite.toyworld.readings import harmonic
from ebseg_lite.toyworld.stats import mean_std, summary

#: the modes the curve follows: the three single embeddings and the official balance
CURVE_MODES = ("A", "B", "D", "A+B+D official")
DEFAULT_STEPS = (300, 500, 1000, 1500)


def parse_steps(spec: str) -> List[int]:
    """``"300,600,1000"`` -> [300, 600, 1000] (sorted, distinct, each >= 1)."""
    try:
        steps = sorted({int(s) for s in spec.split(",") if s.strip()})
    except ValueError:
        raise ValueError(f"--steps takes comma-separated step counts, got {spec!r}") from None
    if not steps or steps[0] < 1:
        raise ValueError(f"--steps needs step counts of at least 1, got {spec!r}")
    return steps


def a_leads_on_seen(per_seed: List[Dict[str, Dict[str, float]]]) -> Dict[str, object]:
    """Whether A's seen mIoU is above B's and D's: on the seed means, and on how many seeds."""
    mean = lambda m: mean_std([s[m]["mIoU_seen"] for s in per_seed])["mean"]
    seeds = [s["A"]["mIoU_seen"] > max(s["B"]["mIoU_seen"], s["D"]["mIoU_seen"]) for s in per_seed]
    return {"holds": mean("A") > max(mean("B"), mean("D")), "seeds_holding": f"{sum(seeds)} of {len(seeds)}"}


def curve_point(per_seed: List[Dict[str, Dict[str, float]]]) -> Dict[str, object]:
    """One training length's figures: per mode, mean and std over seeds of seen, new and their h-mean."""
    stats = {}
    for m in CURVE_MODES:
        stats[m] = {k: mean_std([s[m][k] for s in per_seed]) for k in ("mIoU", "mIoU_seen", "mIoU_new")}
        stats[m]["hmean"] = mean_std([harmonic(s[m]["mIoU_seen"], s[m]["mIoU_new"]) for s in per_seed])
    return {"stats": stats, "a_leads_on_seen": a_leads_on_seen(per_seed)}


def run_length(out_dir="toyworld_length", *, steps: Sequence[int] = DEFAULT_STEPS, seeds: Sequence[int] = (0, 1, 2),
               ssc_options: Sequence[bool] = (True, False), run: Optional[ToyRun] = None,
               workers: Optional[int] = None, progress: bool = True, figure: bool = True,
               model_overrides: Optional[dict] = None) -> Dict:
    """Train (per length, seed and SSC option) and evaluate on the demo's benchmark scenes.

    Runs go to ``out_dir/steps{N}/{ssc|no_ssc}_seed{s}`` (a finished run there is kept). Writes
    ``length.json`` ({"steps", "seeds", "run", "per_seed": {tag: {N: [summary]}}, "curve": {tag: {N:
    curve_point}}, "model_overrides", "seconds"}) and ``length.png``; returns that dict.
    ``model_overrides`` changes the ``toy`` preset for every run, as in :func:`~ebseg_lite.toyworld.experiments.run_demo`.
    """
    run = run or ToyRun()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    jobs = [(ssc, seed) for ssc in ssc_options for seed in seeds]
    mo = dict(model_overrides or {})
    tag = lambda ssc: "ssc" if ssc else "no_ssc"
    per: Dict[str, Dict[str, list]] = {tag(s): {} for s in ssc_options}
    for n in steps:
        r = dataclasses.replace(run, steps=int(n))
        runs = out / f"steps{n}"
        train_jobs(jobs, r, runs, workers=workers, progress=progress,
                   overrides={job: {"model_overrides": mo} for job in jobs} if mo else None)
        ckpt = {job: (runs / f"{tag(job[0])}_seed{job[1]}" / "model.safetensors", mo or None) for job in jobs}
        res = evaluate_runs(ckpt, r, workers=workers, progress=progress)
        for ssc in ssc_options:
            per[tag(ssc)][str(n)] = [summary(res[(ssc, seed)]) for seed in seeds]
    result = {"steps": [int(n) for n in steps], "seeds": list(seeds), "run": dataclasses.asdict(run),
              "model_overrides": mo, "per_seed": per, "curve": {t: {n: curve_point(rows) for n, rows in d.items()} for t, d in per.items()}}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    atomic_write(out / "length.json", lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1)))
    if figure:
        atomic_write(out / "length.png", lambda tmp: length_figure(result).savefig(tmp, dpi=110, format="png"))
    return result


def format_length(result: Dict) -> str:
    """The curve as a text table: per length, seen / new of each mode (SSC on, then off) and A's lead."""
    lines = [f"Training length (batch {result['run']['batch_size']}, seeds {result['seeds']}): seen / new mIoU %, "
             "mean over seeds"]
    for t, d in result["curve"].items():
        lines += ["", f"SSC {'on' if t == 'ssc' else 'off'}",
                  f"{'steps':>6s} | " + " | ".join(f"{m:>15s}" for m in CURVE_MODES) + " | A best on seen"]
        for n in sorted(d, key=int):
            s, lead = d[n]["stats"], d[n]["a_leads_on_seen"]
            cells = " | ".join(f"{s[m]['mIoU_seen']['mean']:6.1f} / {s[m]['mIoU_new']['mean']:5.1f}" for m in CURVE_MODES)
            lines.append(f"{n:>6s} | {cells} | {'yes' if lead['holds'] else 'no'} ({lead['seeds_holding']} seeds)")
    return "\n".join(lines)


def length_figure(result: Dict) -> Figure:
    """Seen (left) and new (right) mIoU against training steps: A, B, D and the official balance with
    SSC (solid), A without SSC (dotted); mean over seeds, std as a band."""
    fig = Figure(figsize=(9.5, 3.8), layout="constrained")
    axes = fig.subplots(1, 2)
    colors = dict(zip(CURVE_MODES, ("tab:red", "tab:blue", "tab:green", "black")))
    lines = [("ssc", m, "-") for m in CURVE_MODES] + [("no_ssc", "A", ":")]
    for ax, key, title in zip(axes, ("mIoU_seen", "mIoU_new"), ("seen classes", "new classes")):
        for t, m, style in lines:
            if t not in result["curve"]:
                continue
            d = result["curve"][t]
            x = np.array(sorted(int(n) for n in d))
            mu = np.array([d[str(n)]["stats"][m][key]["mean"] for n in x])
            sd = np.array([d[str(n)]["stats"][m][key]["std"] for n in x])
            ax.plot(x, mu, style, marker="o", ms=3, color=colors[m],
                    label=f"{m}{'' if t == 'ssc' else ' (no SSC)'}")
            ax.fill_between(x, mu - sd, mu + sd, color=colors[m], alpha=0.12)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(f"training steps (batch {result['run']['batch_size']})")
        ax.set_ylabel("mIoU % (mean +- std over seeds)")
    axes[0].legend(fontsize=8)
    return fig


def load_length(path="toyworld_length") -> Dict:
    """``length.json`` from a folder (or the file itself)."""
    p = Path(path)
    return json.loads((p / "length.json" if p.is_dir() else p).read_text())


__all__ = ["run_length", "format_length", "length_figure", "load_length", "curve_point", "a_leads_on_seen",
           "parse_steps", "CURVE_MODES", "DEFAULT_STEPS"]
