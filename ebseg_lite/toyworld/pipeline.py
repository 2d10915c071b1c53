"""The toy world end to end: train EBSeg-lite on the seen classes, evaluate every way of classifying
the masks on all classes, with and without the SSC loss, over a few seeds.

    ebseg-lite toyworld demo --out toyworld_report        # the README's main job (make demo)

The ways of classifying (``MODES``) are the toy versions of the paper's tables:
* table 3 (single embeddings and pairs): A, B, D, A+B, A+D, B+D, each a weighted geometric mean of
  the branches' class probabilities with equal weights, the same for seen and new classes;
* table 4 (balancing): "A+B+D unbalanced" uses the seen weights for every class; "A+B+D official" the
  official per-class weights (seen 0.21/0.7/0.09, new 0/0.7/0.3), "A+B+D paper" the paper's arithmetic
  balancing of embeddings (eq. 9-13, a = 0.2, b = 0.7, g = 0);
* table 6 (SSC): the same model trained with the SSC loss (lambda 10) and without it.
Evaluation is encode once per test image, classify once per mode (no encoder call per mode).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from ..evaluation import SemSegEvaluator
from .world import ToyWorld

MODES: Dict[str, dict] = {
    "A": dict(w_seen=(1, 0, 0), w_new=(1, 0, 0)),
    "B": dict(w_seen=(0, 1, 0), w_new=(0, 1, 0)),
    "D": dict(w_seen=(0, 0, 1), w_new=(0, 0, 1)),
    "A+B": dict(w_seen=(0.5, 0.5, 0), w_new=(0.5, 0.5, 0)),
    "A+D": dict(w_seen=(0.5, 0, 0.5), w_new=(0.5, 0, 0.5)),
    "B+D": dict(w_seen=(0, 0.5, 0.5), w_new=(0, 0.5, 0.5)),
    "A+B+D unbalanced": dict(w_seen=(0.21, 0.7, 0.09), w_new=(0.21, 0.7, 0.09)),
    "A+B+D official": dict(balancing="official"),
    "A+B+D paper": dict(balancing="paper"),
}


@dataclasses.dataclass
class ToyRun:
    """Sizes of the toy experiment (defaults: the README's demo, a few minutes on 2 cores)."""
    steps: int = 300
    batch_size: int = 8
    lr: float = 1e-3
    train_scenes: int = 1000
    test_scenes: int = 100
    size: int = 128


class SeenVocabulary(torch.utils.data.Dataset):
    """Training scenes labelled in the training vocabulary: the K_seen seen classes, ids remapped to
    0..K_seen-1 (as EBSeg trains with COCO-Stuff's 171 names only; new names are never in its softmax)."""

    def __init__(self, dataset, world: ToyWorld):
        self.dataset = dataset
        self.class_names = world.seen_names
        self.ignore_value = dataset.ignore_value
        lut = torch.full((256,), 255, dtype=torch.int64)
        for new_id, old_id in enumerate(i for i, s in enumerate(world.seen) if s):
            lut[old_id] = new_id
        self._lut = lut

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.dataset[i])
        if bool(((self._lut[item["label"]] == 255) & (item["label"] != 255)).any()):
            raise ValueError(f"{item.get('file_name')}: a training scene holds a new class")
        item["label"], item["class_names"] = self._lut[item["label"]], self.class_names
        return item


def cache_dir() -> Path:
    """Where trained toy models are kept: ``$EBSEG_CACHE`` or ``~/.cache/ebseg_lite``."""
    return Path(os.environ.get("EBSEG_CACHE", Path.home() / ".cache" / "ebseg_lite")) / "toyworld"


