"""Toy counterparts of the paper's ablation tables 2-7, as one command:

    ebseg-lite toyworld ablate --table 3 --seeds 3        # or --table all

Each table is a list of rows ``(label, variant, mode)``: a *variant* is a training run (a
:class:`~ebseg_lite.train.config.TrainConfig` change, trained per seed), a *mode* a way of classifying
its masks (:data:`ebseg_lite.toyworld.modes.MODES`). A variant is trained once per seed and shared by
every table that uses it; each trained model is evaluated once (encode once, classify per mode) on
the same fresh test scenes as ``toyworld demo``.

How the paper's rows map onto the toy world:

* table 2 (components): the baseline has no SAM (:attr:`~ebseg_lite.config.SamConfig.enabled`), no
  balancing (B alone, the CLIP mask-attention embedding a SAN-style model classifies with) and no SSC;
  then balancing (A+B+D, official weights), SAM fusion, SSC are added one at a time;
* table 3 (embeddings): single embeddings and pairs of the SSC model; the same model with the head
  over ViT-B's last quarter (blocks 10-12) and over the last three quarters (blocks 4-12, after
  feature blocks 1, 2, 3) instead of the toy preset's last half; and
  :func:`~ebseg_lite.toyworld.probe.oracle_probe`: the embeddings computed from *ground-truth* masks,
  which tells the decoder's share of an error from CLIP's; and
  :func:`~ebseg_lite.toyworld.probe.mask_oracle_miou`: the model's own masks with true classes, the
  ceiling of every row; and :func:`~ebseg_lite.toyworld.probe.query_vs_map`: instance accuracy of
  the best query against the map's, and A among the seen names only; and
  :func:`~ebseg_lite.toyworld.vocab_probe.open_vocabulary_cost` /
  :func:`~ebseg_lite.toyworld.vocab_probe.error_kinds`: each mode's seen mIoU from the training
  vocabulary on seen-only scenes to the benchmark's setting, and which names its errors take;
* table 4 (balancing): the same weights for every class vs the official per-class ones vs the paper's form;
* table 5 (SSC placement): SSC on A / B / both, on the last 1 / last 3 / all decoder outputs;
* table 6 (SSC): with and without, balanced and on A alone (SSC acts on A);
* table 7 (SAM): frozen (EBSeg) vs trained with the decoder vs no SAM (all without SSC).
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ebseg_lite.builder import build_model
from ebseg_lite.io.files import atomic_write
from ebseg_lite.toyworld.experiments import ToyRun, evaluate_runs, held_out_scenes, spread, summary, train_jobs
from ebseg_lite.toyworld.modes import MODES
from ebseg_lite.toyworld.probe import mask_oracle_miou, oracle_probe, query_vs_map
from ebseg_lite.toyworld.readings import harmonic
from ebseg_lite.toyworld.report import ablation_figure
from ebseg_lite.toyworld.vocab_probe import KINDS, SETTINGS, error_kinds, open_vocabulary_cost

#: variant -> (SSC on?, TrainConfig overrides). "ssc" / "no_ssc" are the demo's two models.
VARIANTS: Dict[str, Tuple[bool, dict]] = {
    "no_ssc": (False, {}),
    "ssc": (True, {}),                                   # official: SSC on A, last output, lambda 10
    "no_sam": (False, {"model_overrides": {"sam": {"enabled": False}}}),
    "sam_trained": (False, {"train_sam": True, "cache_features": False}),
    "ssc_B": (True, {"ssc_on": "B"}),
    "ssc_both": (True, {"ssc_on": "both"}),
    "ssc_A_last3": (True, {"ssc_layers": 3}),
    "ssc_A_all": (True, {"ssc_layers": 0}),
    "ssc_head_late": (True, {"model_overrides": {"clip": {"feature_blocks": (3, 6, 9)}}}),  # ViT-B's placement
    "ssc_head_early": (True, {"model_overrides": {"clip": {"feature_blocks": (1, 2, 3)}}}),  # head over 4-12
}

OFFICIAL = "A+B+D official"
#: the modes whose query-level and map-level instance accuracy table 3 reports
PROBE_MODES = ("A", "B", "D", "B+D", OFFICIAL)

#: table -> (title, rows (label, variant, mode), the paper's figures on ADE-150 (ViT-B) where the spec gives them)
TABLES: Dict[int, Tuple[str, List[Tuple[str, str, str]], Dict[str, str]]] = {
    2: ("components", [("baseline: no SAM, B alone, no SSC", "no_sam", "B"),
                       ("+ AdaB balancing (A+B+D)", "no_sam", OFFICIAL),
                       ("+ SAM fusion", "no_ssc", OFFICIAL),
                       ("+ SSC (EBSeg)", "ssc", OFFICIAL)], {}),
    3: ("embeddings", [(m, "ssc", m) for m in ("A", "B", "D", "A+B", "A+D", "B+D", OFFICIAL)]
        + [("B, head over blocks 10-12 (ViT-B's quarter)", "ssc_head_late", "B"),
           ("A+B+D official, head over blocks 10-12", "ssc_head_late", OFFICIAL),
           ("B, head over blocks 4-12", "ssc_head_early", "B"),
           ("A+B+D official, head over blocks 4-12", "ssc_head_early", OFFICIAL)],
        {"A": "17.7", "B": "29.0", "D": "19.7", "A+B": "29.4", "A+D": "26.3", "B+D": "29.7", OFFICIAL: "30.0"}),
    4: ("balancing", [("without balancing (seen weights for all)", "ssc", "A+B+D unbalanced"),
                      ("with balancing (official, geometric)", "ssc", OFFICIAL),
                      ("with balancing (paper, arithmetic)", "ssc", "A+B+D paper")],
        {"without balancing (seen weights for all)": "seen 39.5 / new 20.5",
         "with balancing (official, geometric)": "seen 40.3 / new 21.6"}),
    5: ("SSC placement", [("no SSC", "no_ssc", OFFICIAL), ("A, last output (official)", "ssc", OFFICIAL),
                          ("B, last output", "ssc_B", OFFICIAL), ("A and B, last output", "ssc_both", OFFICIAL),
                          ("A, last 3 outputs", "ssc_A_last3", OFFICIAL), ("A, all outputs", "ssc_A_all", OFFICIAL)],
        {"A, last output (official)": "+0.8 over no SSC (all classes)"}),
    6: ("SSC", [("without SSC", "no_ssc", OFFICIAL), ("with SSC", "ssc", OFFICIAL),
                ("without SSC, A alone", "no_ssc", "A"), ("with SSC, A alone", "ssc", "A")], {}),
    7: ("SAM", [("SAM frozen (EBSeg)", "no_ssc", OFFICIAL), ("SAM trained", "sam_trained", OFFICIAL),
                ("no SAM", "no_sam", OFFICIAL)], {}),
}


def parse_tables(spec: str) -> List[int]:
    """``"3"``, ``"2,5"`` or ``"all"`` -> sorted table numbers; a clear error for anything else."""
    if spec.strip() == "all":
        return sorted(TABLES)
    try:
        nums = sorted({int(t) for t in spec.split(",")})
    except ValueError:
        nums = []
    if not nums or any(n not in TABLES for n in nums):
        raise ValueError(f"--table takes numbers among {sorted(TABLES)} (comma-separated) or 'all', got {spec!r}")
    return nums


def variant_model(variant: str, base: Optional[dict] = None) -> dict:
    """A variant's changes to the ``toy`` model preset, on top of ``base`` (the run's own, e.g. a SAM
    feature scale); the variant's own setting wins where both set the same field."""
    out = {k: dict(v) for k, v in (base or {}).items()}
    for group, fields in VARIANTS[variant][1].get("model_overrides", {}).items():
        out.setdefault(group, {}).update(fields)
    return out


