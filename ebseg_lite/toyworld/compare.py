"""Every seed baseline and EBSeg-lite on the same toy benchmark scenes, vocabulary and evaluator.

    ebseg-lite toyworld compare --out toyworld_compare [--test-seed 99] [--scenes 50] [--seeds 3]

Methods (:data:`ebseg_lite.baselines.METHODS`): EBSeg-lite (the shipped seed-0 toy model, trained with
SSC), SimSeg on EBSeg-lite's masks and on the toy SAM's automatic masks, and the training-free
dense-CLIP family on the toy CLIP. The scenes are fresh benchmark-split draws from ``test_seed``
(never a training seed: training scenes use 1000 + seed), as in ``toyworld demo``. Writes
``compare.json`` (one row per method: mIoU, mIoU_seen, mIoU_new, sec_per_image), ``table.txt`` and
``methods.png`` (the same scenes segmented by every method).

Seconds per image are wall time on this machine after one warm-up image, for the whole ``predict``
(encoders, proposals, one CLIP run per proposal for SimSeg, every sliding window for dense CLIP).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch
from matplotlib.figure import Figure

from ebseg_lite.baselines import METHODS, build_method
from ebseg_lite.eval.metrics import SemSegEvaluator
from ebseg_lite.io.files import atomic_write, read_state_dict
from ebseg_lite.toyworld.experiments import held_out_scenes, toy_model
from ebseg_lite.toyworld.presets import TOY_SAM_GENERATOR, toy_weights_dir
from ebseg_lite.toyworld.pretrain_sam import load_toy_sam
from ebseg_lite.toyworld.world import ToyWorld
from ebseg_lite.viz.segmentation import show_segmentations

TEST_SEED = 99


def toy_mask_generator(path: Optional[str] = None, **overrides):
    """``SamAutomaticMaskGenerator`` over the whole toy SAM with the toy world's settings
    (:data:`ebseg_lite.toyworld.presets.TOY_SAM_GENERATOR`), or None and the reason when the weights
    file holds only the image encoder (toy world v1)."""
    from segment_anything import SamAutomaticMaskGenerator
    path = Path(path or toy_weights_dir() / "toy_sam.safetensors")
    if not any(k.startswith("mask_decoder.") for k in read_state_dict(path)):
        return None, f"{path.name} holds the image encoder only (no prompt encoder / mask decoder)"
    return SamAutomaticMaskGenerator(load_toy_sam(path), **{**TOY_SAM_GENERATOR, **overrides}), None


@torch.no_grad()
def evaluate_method(segmenter, dataset, seen, *, progress: bool = False) -> Dict[str, float]:
    """mIoU (overall / seen / new, percent) and seconds per image of one segmenter on ``dataset``."""
    from tqdm.auto import tqdm
    names = list(dataset.class_names)
    ev = SemSegEvaluator(len(names), ignore_index=dataset.ignore_value, seen=seen.numpy())
    segmenter.predict(dataset[0]["image"], names, seen=seen)  # warm-up, not timed
    seconds = 0.0
    for i in tqdm(range(len(dataset)), desc="scenes", disable=not progress, leave=False):
        item = dataset[i]
        t0 = time.perf_counter()
        labels = segmenter.predict(item["image"], names, seen=seen, keep_intermediates=False).labels
        seconds += time.perf_counter() - t0
        ev.update(labels, item["label"])
    r = ev.compute()
    return {"mIoU": r["mIoU"], "mIoU_seen": r["mIoU_seen"], "mIoU_new": r["mIoU_new"],
            "sec_per_image": seconds / len(dataset)}


def format_table(rows: Dict[str, dict], scenes: int, test_seed: int) -> str:
    """compare.json's rows as text; "+- std" over training seeds where the method involves training."""
    def cell(r, k):
        sd = r.get("std", {}).get(k)
        return f"{r[k]:5.1f}" + (f" +- {sd:4.1f}" if sd is not None else " " * 8)
    lines = [f"Toy world, {scenes} benchmark scenes (seed {test_seed}): mIoU % and seconds per image (CPU)", "",
             f"{'method':12s} | {'all':>13s} | {'seen':>13s} | {'new':>13s} | {'s / image':>9s} | seeds", "-" * 80]
    for m, r in rows.items():
        if "skipped" in r:
            lines.append(f"{m:12s} | skipped: {r['skipped']}")
            continue
        lines.append(f"{m:12s} | {cell(r, 'mIoU')} | {cell(r, 'mIoU_seen')} | {cell(r, 'mIoU_new')} | "
                     f"{r['sec_per_image']:9.4f} | {len(r.get('seeds', [])) or '-'}")
    return "\n".join(lines)


