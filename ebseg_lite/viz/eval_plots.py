"""Plots of evaluation results for the notebooks: per-class IoU bars and the confusion matrix.

Like :mod:`ebseg_lite.viz.overlays`, nothing here needs pyplot: without an ``ax`` a new
``matplotlib.figure.Figure`` is made (any backend, Agg included); each function returns the Axes it
drew on (``ax.figure`` is its figure). Inputs are what :mod:`ebseg_lite.eval.metrics` produces.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ebseg_lite.viz.overlays import class_colors

from ebseg_lite.vocabulary import display_name

SEEN_COLOR, NEW_COLOR, MISSING_COLOR = "tab:blue", "tab:orange", "0.6"


def _new_axes(width: float, height: float):
    return Figure(figsize=(min(width, 40.0), min(height, 40.0)), layout="constrained").subplots()


def _tick_names(class_names: Sequence[str]):
    return [display_name(n) for n in class_names]


def plot_per_class_iou(results, class_names: Sequence[str], seen=None, ax=None):
    """Bar chart of per-class IoU (percent), seen and new classes coloured apart.

    Args:
        results: the dict of ``SemSegEvaluator.compute()`` / ``evaluate()`` (its "IoU", percent, NaN
            for classes without ground truth), or the K IoUs (percent) themselves.
        class_names: K names (ticks show the first synonym).
        seen: (K,) bool; default ``results["seen"]`` when present. Without it the bars take the
            classes' own colours (``class_colors``).
        ax: Axes to draw on; a new figure when None.
    Returns:
        the Axes. Classes without ground truth get no bar but an "n/a" mark at 0.
    """
    ious = results["IoU"] if isinstance(results, dict) else results
    iou = np.asarray(ious, dtype=float)  # (K,)
    k = len(class_names)
    if iou.shape != (k,):
        raise ValueError(f"{iou.size} per-class IoUs for {k} class names")
    if seen is None and isinstance(results, dict):
        seen = results.get("seen")
    if seen is not None:
        seen = np.asarray(seen.cpu() if hasattr(seen, "cpu") else seen, dtype=bool)
        if seen.shape != (k,):
            raise ValueError(f"seen must have shape ({k},), got {seen.shape}")
    ax = ax if ax is not None else _new_axes(2.0 + 0.25 * k, 4.0)
    missing = np.isnan(iou)
    if seen is None:
        colors = class_colors(class_names) / 255.0  # (K, 3)
    else:
        colors = [SEEN_COLOR if s else NEW_COLOR for s in seen]
    ax.bar(np.arange(k), np.where(missing, 0.0, iou), color=colors, edgecolor="black", linewidth=0.5)
    for i in np.flatnonzero(missing):
        ax.text(i, 1.0, "n/a", ha="center", va="bottom", rotation=90, fontsize=7, color=MISSING_COLOR)
    ax.set_xticks(np.arange(k), _tick_names(class_names), rotation=90, fontsize=7 if k > 30 else None)
    ax.set_xlim(-0.6, k - 0.4)
    ax.set_ylim(0, 105)
    ax.set_xlabel("class")
    ax.set_ylabel("IoU (%)")
    miou = float(np.nanmean(iou)) if (~missing).any() else float("nan")
    ax.set_title(f"per-class IoU (mIoU {miou:.1f}%)")
    handles = [Patch(facecolor="white", edgecolor=MISSING_COLOR, label="n/a: no ground-truth pixel")]
    if seen is not None:
        handles = [Patch(color=SEEN_COLOR, label=f"seen ({int(seen.sum())})"),
                   Patch(color=NEW_COLOR, label=f"new ({int((~seen).sum())})")] + handles
    ax.legend(handles=handles, loc="upper right", fontsize=8)
    return ax


def confusion_from_evaluator(evaluator) -> np.ndarray:
    """Row-normalised confusion matrix of an evaluator's (local, not all-reduced) counts.

    Returns:
        (K, K) float array, rows = ground truth, columns = prediction: entry [g, p] is the share of
        class g's labelled pixels predicted as p. Ignored pixels are left out; a row whose class has
        no ground-truth pixel is NaN (as its IoU is).
    """
    counts = evaluator.conf[:-1, :-1].T.astype(np.float64)  # evaluator: [pred, gt] -> (K, K) [gt, pred]
    total = counts.sum(1, keepdims=True)  # (K, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, counts / total, np.nan)


def plot_confusion(conf, class_names: Sequence[str], ax=None, *, cmap: str = "Blues"):
    """Labelled heatmap of a (K, K) confusion matrix (rows ground truth, columns prediction).

    Args:
        conf: e.g. ``confusion_from_evaluator(ev)``; NaN rows (no ground truth) stay blank.
        class_names: K names; tick labels are tinted with their ``class_colors``.
        ax: Axes to draw on; a new figure when None.
    Returns:
        the Axes (its figure also holds the colorbar).
    """
    c = np.asarray(conf, dtype=float)
    k = len(class_names)
    if c.shape != (k, k):
        raise ValueError(f"conf must have shape ({k}, {k}) to match class_names, got {c.shape}")
    ax = ax if ax is not None else _new_axes(3.0 + 0.3 * k, 2.5 + 0.3 * k)
    vmax = 1.0 if np.nanmax(c, initial=0.0) <= 1.0 else None  # shares in [0, 1], raw counts otherwise
    im = ax.imshow(c, cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest", aspect="auto")
    names = _tick_names(class_names)
    small = 7 if k > 30 else None
    ax.set_xticks(np.arange(k), names, rotation=90, fontsize=small)
    ax.set_yticks(np.arange(k), names, fontsize=small)
    for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
        for text, rgb in zip(labels, class_colors(class_names) / 255.0):
            text.set_bbox(dict(facecolor=rgb, alpha=0.35, edgecolor="none", pad=1))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("ground-truth class")
    ax.set_title("confusion (row-normalised)" if vmax == 1.0 else "confusion")
    ax.figure.colorbar(im, ax=ax, label="share of the class's pixels" if vmax == 1.0 else "pixels")
    return ax