def train_overrides(variant: str, base: Optional[dict] = None) -> dict:
    """A variant's TrainConfig changes, its model overrides merged with ``base`` (:func:`variant_model`)."""
    own = VARIANTS[variant][1]
    return {**own, "model_overrides": variant_model(variant, base)} if base else own


def row_stats(per_seed: List[Dict[str, Dict[str, float]]], mode: str) -> Dict[str, Dict[str, float]]:
    """Mean +- std over seeds of one mode's all / seen / new mIoU and their harmonic mean."""
    rows = [dict(r[mode], hmean=harmonic(r[mode]["mIoU_seen"], r[mode]["mIoU_new"])) for r in per_seed]
    return spread([{"x": r} for r in rows])["x"]


def format_table(num: int, result: dict) -> str:
    title, _, paper = TABLES[num]
    lines = [f"Table {num} (toy): {title}. mIoU % over seeds {result['seeds']} (mean +- std)", ""]
    head = f"{'row':44s} | {'all':>12s} | {'seen':>12s} | {'new':>12s} | {'h-mean':>12s} | paper (ADE-150, ViT-B)"
    lines += [head, "-" * len(head)]
    for row in result["rows"]:
        c = lambda k: f"{row[k]['mean']:5.1f} +- {row[k]['std']:3.1f}"
        lines.append(f"{row['label']:44s} | {c('mIoU'):>12s} | {c('mIoU_seen'):>12s} | {c('mIoU_new'):>12s} | "
                     f"{c('hmean'):>12s} | {paper.get(row['label'], '-')}")
    if "oracle_probe" in result:
        lines += ["", "Embeddings from ground-truth masks (instance accuracy %, all 36 classes; mean +- std over seeds):"]
        for k, v in result["oracle_probe"].items():
            lines.append(f"  {k:58s} {v['mean']:5.1f} +- {v['std']:3.1f}")
    if "mask_oracle" in result:
        lines += ["", "The model's own masks, every query told its true class (the ceiling of every row above):"]
        c = lambda k: f"{result['mask_oracle'][k]['mean']:5.1f} +- {result['mask_oracle'][k]['std']:3.1f}"
        lines.append(f"  all {c('mIoU')}, seen {c('mIoU_seen')}, new {c('mIoU_new')}")
    if "query_vs_map" in result:
        lines += ["", "Instance accuracy %: the best-overlapping query's class vs the map's majority label "
                  "(seen / new instances); A..: the query among the seen names only:"]
        for mode, v in result["query_vs_map"].items():
            c = lambda k: f"{v[k]['mean']:5.1f} +- {v[k]['std']:3.1f}"
            lines.append(f"  {mode:16s} query {c('query_seen')} / {c('query_new')}   map {c('map_seen')} / "
                         f"{c('map_new')}   seen names only {c('query_seen_names')}")
    if "open_vocabulary" in result:
        lines += ["", "Seen-class mIoU %, from the training vocabulary on seen-only scenes to the demo's setting "
                  "(fresh scenes; the third column is the seen column above):", f"  {'':16s} " + " | ".join(SETTINGS)]
        for mode, v in result["open_vocabulary"].items():
            cells = (f"{v[k]['mean']:5.1f} +- {v[k]['std']:3.1f}".center(len(k)) for k in SETTINGS)
            lines.append(f"  {mode:16s} " + " | ".join(cells))
    if "error_kinds" in result:
        lines += ["", "Where the best-overlapping query's class goes (% of the seen / new instances; mean over seeds):",
                  f"  {'':16s} {'':5s} " + " ".join(f"{k:>10s}" for k in KINDS)]
        for mode, v in result["error_kinds"].items():
            for grp in ("seen", "new"):
                lines.append(f"  {mode if grp == 'seen' else '':16s} {grp:5s} " +
                             " ".join(f"{v[f'{grp} -> {k}']['mean']:10.1f}" for k in KINDS))
    return "\n".join(lines)