def seed_summary(per_seed: Sequence[Dict[str, float]], seeds: Sequence[int]) -> Dict:
    """Mean over training seeds of every figure, the standard deviation of the mIoUs, and the per-seed rows."""
    keys = ("mIoU", "mIoU_seen", "mIoU_new", "sec_per_image")
    mean = {k: float(torch.tensor([r[k] for r in per_seed], dtype=torch.float64).mean()) for k in keys}
    if len(per_seed) > 1:
        mean["std"] = {k: float(torch.tensor([r[k] for r in per_seed], dtype=torch.float64).std()) for k in keys[:3]}
    mean.update(seeds=list(seeds), per_seed=list(per_seed))
    return mean


def methods_figure(segmenters: Dict[str, object], dataset, world: ToyWorld, *, n: int = 4) -> Figure:
    """Rows = the first ``n`` test scenes; panels = ground truth and each method's labels, one legend."""
    names, seen = world.class_names, torch.tensor(world.seen)
    items = [dataset[r] for r in range(min(n, len(dataset)))]
    maps = [{"ground truth": it["label"], **{m: s.predict(it["image"], names, seen=seen).labels
                                             for m, s in segmenters.items()}} for it in items]
    return show_segmentations([it["image"] for it in items], maps, names, seen=world.seen, size=2.0,
                              suptitle="Toy world test scenes segmented by every method (new = never labelled in training)")


#: methods whose result depends on the trained toy EBSeg (its masks, or its classifier too)
TRAINED = ("ebseg", "simseg")


def run_compare(out_dir="toyworld_compare", *, test_seed: int = TEST_SEED, scenes: int = 50,
                methods: Sequence[str] = METHODS + ("pnp-ovss",), seeds: Sequence[int] = (0,), progress: bool = True,
                figure: bool = True, sam_weights: Optional[str] = None) -> Dict:
    """Evaluate ``methods`` on ``scenes`` toy test scenes; write compare.json, table.txt, methods.png.

    ``seeds``: training seeds of the toy EBSeg for the methods that use it (:data:`TRAINED`; seed 0 ships,
    others are trained into the cache first, a few minutes each); the table gives their mean +- std.
    The training-free methods use the frozen toy CLIP / SAM only and run once.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    world = ToyWorld()
    dataset = held_out_scenes(scenes, seed=test_seed)
    seen = torch.tensor(world.seen)
    predictors = {s: toy_model(ssc=True, seed=s, progress=progress) for s in seeds}
    first = predictors[seeds[0]]
    rows, segmenters = {}, {}
    for m in methods:
        if m == "pnp-ovss":         # issue 17: needs each image's class list, evaluated apart below
            continue
        if m == "simseg-sam":
            gen, why = toy_mask_generator(sam_weights)
            if gen is None:
                rows[m] = {"skipped": why}
                continue
            segmenters[m] = build_method(m, first, mask_generator=gen)
        else:
            segmenters[m] = build_method(m, first)
        if m in TRAINED:
            per = [evaluate_method(build_method(m, predictors[s]), dataset, seen, progress=progress) for s in seeds]
            rows[m] = seed_summary(per, seeds)
        else:
            rows[m] = evaluate_method(segmenters[m], dataset, seen, progress=progress)
        if progress:
            print(f"{m:12s} mIoU {rows[m]['mIoU']:5.1f}  {rows[m]['sec_per_image']:.4f} s / image", flush=True)
    note = ""
    if "pnp-ovss" in methods:       # PnP-OVSS rows, one per class-list source (ebseg_lite.toyworld.toy_pnp)
        from ebseg_lite.toyworld.toy_pnp import PNP_NOTE, pnp_rows
        rows.update(pnp_rows(dataset, seen.numpy(), progress=progress))
        note = "\n" + PNP_NOTE
    result = {"test_seed": test_seed, "scenes": scenes, "preset": first.cfg.preset, "training_seeds": list(seeds),
              "rows": rows, "class_names": world.class_names, "seen": world.seen}
    atomic_write(out / "compare.json", lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1)))
    atomic_write(out / "table.txt", lambda tmp: Path(tmp).write_text(format_table(rows, scenes, test_seed) + note + "\n"))
    if figure and segmenters:
        fig = methods_figure(segmenters, dataset, world)
        atomic_write(out / "methods.png", lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    return result
