"""The toy world end to end: train EBSeg-lite on the seen classes, evaluate every way of classifying
the masks on all classes, with and without the SSC loss, over a few seeds.

    ebseg-lite toyworld demo --out toyworld_report        # the README's main job (make demo)

The command line lives in :mod:`ebseg_lite.cli.toyworld`; figures in :mod:`ebseg_lite.toyworld.report`.

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
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

import concurrent.futures as cf
import multiprocessing as mp

from tqdm.auto import tqdm

from ebseg_lite.builder import build_model
from ebseg_lite.eval.loop import evaluate_modes
from ebseg_lite.io.files import atomic_write
from ebseg_lite.toyworld.modes import MODES
from ebseg_lite.toyworld.presets import SeenVocabulary, encoder_figures, toy_weights_dir
from ebseg_lite.toyworld.readings import format_readings, paper_readings
from ebseg_lite.toyworld.report import write_figures
from ebseg_lite.toyworld.stats import chance_miou, format_report, spread, summary  # noqa: F401 (re-exported)
from ebseg_lite.toyworld.world import ToyWorld
from ebseg_lite.train import Trainer, get_train_preset
from ebseg_lite.train.logger import read_jsonl

@dataclasses.dataclass
class ToyRun:
    """Sizes of the toy experiment (defaults: the README's demo, a few minutes on 2 cores)."""
    steps: int = 500
    batch_size: int = 8
    lr: float = 1e-3
    train_scenes: int = 1000
    test_scenes: int = 300
    size: int = 128


def cache_dir() -> Path:
    """Where trained toy models are kept: ``$EBSEG_CACHE`` or ``~/.cache/ebseg_lite``."""
    return Path(os.environ.get("EBSEG_CACHE", Path.home() / ".cache" / "ebseg_lite")) / "toyworld"


def train_toy_model(*, ssc: bool = True, seed: int = 0, run: Optional[ToyRun] = None, out_dir=None,
                    progress: bool = True, callbacks=None, overrides: Optional[dict] = None):
    """Train EBSeg-lite (``toy`` preset, frozen toy CLIP/SAM, cached features) on seen-class scenes.

    Args:
        overrides: further :class:`~ebseg_lite.train.config.TrainConfig` fields (an ablation's
            variant, e.g. ``{"ssc_on": "B"}`` or ``{"model_overrides": {"sam": {"enabled": False}}}``).
    Returns the trained model's predictor (eval mode) and the trainer's logged rows.
    """
    run = run or ToyRun()
    out_dir = Path(out_dir or cache_dir() / run_name(ssc, seed, run))
    cfg = toy_train_config(ssc=ssc, seed=seed, run=run, out_dir=out_dir, overrides=overrides)
    world = ToyWorld()
    data = SeenVocabulary(world.dataset(run.train_scenes, seed=1000 + seed, split="train", size=run.size, keep=True), world)
    trainer = Trainer(cfg, dataset=data, progress=progress, callbacks=callbacks)
    history = trainer.fit()
    digest = json.dumps(encoder_digest())
    atomic_write(out_dir / "encoders.json", lambda tmp: Path(tmp).write_text(digest))
    trainer.model.eval()
    return trainer.predictor, history


def toy_train_config(*, ssc: bool, seed: int, run: ToyRun, out_dir, overrides: Optional[dict] = None):
    """The training config of one toy run: the ``toy`` preset at ``run``'s sizes, SSC on (lambda 10) or off."""
    return dataclasses.replace(get_train_preset("toy"), max_iters=run.steps, batch_size=run.batch_size, lr=run.lr,
                               ssc_weight=10.0 if ssc else 0.0, seed=seed, out_dir=str(out_dir), crop_size=run.size,
                               ckpt_every=max(run.steps, 1), log_every=max(1, run.steps // 50), **(overrides or {}))


def encoder_digest() -> Dict[str, str]:
    """SHA-256 (first 16 hex digits) of the toy CLIP and SAM files in use: a trained toy decoder
    belongs to exactly these encoders."""
    d = toy_weights_dir()
    out = {}
    for name in ("toy_clip", "toy_sam"):
        path = d / f"{name}.safetensors"
        out[name] = hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else "missing"
    return out


def finished_run(out_dir, cfg) -> bool:
    """True when ``out_dir`` holds a finished training of exactly ``cfg`` on the toy encoders in use
    (its ``config.json``, ``encoders.json`` and ``model.safetensors``), so a report can be rebuilt
    without retraining; anything else retrains."""
    out_dir = Path(out_dir)
    try:
        saved = json.loads((out_dir / "config.json").read_text())["train"]
        if json.loads((out_dir / "encoders.json").read_text()) != encoder_digest():
            return False
    except (OSError, ValueError, KeyError):
        return False
    want = json.loads(cfg.to_json())
    same = all(saved.get(k) == v for k, v in want.items() if k != "out_dir")
    return same and (out_dir / "model.safetensors").is_file()


def run_name(ssc: bool, seed: int, run: ToyRun) -> str:
    """File stem of a toy run (``ebseg_ssc_seed0_500x8_1000``); a learning rate other than the default's is
    part of it, so a run at another rate never takes, or overwrites, the default's shipped file."""
    lr = "" if run.lr == ToyRun.lr else f"_lr{run.lr:g}"
    return f"ebseg_{'ssc' if ssc else 'nossc'}_seed{seed}_{run.steps}x{run.batch_size}_{run.train_scenes}{lr}"


def toy_model(*, ssc: bool = True, seed: int = 0, run: Optional[ToyRun] = None, progress: bool = True):
    """The trained toy EBSeg: the shipped weights (``data_samples/toyworld``) for the default run, else
    the cache folder, else trained there first (a minute or two)."""
    run = run or ToyRun()
    shipped = toy_weights_dir() / f"{run_name(ssc, seed, run)}.safetensors"  # made by `toyworld demo --ship`
    folder = cache_dir() / run_name(ssc, seed, run)
    weights = shipped if shipped.is_file() else folder / "model.safetensors"
    if not shipped.is_file() and not finished_run(folder, toy_train_config(ssc=ssc, seed=seed, run=run, out_dir=folder)):
        train_toy_model(ssc=ssc, seed=seed, run=run, out_dir=folder, progress=progress)  # none, or for other encoders
    predictor = build_model("toy", checkpoint=str(weights))
    predictor.train_class_names = ToyWorld().seen_names
    return predictor


def held_out_scenes(n: int, *, seed: int = 99, size: int = 128, split: str = "benchmark"):
    """The held-out test scenes, fresh draws from ``seed`` (never a training seed): the "benchmark"
    split (every class can appear; a region is new with ADE20K-150's new-pixel share, see
    :class:`~ebseg_lite.toyworld.world.ToyWorld`), or "test" for every class equally often."""
    return ToyWorld().dataset(n, seed=seed, split=split, size=size)


def evaluate_toy_modes(predictor, dataset, *, modes: Optional[Dict[str, dict]] = None, seen=None,
                       progress: bool = True) -> Dict[str, dict]:
    """:func:`ebseg_lite.eval.loop.evaluate_modes` with the toy world's seen/new split for toy data
    (a benchmark or another vocabulary keeps the synonym rule). Each image is encoded once."""
    names = list(dataset.class_names)
    if seen is None and names == ToyWorld().class_names:
        seen = ToyWorld().seen
    return evaluate_modes(predictor, dataset, modes or MODES, seen=seen, progress=progress)


def _train_job(job) -> List[dict]:
    """One training in a worker process (one thread): returns the logged rows. The worker stops by
    itself if the process that started it dies (it would otherwise train on, orphaned)."""
    ssc, seed, run_fields, out_dir, overrides = job
    torch.set_num_threads(1)
    parent = os.getppid()

    def stop_if_orphaned(trainer, event, info):
        if os.getppid() != parent:
            os._exit(1)

    return train_toy_model(ssc=ssc, seed=seed, run=ToyRun(**run_fields), out_dir=out_dir, progress=False,
                           callbacks=[stop_if_orphaned], overrides=overrides)[1]


def train_jobs(jobs: Sequence[tuple], run: ToyRun, runs_dir: Path, *, workers: Optional[int] = None,
               progress: bool = True, dirs: Optional[Dict[tuple, Path]] = None,
               overrides: Optional[Dict[tuple, dict]] = None) -> Dict[tuple, List[dict]]:
    """Train every job of ``jobs`` (``(ssc, seed)`` or ``(ssc, seed, variant)``) into ``runs_dir/{ssc|no_ssc}_seed{seed}``
    (or ``dirs[job]``), with ``overrides[job]`` for an ablation variant; a finished run (its
    ``model.safetensors`` there) is kept, not retrained. One progress bar."""
    dirs = dirs or {job: Path(runs_dir) / f"{'ssc' if job[0] else 'no_ssc'}_seed{job[1]}" for job in jobs}
    overrides = overrides or {}
    done = {job: read_jsonl(dirs[job] / "log.jsonl") for job in jobs
            if finished_run(dirs[job], toy_train_config(ssc=job[0], seed=job[1], run=run, out_dir=dirs[job],
                                                        overrides=overrides.get(job)))}
    todo = [job for job in jobs if job not in done]
    workers = workers or max(1, min(len(todo), os.cpu_count() or 1))
    if workers <= 1 or len(todo) <= 1:
        done.update({job: train_toy_model(ssc=job[0], seed=job[1], run=run, out_dir=dirs[job], progress=progress,
                                          overrides=overrides.get(job))[1] for job in todo})
        return {job: done[job] for job in jobs}
    bar = tqdm(total=run.steps * len(todo), desc=f"train {len(todo)} models ({workers} processes)",
               disable=not progress)
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = {job: pool.submit(_train_job, (job[0], job[1], dataclasses.asdict(run), str(dirs[job]),
                                                 overrides.get(job)))
                   for job in todo}
        while not all(f.done() for f in futures.values()):
            time.sleep(1.0)
            steps = sum((read_jsonl(dirs[job] / "log.jsonl") or [{"step": 0}])[-1]["step"] for job in todo)
            bar.update(steps - bar.n)
        done.update({job: f.result() for job, f in futures.items()})
    bar.update(bar.total - bar.n)
    bar.close()
    return {job: done[job] for job in jobs}


def _eval_job(job) -> Dict[str, dict]:
    """One evaluation in a worker process (one thread): the toy model at ``checkpoint`` (with its
    variant's model overrides) on the held-out scenes, every mode."""
    checkpoint, overrides, n_scenes, size = job
    torch.set_num_threads(1)
    model = build_model("toy", checkpoint=checkpoint, **(overrides or {}))
    return evaluate_toy_modes(model, held_out_scenes(n_scenes, size=size), progress=False)


def evaluate_runs(checkpoints: Dict[tuple, tuple], run: ToyRun, *, workers: Optional[int] = None,
                  progress: bool = True) -> Dict[tuple, Dict[str, dict]]:
    """Evaluate trained toy models, each on ``run.test_scenes`` fresh test scenes (every mode):
    ``checkpoints`` maps a key to ``(model.safetensors path, build_model overrides)``. The models are
    independent, so they are evaluated side by side in ``workers`` processes of one thread each
    (default: one per core), as the trainings are; the results equal a serial evaluation's."""
    keys = list(checkpoints)
    workers = workers or max(1, min(len(keys), os.cpu_count() or 1))
    jobs = {k: (str(checkpoints[k][0]), checkpoints[k][1], run.test_scenes, run.size) for k in keys}
    bar = tqdm(total=len(keys), desc=f"evaluate {len(keys)} models on {run.test_scenes} scenes", disable=not progress)
    out: Dict[tuple, Dict[str, dict]] = {}
    if workers <= 1 or len(keys) <= 1:
        for k in keys:
            out[k] = _eval_job(jobs[k])
            bar.update(1)
    else:
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(_eval_job, jobs[k]): k for k in keys}
            for f in cf.as_completed(futures):
                out[futures[f]] = f.result()
                bar.update(1)
    bar.close()
    return {k: out[k] for k in keys}


def run_demo(out_dir="toyworld_report", *, seeds: Sequence[int] = (0,), run: Optional[ToyRun] = None,
             ssc_options: Sequence[bool] = (False, True), progress: bool = True, figures: bool = True,
             workers: Optional[int] = None, model_overrides: Optional[dict] = None) -> Dict:
    """Train (per seed, with and without SSC), evaluate every mode, write the report folder.

    The trainings run side by side in ``workers`` processes of one thread each (default: one per CPU
    core, at most one per training), the fastest use of a few cores for such small models.

    ``model_overrides``: changes to the ``toy`` model preset for every model of the run (as
    ``build_model``'s keyword arguments, e.g. ``{"sam": {"feature_scale": 0.054}}``), stored in
    ``metrics.json``; None is the preset.

    Writes ``metrics.json`` (per seed and mean/std), ``table.txt`` and figures; returns the metrics.
    """
    run = run or ToyRun()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    test = held_out_scenes(run.test_scenes, size=run.size)
    jobs = [(ssc, seed) for ssc in ssc_options for seed in seeds]
    mo = dict(model_overrides or {})
    histories = train_jobs(jobs, run, out / "runs", workers=workers, progress=progress,
                           overrides={job: {"model_overrides": mo} for job in jobs} if mo else None)
    per, models = {}, {}
    ckpt = {(ssc, seed): out / "runs" / f"{'ssc' if ssc else 'no_ssc'}_seed{seed}" / "model.safetensors"
            for ssc, seed in jobs}
    evaluated = evaluate_runs({job: (ckpt[job], mo or None) for job in jobs}, run, workers=workers, progress=progress)
    for ssc, seed in jobs:
        tag = "ssc" if ssc else "no_ssc"
        model = build_model("toy", checkpoint=str(ckpt[(ssc, seed)]), **mo)
        res = evaluated[(ssc, seed)]
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
               "seen": world.seen, "model_overrides": mo, "per_seed": per, "stats": stats, "chance": chance,
               **encoder_figures(), "encoder_digest": encoder_digest(), "seconds": None}
    table = format_report(stats, seeds) + (f"\n\nchance (uniformly random labels): all {chance['mIoU']:.1f}, seen "
                                           f"{chance['mIoU_seen']:.1f}, new {chance['mIoU_new']:.1f}")
    if "ssc" in per:   # the paper's claims, read off this run (SSC on, the official setting)
        summaries = {tag: [p["summary"] for p in rows] for tag, rows in per.items()}
        metrics["readings"] = paper_readings(summaries["ssc"], summaries.get("no_ssc"))
        table += "\n\n" + format_readings(metrics["readings"], len(seeds))
    if figures:
        equal = held_out_scenes(run.test_scenes, size=run.size, split="test")   # many instances of every new class
        metrics["affinity_gap"] = write_figures(out, models, test, per, world, affinity_dataset=equal)
    metrics["seconds"] = round(time.perf_counter() - t0, 1)
    atomic_write(out / "metrics.json", lambda tmp: Path(tmp).write_text(json.dumps(metrics, indent=1)))
    atomic_write(out / "table.txt", lambda tmp: Path(tmp).write_text(table + "\n"))
    return metrics