def train_toy_model(*, ssc: bool = True, seed: int = 0, run: Optional[ToyRun] = None, out_dir=None,
                    progress: bool = True, callbacks=None):
    """Train EBSeg-lite (``toy`` preset, frozen toy CLIP/SAM, cached features) on seen-class scenes.

    Returns the trained model (eval mode) and the trainer's logged rows.
    """
    from ..train import Trainer, get_train_preset
    run = run or ToyRun()
    out_dir = Path(out_dir or cache_dir() / run_name(ssc, seed, run))
    cfg = dataclasses.replace(get_train_preset("toy"), max_iters=run.steps, batch_size=run.batch_size, lr=run.lr,
                              ssc_weight=10.0 if ssc else 0.0, seed=seed, out_dir=str(out_dir), crop_size=run.size,
                              ckpt_every=max(run.steps, 1), log_every=max(1, run.steps // 50))
    world = ToyWorld()
    data = SeenVocabulary(world.dataset(run.train_scenes, seed=1000 + seed, split="train", size=run.size), world)
    trainer = Trainer(cfg, dataset=data, progress=progress, callbacks=callbacks)
    history = trainer.fit()
    trainer.model.eval()
    return trainer.model, history


def run_name(ssc: bool, seed: int, run: ToyRun) -> str:
    return f"ebseg_{'ssc' if ssc else 'nossc'}_seed{seed}_{run.steps}x{run.batch_size}_{run.train_scenes}"


def toy_model(*, ssc: bool = True, seed: int = 0, run: Optional[ToyRun] = None, progress: bool = True):
    """The trained toy EBSeg: the shipped weights (``data_samples/toyworld``) for the default run, else
    the cache folder, else trained there first (a minute or two)."""
    from ..builder import build_model
    from ..config import toy_weights_dir
    run = run or ToyRun()
    shipped = toy_weights_dir() / f"{run_name(ssc, seed, run)}.safetensors"  # made by `toyworld demo --ship`
    folder = cache_dir() / run_name(ssc, seed, run)
    weights = shipped if shipped.is_file() else folder / "model.safetensors"
    if not weights.is_file():
        train_toy_model(ssc=ssc, seed=seed, run=run, out_dir=folder, progress=progress)
    model = build_model("toy", checkpoint=str(weights))
    model.train_class_names = ToyWorld().seen_names
    return model


def test_set(n: int, *, seed: int = 99, size: int = 128):
    """The held-out test scenes (all classes)."""
    return ToyWorld().dataset(n, seed=seed, split="test", size=size)


test_set.__test__ = False  # not a pytest test, despite its name


@torch.no_grad()
def evaluate_modes(model, dataset, *, modes: Optional[Dict[str, dict]] = None, seen=None,
                   progress: bool = True) -> Dict[str, dict]:
    """mIoU / mIoU_seen / mIoU_new / per-class IoU for every mode; each image is encoded once.

    Works on any dataset with ``class_names`` (a toy test set or a benchmark); seen/new is ``seen``, the
    toy world's split for toy data, or the synonym rule against the model's training vocabulary.
    """
    from tqdm.auto import tqdm
    modes = modes or MODES
    names = list(dataset.class_names)
    if seen is None and names == ToyWorld().class_names:
        seen = ToyWorld().seen
    seen = model.resolve_seen(names, seen)
    ignore = getattr(dataset, "ignore_value", 255)
    evs = {m: SemSegEvaluator(len(names), ignore_index=ignore, seen=seen.numpy()) for m in modes}
    for i in tqdm(range(len(dataset)), desc="evaluate", disable=not progress):
        item = dataset[i]
        enc = model.encode(item["image"], keep_intermediates=False)
        for m, kw in modes.items():
            evs[m].update(model.classify(enc, names, seen=seen, **kw).labels, item["label"])
    return {m: ev.compute() for m, ev in evs.items()}


def _train_job(job) -> List[dict]:
    """One training in a worker process (one thread): returns the logged rows. The worker stops by
    itself if the process that started it dies (it would otherwise train on, orphaned)."""
    ssc, seed, run_fields, out_dir = job
    torch.set_num_threads(1)
    parent = os.getppid()

    def stop_if_orphaned(trainer, event, info):
        if os.getppid() != parent:
            os._exit(1)

    return train_toy_model(ssc=ssc, seed=seed, run=ToyRun(**run_fields), out_dir=out_dir, progress=False,
                           callbacks=[stop_if_orphaned])[1]


def train_jobs(jobs: Sequence[tuple], run: ToyRun, runs_dir: Path, *, workers: Optional[int] = None,
               progress: bool = True) -> Dict[tuple, List[dict]]:
    """Train every (ssc, seed) of ``jobs`` into ``runs_dir/{ssc|no_ssc}_seed{seed}``; one progress bar."""
    from tqdm.auto import tqdm
    from .. import train as _train  # noqa: F401  (import before forking workers)
    workers = workers or min(len(jobs), os.cpu_count() or 1)
    dirs = {job: Path(runs_dir) / f"{'ssc' if job[0] else 'no_ssc'}_seed{job[1]}" for job in jobs}
    if workers <= 1:
        return {job: train_toy_model(ssc=job[0], seed=job[1], run=run, out_dir=dirs[job], progress=progress)[1]
                for job in jobs}
    import concurrent.futures as cf
    import multiprocessing as mp
    from ..train.logger import read_jsonl
    bar = tqdm(total=run.steps * len(jobs), desc=f"train {len(jobs)} models ({workers} processes)",
               disable=not progress)
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = {job: pool.submit(_train_job, (job[0], job[1], dataclasses.asdict(run), str(dirs[job])))
                   for job in jobs}
        while not all(f.done() for f in futures.values()):
            time.sleep(1.0)
            done = sum((read_jsonl(d / "log.jsonl") or [{"step": 0}])[-1]["step"] for d in dirs.values())
            bar.update(done - bar.n)
        out = {job: f.result() for job, f in futures.items()}
    bar.update(bar.total - bar.n)
    bar.close()
    return out


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


def spread(per_seed: List[Dict[str, Dict[str, float]]]) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Mean and standard deviation over seeds of every mode's three numbers."""
    out = {}
    for m in per_seed[0]:
        out[m] = {}
        for k in per_seed[0][m]:
            vals = torch.tensor([s[m][k] for s in per_seed], dtype=torch.float64)
            out[m][k] = {"mean": float(vals.mean()), "std": float(vals.std(unbiased=True)) if len(vals) > 1 else 0.0}
    return out


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


def run_demo(out_dir="toyworld_report", *, seeds: Sequence[int] = (0,), run: Optional[ToyRun] = None,
             ssc_options: Sequence[bool] = (False, True), progress: bool = True, figures: bool = True,
             workers: Optional[int] = None) -> Dict:
    """Train (per seed, with and without SSC), evaluate every mode, write the report folder.

    The trainings run side by side in ``workers`` processes of one thread each (default: one per CPU
    core, at most one per training), the fastest use of a few cores for such small models.

    Writes ``metrics.json`` (per seed and mean/std), ``table.txt`` and figures; returns the metrics.
    """
    run = run or ToyRun()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    test = test_set(run.test_scenes, size=run.size)
    jobs = [(ssc, seed) for ssc in ssc_options for seed in seeds]
    histories = train_jobs(jobs, run, out / "runs", workers=workers, progress=progress)
    per, models = {}, {}
    from ..builder import build_model
    for ssc, seed in jobs:
        tag = "ssc" if ssc else "no_ssc"
        model = build_model("toy", checkpoint=str(out / "runs" / f"{tag}_seed{seed}" / "model.safetensors"))
        res = evaluate_modes(model, test, progress=progress)
        history = histories[(ssc, seed)]
        per.setdefault(tag, []).append({"seed": seed, "summary": summary(res),
                                        "iou": {m: [None if v != v else float(v) for v in r["IoU"]] for m, r in res.items()},
                                        "final_loss": history[-1]["loss_total"] if history else None,
                                        "loss_curve": [[r["step"], r["loss_total"]] for r in history]})
        models[(tag, seed)] = model
    stats = {tag: spread([p["summary"] for p in rows]) for tag, rows in per.items()}
    chance = chance_miou(test)
    world = ToyWorld()
    metrics = {"seeds": list(seeds), "run": dataclasses.asdict(run), "modes": {m: {k: list(v) if isinstance(v, tuple)
               else v for k, v in kw.items()} for m, kw in MODES.items()}, "class_names": world.class_names,
               "seen": world.seen, "per_seed": per, "stats": stats, "chance": chance, "seconds": None}
    table = format_report(stats, seeds) + (f"\n\nchance (uniformly random labels): all {chance['mIoU']:.1f}, seen "
                                           f"{chance['mIoU_seen']:.1f}, new {chance['mIoU_new']:.1f}")
    if figures:
        from .report import write_figures
        metrics["affinity_gap"] = write_figures(out, models, test, per, world)
    metrics["seconds"] = round(time.perf_counter() - t0, 1)
    from ..weights import atomic_write
    atomic_write(out / "metrics.json", lambda tmp: Path(tmp).write_text(json.dumps(metrics, indent=1)))
    atomic_write(out / "table.txt", lambda tmp: Path(tmp).write_text(table + "\n"))
    return metrics


def cmd_demo(args) -> int:
    """``ebseg-lite toyworld demo``: the report folder, and optionally the shipped seed-0 models."""
    run = ToyRun(steps=args.steps, batch_size=args.batch_size, train_scenes=args.train_scenes,
                 test_scenes=args.test_scenes)
    seeds = tuple(range(args.seeds))
    metrics = run_demo(args.out, seeds=seeds, run=run, progress=not args.no_progress, workers=args.workers)
    print((Path(args.out) / "table.txt").read_text())
    gaps = metrics.get("affinity_gap", {})
    for tag, g in gaps.items():
        print(f"affinity gap |A cosine - text cosine| ({tag}): seen {g['seen']:.3f}, new {g['new']:.3f}")
    print(f"report in {args.out}/ (metrics.json, table.txt, predictions.png, per_class_iou.png, affinity.png); "
          f"{metrics['seconds']:.0f} s")
    if args.ship:
        import shutil
        from ..config import toy_weights_dir
        for tag in ("ssc", "no_ssc"):
            src = Path(args.out) / "runs" / f"{tag}_seed0" / "model.safetensors"
            dst = toy_weights_dir() / f"{run_name(tag == 'ssc', 0, run)}.safetensors"
            shutil.copyfile(src, dst)
            print(f"shipped {dst}")
    return 0


def add_demo(group) -> None:
    d = group.add_parser("demo", help="train on the seen classes, evaluate every way of classifying, write a report")
    d.add_argument("--out", default="toyworld_report")
    d.add_argument("--seeds", type=int, default=1, help="training seeds (the table gives mean +- std)")
    d.add_argument("--steps", type=int, default=ToyRun.steps)
    d.add_argument("--batch-size", type=int, default=ToyRun.batch_size)
    d.add_argument("--train-scenes", type=int, default=ToyRun.train_scenes)
    d.add_argument("--test-scenes", type=int, default=ToyRun.test_scenes)
    d.add_argument("--workers", type=int, default=None, help="training processes (default: one per core)")
    d.add_argument("--ship", action="store_true", help="copy the seed-0 models to data_samples/toyworld")
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=cmd_demo)
