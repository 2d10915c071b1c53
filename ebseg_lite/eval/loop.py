"""Whole-image evaluation on a benchmark (the official protocol: short side 640, one confusion
matrix over all images, mIoU overall / seen / new with detectron2's semantics). Sliding-window
inference (``--sliding``, :mod:`ebseg_lite.inference.sliding`) is an option, not the paper's protocol.

    ebseg-lite eval --dataset ade20k_150 --checkpoint EBSeg_base.pth --preset vit_b --device cuda
    torchrun --nproc_per_node 2 -m ebseg_lite.cli eval --dataset ade20k_150 --preset vit_b

Under torchrun every process evaluates every W-th image (rank r: r, r + W, ...); the evaluator sums
the confusion matrices of all processes in ``compute()``, so the numbers equal a one-process run.
"""
from __future__ import annotations

from typing import Dict, Iterator, Optional, Sequence, Tuple

from tqdm.auto import tqdm

from ebseg_lite.distributed import rank_world
from ebseg_lite.eval.metrics import SemSegEvaluator
from ebseg_lite.inference.outputs import Encoded, Prediction
from ebseg_lite.inference.sliding import sliding_window_predict, window_and_stride


def iterate_predictions(predictor, dataset, modes: Dict[str, dict], *, class_names: Optional[Sequence[str]] = None,
                        seen=None, limit: Optional[int] = None, progress: bool = True, desc: str = "evaluate",
                        keep_intermediates: bool = False) -> Iterator[Tuple[int, dict, Encoded, Dict[str, Prediction]]]:
    """The one encode-once loop: every image of this process's share is encoded once, then
    classified once per mode (a mode is a dict of ``classify`` keyword arguments).

    Under ``torch.distributed`` this process takes images rank, rank + W, ...

    Yields:
        ``(index, item, encoded, {mode: Prediction})``.
    """
    names = list(class_names or dataset.class_names)
    seen = predictor.resolve_seen(names, seen)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    rank, world = rank_world()
    for i in tqdm(range(rank, n, world), desc=desc, disable=not progress or rank != 0):
        item = dataset[i]
        enc = predictor.encode(item["image"], keep_intermediates=keep_intermediates)
        yield i, item, enc, {m: predictor.classify(enc, names, seen=seen, **kw) for m, kw in modes.items()}


def evaluate_modes(predictor, dataset, modes: Dict[str, dict], *, seen=None, limit: Optional[int] = None,
                   progress: bool = True) -> Dict[str, dict]:
    """mIoU / mIoU_seen / mIoU_new / per-class IoU for every mode, each image encoded once.

    Args:
        predictor: an :class:`~ebseg_lite.inference.predictor.EBSegPredictor`.
        dataset: items with "image" and "label"; ``class_names`` and ``ignore_value`` attributes.
        modes: {name: classify kwargs}, e.g. ``{"B": dict(w_seen=(0, 1, 0), w_new=(0, 1, 0))}``.
        seen: (K,) bool, or None for the predictor's rule (the official mask for a benchmark's names, the synonym rule otherwise).
    """
    names = list(dataset.class_names)
    seen = predictor.resolve_seen(names, seen)
    ignore = getattr(dataset, "ignore_value", 255)
    evs = {m: SemSegEvaluator(len(names), ignore_index=ignore, seen=seen.numpy()) for m in modes}
    n = 0
    for _, item, _, preds in iterate_predictions(predictor, dataset, modes, seen=seen, limit=limit,
                                                 progress=progress):
        n += 1
        for m, pred in preds.items():
            evs[m].update(pred.labels.cpu(), item["label"])
    return {m: ev.compute() for m, ev in evs.items()}  # sums the matrices of all processes


def evaluate(model, dataset, *, limit: Optional[int] = None, progress: bool = True, sliding: bool = False,
             window: Optional[int] = None, stride: Optional[int] = None, seen=None, **classify_kwargs) -> Dict:
    """Evaluate ``model`` on a :class:`~ebseg_lite.data.datasets.SemSegDataset`.

    Text embeddings of the benchmark's vocabulary are computed once (cached); seen/new is the official
    mask for a benchmark's own names, the synonym rule against the training vocabulary otherwise. With ``sliding=True`` each image goes
    through :func:`~ebseg_lite.inference.sliding.sliding_window_predict` (``window`` / ``stride`` in pixels of
    the resized image) instead of whole-image ``model.predict``. When ``torch.distributed`` is
    initialised this process takes images rank, rank + W, ...; every process must call it, and every
    one gets the same (all-reduced) result. Returns the evaluator's dict plus counts.
    """
    names = list(dataset.class_names)
    seen = model.resolve_seen(names, seen)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if not sliding:
        res = evaluate_modes(model, dataset, {"main": classify_kwargs}, seen=seen, limit=limit, progress=progress)["main"]
    else:
        ev = SemSegEvaluator(len(names), ignore_index=dataset.ignore_value, seen=seen.numpy())
        rank, world = rank_world()
        for i in tqdm(range(rank, n, world), desc="eval (sliding)", disable=not progress or rank != 0):
            item = dataset[i]
            pred = sliding_window_predict(model, item["image"], names, window=window, stride=stride, seen=seen,
                                          **classify_kwargs)
            ev.update(pred.labels.cpu(), item["label"])
        res = ev.compute()  # sums the matrices of all processes
    res.update(num_images=n, num_classes=len(names), inference="sliding" if sliding else "whole")
    if sliding:
        res["window"], res["stride"] = window_and_stride(model.cfg.inference.short_side, window, stride)
    return res
