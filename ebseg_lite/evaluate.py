"""Whole-image evaluation on a benchmark (the official protocol: short side 640, one confusion
matrix over all images, mIoU overall / seen / new with detectron2's semantics). Sliding-window
inference (``--sliding``, :mod:`ebseg_lite.sliding`) is an option, not the paper's protocol.

    ebseg-lite eval --dataset ade20k_150 --checkpoint EBSeg_base.pth --preset vit_b --device cuda
    torchrun --nproc_per_node 2 -m ebseg_lite.cli eval --dataset ade20k_150 --preset vit_b

Under torchrun every process evaluates every W-th image (rank r: r, r + W, ...); the evaluator sums
the confusion matrices of all processes in ``compute()``, so the numbers equal a one-process run.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from .evaluation import SemSegEvaluator, format_table
from .sliding import sliding_window_predict, window_and_stride


def _rank_world() -> Tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def evaluate(model, dataset, *, limit: Optional[int] = None, progress: bool = True, sliding: bool = False,
             window: Optional[int] = None, stride: Optional[int] = None, **classify_kwargs) -> Dict:
    """Evaluate ``model`` on a :class:`~ebseg_lite.data.datasets.SemSegDataset`.

    Text embeddings of the benchmark's vocabulary are computed once (cached); seen/new follows the
    synonym rule against the model's training vocabulary. With ``sliding=True`` each image goes
    through :func:`~ebseg_lite.sliding.sliding_window_predict` (``window`` / ``stride`` in pixels of
    the resized image) instead of whole-image ``model.predict``. When ``torch.distributed`` is
    initialised this process takes images rank, rank + W, ...; every process must call it, and every
    one gets the same (all-reduced) result. Returns the evaluator's dict plus counts.
    """
    names = list(dataset.class_names)
    seen = model.resolve_seen(names)
    ev = SemSegEvaluator(len(names), ignore_index=dataset.ignore_value, seen=seen.numpy())
    n = len(dataset) if limit is None else min(limit, len(dataset))
    rank, world = _rank_world()
    for i in tqdm(range(rank, n, world), desc="eval", disable=not progress or rank != 0):
        item = dataset[i]
        if sliding:
            pred = sliding_window_predict(model, item["image"], names, window=window, stride=stride, seen=seen,
                                          **classify_kwargs)
        else:
            pred = model.predict(item["image"], names, seen=seen, keep_intermediates=False, **classify_kwargs)
        ev.update(pred.labels.cpu(), item["label"])
    res = ev.compute()  # sums the matrices of all processes
    res.update(num_images=n, num_classes=len(names), inference="sliding" if sliding else "whole")
    if sliding:
        res["window"], res["stride"] = window_and_stride(model.cfg.inference.short_side, window, stride)
    return res


def _init_distributed(device: str) -> Tuple[bool, str]:
    """Under torchrun (WORLD_SIZE > 1) start the process group: nccl on CUDA (one GPU per process,
    cuda:LOCAL_RANK), gloo on the CPU. Returns (started here, device to use)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False, device
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here; use --device cpu")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    elif device == "auto":
        device = "cpu"
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return True, device


def cmd_eval(args) -> int:
    from .api import get_model
    from .data.datasets import build_dataset
    started, device = _init_distributed(args.device)
    try:
        ckpt = None if args.checkpoint in (None, "none") else args.checkpoint
        model = get_model(args.preset, ckpt, device=device)
        ds = build_dataset(args.dataset, args.data_root, on_error="skip" if args.skip_bad else "raise")
        res = evaluate(model, ds, limit=args.limit, balancing=args.balancing, sliding=args.sliding,
                       window=args.window, stride=args.stride)
        if _rank_world()[0] == 0:
            print(format_table(res, ds.class_names, max_rows=args.rows))
            if args.out:
                from .weights import atomic_write
                atomic_write(args.out, lambda tmp: Path(tmp).write_text(json.dumps(res, indent=1, default=float)))
                print(f"wrote {args.out}")
    finally:
        if started:
            dist.destroy_process_group()
    return 0


def add_parser(sub):
    e = sub.add_parser("eval", help="mIoU (overall / seen / new) on a benchmark")
    e.add_argument("--dataset", required=True, help="e.g. ade20k_150, ade20k_847, pcontext_59, pcontext_459, voc_20")
    e.add_argument("--data-root", default=None, help="detectron2-layout root (else $EBSEG_DATA / $DETECTRON2_DATASETS)")
    e.add_argument("--preset", default="vit_b", choices=["tiny", "toy", "vit_b", "vit_l"])
    e.add_argument("--checkpoint", default="released", help='"released", a path, or "none"')
    e.add_argument("--device", default="auto", help="auto, cpu, cuda (under torchrun: cuda:LOCAL_RANK)")
    e.add_argument("--balancing", default="official", choices=["official", "paper"])
    e.add_argument("--limit", type=int, default=None, help="first N images only")
    e.add_argument("--rows", type=int, default=20, help="per-class rows to print")
    e.add_argument("--skip-bad", action="store_true", help="skip unreadable/mismatched items (counted) instead of failing")
    e.add_argument("--sliding", action="store_true",
                   help="sliding-window inference (an option; the official protocol is whole-image)")
    e.add_argument("--window", type=int, default=None, help="sliding window side (default: the test short side)")
    e.add_argument("--stride", type=int, default=None, help="sliding stride (default: 2/3 of the window)")
    e.add_argument("--out", default=None, help="write the results as JSON")
    e.set_defaults(func=cmd_eval)
