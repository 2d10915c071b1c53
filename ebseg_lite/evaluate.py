"""Whole-image evaluation on a benchmark (the official protocol: short side 640, one confusion
matrix over all images, mIoU overall / seen / new with detectron2's semantics).

    ebseg-lite eval --dataset ade20k_150 --checkpoint EBSeg_base.pth --preset vit_b --device cuda
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional

from tqdm.auto import tqdm

from .evaluation import SemSegEvaluator, format_table


def evaluate(model, dataset, *, limit: Optional[int] = None, progress: bool = True, **classify_kwargs) -> Dict:
    """Evaluate ``model`` on a :class:`~ebseg_lite.data.datasets.SemSegDataset`.

    Text embeddings of the benchmark's vocabulary are computed once (cached); seen/new follows the
    synonym rule against the model's training vocabulary. Returns the evaluator's dict plus counts.
    """
    names = list(dataset.class_names)
    seen = model.resolve_seen(names)
    ev = SemSegEvaluator(len(names), ignore_index=dataset.ignore_value, seen=seen.numpy())
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for i in tqdm(range(n), desc="eval", disable=not progress):
        item = dataset[i]
        pred = model.predict(item["image"], names, seen=seen, keep_intermediates=False, **classify_kwargs)
        ev.update(pred.labels.cpu(), item["label"])
    res = ev.compute()
    res.update(num_images=n, num_classes=len(names))
    return res


def cmd_eval(args) -> int:
    from .api import get_model
    from .data.datasets import build_dataset
    ckpt = None if args.checkpoint in (None, "none") else args.checkpoint
    model = get_model(args.preset, ckpt, device=args.device)
    ds = build_dataset(args.dataset, args.data_root, on_error="skip" if args.skip_bad else "raise")
    res = evaluate(model, ds, limit=args.limit, balancing=args.balancing)
    print(format_table(res, ds.class_names, max_rows=args.rows))
    if args.out:
        from .weights import atomic_write
        atomic_write(args.out, lambda tmp: Path(tmp).write_text(json.dumps(res, indent=1, default=float)))
        print(f"wrote {args.out}")
    return 0


def add_parser(sub):
    e = sub.add_parser("eval", help="mIoU (overall / seen / new) on a benchmark")
    e.add_argument("--dataset", required=True, help="e.g. ade20k_150, ade20k_847, pcontext_59, pcontext_459, voc_20")
    e.add_argument("--data-root", default=None, help="detectron2-layout root (else $EBSEG_DATA / $DETECTRON2_DATASETS)")
    e.add_argument("--preset", default="vit_b", choices=["tiny", "vit_b", "vit_l"])
    e.add_argument("--checkpoint", default="released", help='"released", a path, or "none"')
    e.add_argument("--device", default="auto")
    e.add_argument("--balancing", default="official", choices=["official", "paper"])
    e.add_argument("--limit", type=int, default=None, help="first N images only")
    e.add_argument("--rows", type=int, default=20, help="per-class rows to print")
    e.add_argument("--skip-bad", action="store_true", help="skip unreadable/mismatched items (counted) instead of failing")
    e.add_argument("--out", default=None, help="write the results as JSON")
    e.set_defaults(func=cmd_eval)
