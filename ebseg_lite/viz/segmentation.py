"""Segmentations as one matplotlib figure: each image next to its label maps, one legend for all.

Every panel is drawn at the image's own size (a label map panel is the image with its regions blended
*and outlined* in their class colours, :func:`ebseg_lite.viz.overlays.overlay` without its legend), and a
single figure legend lists each class drawn in any panel with its swatch in exactly the outline colour,
"(seen)" or "(new)", and, for one image, its share of the pixels in every panel. Colours come from the
session palette (:mod:`ebseg_lite.viz.palette`), so a class keeps its colour across figures.
Built without pyplot (``matplotlib.figure.Figure``). Shapes follow :mod:`ebseg_lite.shapes`.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ebseg_lite.io.images import load_image
from ebseg_lite.viz.overlays import legend_entries, overlay
from ebseg_lite.viz.palette import class_colors

Maps = Mapping[str, object]


def _per_column(value, titles: Sequence[str]) -> Dict[str, object]:
    """A per-column setting given once for all columns, or as a dict keyed by column title."""
    if isinstance(value, Mapping):
        missing = [t for t in titles if t not in value]
        if missing:
            raise ValueError(f"no entry for the panels {missing}")
        return dict(value)
    return {t: value for t in titles}


def show_segmentations(images, maps: Union[Maps, Sequence[Maps]], class_names, *, seen=None,
                       alpha: float = 0.5, suptitle: Optional[str] = None, size: float = 3.0,
                       image_titles: Optional[Sequence[str]] = None, max_legend: int = 30) -> Figure:
    """R images, each followed by its M label maps, all panels at the image's size, one legend.

    Args:
        images: one image ((3, H, W) uint8 tensor, (H, W, 3) array, path) or a list of R of them.
        maps: for one image a dict title -> (H, W) label map; for R images a list of R such dicts
            (the same titles in every row). Ids outside the vocabulary's range (255) are unlabelled.
        class_names: the K names of every map, or a dict title -> names (a vocabulary per column).
        seen: optional (K,) bool (or a dict title -> (K,) bool): "(seen)" / "(new)" in legend and titles.
        alpha: colour weight inside regions (outlines are always drawn in the full colour).
        image_titles: R titles of the image panels (default "image" / "image i").
        max_legend: at most this many legend rows.
    Returns:
        ``matplotlib.figure.Figure`` with R x (1 + M) axes and one figure legend.
    """
    single = not isinstance(images, (list, tuple))
    images = [images] if single else list(images)
    rows = [maps] if isinstance(maps, Mapping) else list(maps)
    if len(rows) != len(images):
        raise ValueError(f"{len(images)} images but {len(rows)} rows of label maps")
    titles = list(rows[0])
    if not titles or any(list(r) != titles for r in rows):
        raise ValueError(f"every row needs the same, non-empty label-map titles; got {[list(r) for r in rows]}")
    names = _per_column(class_names, titles)
    seens = _per_column(seen, titles)
    img_titles = list(image_titles) if image_titles is not None else (
        ["image"] if len(images) == 1 else [f"image {i}" for i in range(len(images))])
    ncols = 1 + len(titles)
    fig = Figure(figsize=(size * ncols + 3.2, size * len(images) + 0.8), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(images), ncols, squeeze=False))
    legend: Dict[str, dict] = {}  # class name -> colour, seen tag, share of pixels per column
    for r, (image, row) in enumerate(zip(images, rows)):
        img = load_image(image)  # (3, H, W)
        axes[r, 0].imshow(img.permute(1, 2, 0).numpy(), interpolation="nearest")
        axes[r, 0].set_title(img_titles[r], fontsize=9)
        for j, title in enumerate(titles):
            labels = row[title]
            labels = labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels
            vocab, s = list(names[title]), seens[title]
            cols = class_colors(vocab)
            entries = legend_entries(labels, vocab, colors=cols)
            axes[r, j + 1].imshow(np.asarray(overlay(img, labels, vocab, alpha=alpha, legend=False, colors=cols)),
                                  interpolation="nearest")
            n_new = sum(1 for e in entries if s is not None and not bool(s[e.index]))
            tag = f"{len(entries)} classes" + (f", {n_new} new" if s is not None else "")
            axes[r, j + 1].set_title(f"{title}\n{tag}", fontsize=9)
            for e in entries:
                row_info = legend.setdefault(e.name, {"color": np.array(e.color) / 255.0, "shares": {},
                                                      "seen": None if s is None else bool(s[e.index])})
                row_info["shares"][title] = row_info["shares"].get(title, 0.0) + e.fraction / len(images)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    handles = _legend_handles(legend, titles, single, max_legend)
    what = "class (seen/new)" if any(v["seen"] is not None for v in legend.values()) else "class"
    if single:
        what += ": % of pixels in " + " | ".join(titles)
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, title=what, title_fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def _legend_handles(legend: Dict[str, dict], titles: List[str], single: bool, max_legend: int) -> List[Patch]:
    order = sorted(legend, key=lambda n: -max(legend[n]["shares"].values()))
    handles = []
    for name in order[:max_legend]:
        info = legend[name]
        tag = "" if info["seen"] is None else (" (seen)" if info["seen"] else " (new)")
        share = ""
        if single:
            share = "  " + " | ".join(f"{100 * info['shares'][t]:.0f}" if t in info["shares"] else "-"
                                      for t in titles)
        handles.append(Patch(facecolor=info["color"], edgecolor="black", label=f"{name}{tag}{share}"))
    if len(order) > max_legend:
        handles.append(Patch(facecolor="white", edgecolor="white", label=f"+{len(order) - max_legend} more"))
    return handles
