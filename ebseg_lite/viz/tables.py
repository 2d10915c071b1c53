"""Seaborn plots of result tables: per-class IoU bars and the A/B/D ablation (paper tables 3, 4, 6).

``iou_frame`` and ``ablation_frame`` turn the evaluator's results and the toy demo's statistics into
tidy ``pandas`` frames (one row per number), which is what seaborn draws and what a reader can sort,
filter or print; the plot functions draw those frames. Figures are built without pyplot (any backend;
a notebook shows a returned figure once). Legend: K classes.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ebseg_lite.viz.eval_plots import NEW_COLOR, SEEN_COLOR, _tick_names

SPLITS = {"mIoU": "all", "mIoU_seen": "seen", "mIoU_new": "new"}
SSC_TAGS = {"no_ssc": "off", "ssc": "on"}


def iou_frame(results, class_names: Sequence[str], seen=None) -> pd.DataFrame:
    """One row per class with ground truth: ``class`` (first synonym), ``IoU`` (percent) and ``kind``
    ("seen", "new", or "all" without a seen mask), sorted by IoU, largest first.

    Args:
        results: ``SemSegEvaluator.compute()`` (its "IoU", percent, NaN without ground truth, and its
            "seen" when there is one), or the K IoUs themselves.
        class_names: K names.  seen: (K,) bool; default ``results["seen"]``.
    """
    iou = np.asarray(results["IoU"] if isinstance(results, dict) else results, dtype=float)  # (K,)
    k = len(class_names)
    if iou.shape != (k,):
        raise ValueError(f"{iou.size} per-class IoUs for {k} class names")
    if seen is None and isinstance(results, dict):
        seen = results.get("seen")
    if seen is not None:
        seen = np.asarray(seen.cpu() if hasattr(seen, "cpu") else seen, dtype=bool)
        if seen.shape != (k,):
            raise ValueError(f"seen must have shape ({k},), got {seen.shape}")
    kind = ["all"] * k if seen is None else ["seen" if s else "new" for s in seen]
    frame = pd.DataFrame({"class": _tick_names(class_names), "IoU": iou, "kind": kind})
    frame = frame[~np.isnan(iou)]
    return frame.sort_values("IoU", ascending=False, kind="stable").reset_index(drop=True)


def plot_iou_bars(results, class_names: Sequence[str], seen=None, *, ax=None, top: Optional[int] = None):
    """Horizontal bars of per-class IoU, best first, seen and new classes coloured apart, with a dashed
    line at each group's mean (mIoU seen / new as the evaluator reports it).

    Args:
        results, class_names, seen: as :func:`iou_frame`.  top: keep the ``top`` best classes only.
        ax: Axes to draw on; a new figure when None.
    Returns:
        the Axes.
    """
    frame = iou_frame(results, class_names, seen)
    means = frame.groupby("kind")["IoU"].mean()
    shown = frame if top is None else frame.head(top)
    if ax is None:
        ax = Figure(figsize=(6.5, 1.2 + 0.24 * max(len(shown), 1)), layout="constrained").subplots()
    palette = {"seen": SEEN_COLOR, "new": NEW_COLOR, "all": "tab:gray"}
    sns.barplot(shown, x="IoU", y="class", hue="kind", palette=palette, dodge=False, errorbar=None, ax=ax,
                hue_order=[h for h in ("seen", "new", "all") if h in set(shown["kind"])])
    for kind, value in means.items():
        ax.axvline(value, color=palette[kind], linestyle="--", linewidth=1,
                   label=f"mean {kind} {value:.1f}")
    ax.set_xlim(0, 100)
    ax.set_xlabel("IoU (%)")
    ax.set_ylabel("")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"per-class IoU (mIoU {frame['IoU'].mean():.1f}%" + (
        "" if top is None or top >= len(frame) else f"; best {top} of {len(frame)} shown") + ")")
    return ax


def _number(v):
    return (float(v["mean"]), float(v.get("std", 0.0))) if isinstance(v, dict) else (float(v), 0.0)


def ablation_frame(stats: Dict) -> pd.DataFrame:
    """The ablation as a tidy frame: columns ``mode``, ``ssc`` ("off", "on", or "" when not split by
    SSC), ``split`` ("all", "seen", "new"), ``mIoU`` and ``std`` (0 for a single run).

    Args:
        stats: ``{mode: {"mIoU": x, "mIoU_seen": x, "mIoU_new": x}}`` (one run; ``x`` a number or
            ``{"mean", "std"}`` over seeds), or ``{"no_ssc": that, "ssc": that}`` as the toy demo's
            ``metrics.json["stats"]``. Modes keep their order.
    """
    tagged = set(stats) <= set(SSC_TAGS) and len(stats) > 0
    groups = stats.items() if tagged else [("", stats)]
    rows = []
    for tag, modes in groups:
        for mode, values in modes.items():
            for key, split in SPLITS.items():
                if key in values:
                    mean, std = _number(values[key])
                    rows.append({"mode": mode, "ssc": SSC_TAGS.get(tag, ""), "split": split, "mIoU": mean,
                                 "std": std})
    if not rows:
        raise ValueError("no mIoU / mIoU_seen / mIoU_new numbers in the ablation statistics")
    return pd.DataFrame(rows)


def plot_ablation(stats: Dict, *, title: str = "mIoU (%) by way of classifying") -> Figure:
    """The ablation table as an annotated heatmap: one row per mode, one column per split (and SSC
    off / on), colour = mIoU, text = mean (+- std over seeds); the best of each column is framed.

    Args:
        stats: as :func:`ablation_frame`.
    Returns:
        the Figure.
    """
    frame = ablation_frame(stats)
    modes = list(dict.fromkeys(frame["mode"]))
    frame = frame.assign(column=[s if t == "" else f"{s}, SSC {t}" for s, t in zip(frame["split"], frame["ssc"])])
    columns = list(dict.fromkeys(frame["column"]))
    table = frame.pivot(index="mode", columns="column", values="mIoU").loc[modes, columns]
    std = frame.pivot(index="mode", columns="column", values="std").loc[modes, columns]
    text = np.where(std.to_numpy() > 0,
                    [[f"{m:.1f}\n± {s:.1f}" for m, s in zip(mr, sr)] for mr, sr in zip(table.to_numpy(), std.to_numpy())],
                    [[f"{m:.1f}" for m in mr] for mr in table.to_numpy()])
    fig = Figure(figsize=(2.0 + 1.15 * len(columns), 1.2 + 0.5 * len(modes)), layout="constrained")
    ax = fig.subplots()
    sns.heatmap(table, ax=ax, annot=text, fmt="", cmap="crest", annot_kws={"fontsize": 8}, linewidths=0.5,
                linecolor="white", cbar_kws={"label": "mIoU (%)"})
    best = np.nanargmax(table.to_numpy(), axis=0)
    for j, i in enumerate(best):
        ax.add_patch(Rectangle((j, i), 1, 1, fill=False, edgecolor="black", linewidth=2))
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.tick_params(axis="x", rotation=30)
    ax.set_title(title + "; framed: best of the column")
    return fig