def run_ablation(out_dir="toyworld_ablation", *, tables: Sequence[int] = (3,), seeds: Sequence[int] = (0, 1, 2),
                 run: Optional[ToyRun] = None, probe_scenes: int = 60, workers: Optional[int] = None,
                 progress: bool = True, model_overrides: Optional[dict] = None) -> Dict:
    """Train every variant the ``tables`` need (per seed; finished runs in ``out_dir/runs`` are kept),
    evaluate each on the demo's test scenes, write ``ablation.json``, ``table{N}.txt`` and
    ``ablation.png`` (:func:`~ebseg_lite.toyworld.report.ablation_figure`); return the results.
    ``model_overrides`` changes the ``toy`` preset for every variant (each variant's own changes on top)."""
    base = dict(model_overrides or {})
    run = run or ToyRun()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    variants = sorted({v for n in tables for _, v, _ in TABLES[n][1]})
    jobs = [(VARIANTS[v][0], seed, v) for v in variants for seed in seeds]
    dirs = {job: out / "runs" / f"{job[2]}_seed{job[1]}" for job in jobs}
    train_jobs(jobs, run, out / "runs", workers=workers, progress=progress, dirs=dirs,
               overrides={job: train_overrides(job[2], base) for job in jobs})
    evaluated = evaluate_runs({job: (dirs[job] / "model.safetensors", variant_model(job[2], base)) for job in jobs},
                              run, workers=workers, progress=progress)
    per: Dict[str, List[dict]] = {}
    probes: List[Dict[str, float]] = []
    ceilings: List[Dict[str, float]] = []
    instances: List[Dict[str, Dict[str, float]]] = []
    costs: List[Dict[str, Dict[str, float]]] = []
    kinds: List[Dict[str, Dict[str, float]]] = []
    for job in jobs:
        per.setdefault(job[2], []).append(summary(evaluated[job]))
        if 3 in tables and job[2] == "ssc":
            model = build_model("toy", checkpoint=str(dirs[job] / "model.safetensors"), **variant_model(job[2], base))
            probes.append(oracle_probe(model, n_scenes=probe_scenes))
            ceilings.append(mask_oracle_miou(model, held_out_scenes(run.test_scenes, size=run.size)))
            probe_modes = {m: MODES[m] for m in PROBE_MODES}
            instances.append(query_vs_map(model, probe_modes, n_scenes=probe_scenes))
            costs.append(open_vocabulary_cost(model, probe_modes, n_scenes=run.test_scenes))
            kinds.append(error_kinds(model, probe_modes, n_scenes=probe_scenes))
    result = {"seeds": list(seeds), "run": dataclasses.asdict(run), "variants": {v: VARIANTS[v][1] for v in variants},
              "model_overrides": base, "per_seed": per, "tables": {}}
    for n in tables:
        rows = [dict(label=label, variant=v, mode=m, **row_stats(per[v], m)) for label, v, m in TABLES[n][1]]
        res = {"title": TABLES[n][0], "seeds": list(seeds), "rows": rows, "paper": TABLES[n][2]}
        if n == 3 and probes:
            res["oracle_probe"] = spread([{"x": p} for p in probes])["x"]
            res["mask_oracle"] = spread([{"x": c} for c in ceilings])["x"]
            res["query_vs_map"] = spread(instances)
            res["open_vocabulary"] = spread(costs)
            res["error_kinds"] = spread(kinds)
        result["tables"][str(n)] = res
        text = format_table(n, res)
        atomic_write(out / f"table{n}.txt", lambda tmp, t=text: Path(tmp).write_text(t + "\n"))
    result["seconds"] = round(time.perf_counter() - t0, 1)
    fig = ablation_figure(result)
    atomic_write(out / "ablation.png", lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    atomic_write(out / "ablation.json", lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1)))
    return result


def load_ablation(path="toyworld_ablation") -> Dict:
    """Read ``ablation.json`` (a folder or the file), for notebooks."""
    path = Path(path)
    return json.loads((path / "ablation.json" if path.is_dir() else path).read_text())


__all__ = ["VARIANTS", "TABLES", "run_ablation", "load_ablation", "format_table", "parse_tables", "harmonic"]
