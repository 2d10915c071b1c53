"""Pictures of segmentations, affinity matrices and class probabilities.

Everything here draws without a display: overlays are PIL images, plots are ``matplotlib.figure.Figure``
objects built without pyplot (so any backend works, Agg included, and a notebook shows a returned
figure exactly once). Shapes follow ``ebseg_lite.shapes``.

Colours come from :mod:`ebseg_lite.viz.palette` (colorcet's glasbey palette, handed out per class name
in the order names are first drawn, so a class keeps one colour across all figures of a session and
the first classes get maximally distinct colours). An overlay blends the colours over the image *and*
draws every region's outline in the unblended colour, so the legend swatches match what is drawn;
``side_by_side=True`` adds the label map itself in those colours next to the blend.
"""
from __future__ import annotations

import os
import pathlib
from typing import List, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from ebseg_lite.io.images import load_image
from ebseg_lite.io.files import atomic_write
from ebseg_lite.viz.palette import PALETTE, boundaries, class_colors, label_map_rgb  # noqa: F401 (re-exported)

IGNORE_LABEL = 255  # label value drawn as "unlabelled" (the datasets' ignore index); so are negatives


class LegendEntry(NamedTuple):
    """One legend row: class index, name, (r, g, b) colour and fraction of the image's pixels."""
    index: int
    name: str
    color: tuple
    fraction: float


def _labels_array(labels, num_classes: int) -> np.ndarray:
    lab = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if lab.ndim != 2 or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be an (H, W) integer map, got shape {lab.shape} dtype {lab.dtype}")
    bad = np.unique(lab[(lab >= num_classes) & (lab != IGNORE_LABEL)])
    if bad.size:
        raise ValueError(f"labels contain class ids {bad[:10].tolist()} but the vocabulary has {num_classes} "
                         f"classes (ids 0..{num_classes - 1}; {IGNORE_LABEL} or negative = unlabelled)")
    return lab.astype(np.int64)  # (H, W)


def _colors_for(class_names: Sequence[str], colors) -> np.ndarray:
    if colors is None:
        return class_colors(class_names)
    cols = np.asarray(colors, dtype=np.uint8)
    if cols.shape != (len(class_names), 3):
        raise ValueError(f"colors must have shape ({len(class_names)}, 3), got {cols.shape}")
    return cols


def legend_entries(labels, class_names: Sequence[str], *, colors=None) -> List[LegendEntry]:
    """The classes present in ``labels``, largest area first (ties: lower index first).

    Args:
        labels: (H, W) integer map of class indices into ``class_names``.
        class_names: K names.
        colors: optional (K, 3) uint8 override of ``class_colors(class_names)``.
    Returns:
        list of ``LegendEntry``; classes with no pixel are left out.
    """
    lab = _labels_array(labels, len(class_names))
    cols = _colors_for(class_names, colors)
    counts = np.bincount(lab[(lab >= 0) & (lab < len(class_names))], minlength=len(class_names))  # (K,)
    order = sorted(np.flatnonzero(counts).tolist(), key=lambda k: (-counts[k], k))
    return [LegendEntry(k, str(class_names[k]), tuple(int(c) for c in cols[k]), float(counts[k] / lab.size))
            for k in order]


def _font(size: int = 14):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def seen_tag(seen, k: int) -> str:
    """" (seen)" / " (new)" for class k when a (K,) seen mask is given, else ""."""
    return "" if seen is None else (" (seen)" if bool(seen[k]) else " (new)")


def overlay(image, labels, class_names: Sequence[str], *, alpha: float = 0.5, legend: bool = True,
            title: Optional[str] = None, colors=None, max_legend: int = 20, seen=None, outline: int = 1,
            side_by_side: bool = False, scale: int = 1) -> Image.Image:
    """Blend a label map's colours over an image, outline each region in its full colour, legend on the right.

    Args:
        image: (3, H, W) uint8 tensor, or anything ``load_image`` accepts.
        labels: (H, W) integer map (long tensor or array); 255 or negative = unlabelled (not coloured).
        class_names: K names; colours from ``class_colors`` unless ``colors`` (K, 3) is given.
        alpha: weight of the colour inside regions (0 = image only, 1 = colours only).
        legend: draw the legend panel (present classes by area, see ``legend_entries``).
        title: optional text in a strip above the picture.
        max_legend: at most this many legend rows; the rest are summarised as "+n more".
        seen: optional (K,) bool; legend rows then say "(seen)" or "(new)".
        outline: width in pixels of the region outlines drawn in the unblended colour (0 = none).
        side_by_side: also draw the label map in pure colours right of the blend (same size).
        scale: integer upscaling (nearest neighbour) of picture and labels, for small images.
    Returns:
        RGB PIL image at least (W * scale, H * scale) in size (the picture sits at the top left,
        below the title; with ``side_by_side`` the label map follows it).
    """
    img = load_image(image)  # (3, H, W)
    h, w = img.shape[-2:]
    lab = _labels_array(labels, len(class_names))  # (H, W)
    if lab.shape != (h, w):
        raise ValueError(f"labels {lab.shape} and image {(h, w)} differ in size; resize the labels with "
                         "nearest-neighbour interpolation (or the image) first")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if int(scale) < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    cols = _colors_for(class_names, colors)
    pixels = img.permute(1, 2, 0).numpy()  # (H, W, 3)
    if scale > 1:
        pixels = pixels.repeat(scale, 0).repeat(scale, 1)
        lab_big = lab.repeat(scale, 0).repeat(scale, 1)
    else:
        lab_big = lab
    valid = (lab_big >= 0) & (lab_big < len(class_names))  # (H', W')
    color_map = label_map_rgb(lab_big, cols).astype(np.float32)  # (H', W', 3)
    mixed = np.where(valid[..., None], (1 - alpha) * pixels.astype(np.float32) + alpha * color_map, pixels)
    if outline > 0:
        edge = boundaries(np.where(valid, lab_big, -1), outline) & valid
        mixed[edge] = color_map[edge]
    picture = Image.fromarray(np.round(mixed).astype(np.uint8), "RGB")
    if side_by_side:
        both = Image.new("RGB", (2 * picture.width + 4, picture.height), "white")
        both.paste(picture, (0, 0))
        both.paste(Image.fromarray(label_map_rgb(lab_big, cols)), (picture.width + 4, 0))
        picture = both
    if not legend and title is None:
        return picture

    font, row, pad, box = _font(14), 20, 8, 14
    rows = []
    if legend:
        entries = legend_entries(lab, class_names, colors=cols)
        rows = [(e.color, f"{e.name[:40]}{seen_tag(seen, e.index)}  {100 * e.fraction:.1f}%")
                for e in entries[:max_legend]]
        if len(entries) > max_legend:
            rows.append((None, f"+{len(entries) - max_legend} more"))
    measure = ImageDraw.Draw(picture)
    text_w = max([measure.textlength(t, font=font) for _, t in rows], default=0)
    panel_w = int(pad + box + pad + text_w + pad) if rows else 0
    title_h = row + pad if title else 0
    pw, ph = picture.size
    canvas = Image.new("RGB", (max(pw + panel_w, int(measure.textlength(title or "", font=font)) + 2 * pad),
                               title_h + max(ph, pad + row * len(rows))), "white")
    canvas.paste(picture, (0, title_h))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, pad // 2), title, fill="black", font=font)
    for i, (color, text) in enumerate(rows):
        y = title_h + pad + i * row
        if color is not None:
            draw.rectangle([pw + pad, y, pw + pad + box, y + box], fill=color, outline="black")
        draw.text((pw + 2 * pad + box, y), text, fill="black", font=font)
    return canvas


def save_overlay(path: Union[str, os.PathLike], image, labels, class_names: Sequence[str],
                 **kwargs) -> pathlib.Path:
    """``overlay(image, labels, class_names, **kwargs)`` written as a PNG at ``path``, atomically.

    The PNG goes to a temporary file in the same folder first and is then moved over ``path`` with
    ``os.replace``, so a reader never sees a half-written file. Returns the path.
    """
    picture = overlay(image, labels, class_names, **kwargs)
    return atomic_write(path, lambda tmp: picture.save(tmp, format="PNG"))


def _as_matrix(m) -> np.ndarray:
    a = m.detach().float().cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m, dtype=float)
    if a.ndim != 2:
        raise ValueError(f"each heatmap must be a 2-D matrix, got shape {a.shape}")
    return a


def _check_ticks(labels: Sequence[str], n: int) -> List[str]:
    if len(labels) != n:
        raise ValueError(f"{len(labels)} tick labels for an axis of length {n}")
    return [str(t) for t in labels]


def show_heatmaps(matrices, *, row_labels: Optional[Sequence[str]] = None,
                  col_labels: Optional[Sequence[str]] = None, titles=None, cmap: str = "viridis",
                  xlabel: Optional[str] = None, ylabel: Optional[str] = None) -> Figure:
    """Heatmaps side by side, each with a title, tick labels and its own colorbar.

    Args:
        matrices: one (R, Cc) matrix, an (M, R, Cc) stack, or a list of M 2-D matrices
            (tensors or arrays), e.g. affinity matrices between queries and classes.
        row_labels, col_labels: tick labels (length R and Cc), shared by all panels.
        titles: one string per matrix (a single string for a single matrix).
        cmap: matplotlib colormap name.
        xlabel, ylabel: axis names, shared by all panels.
    Returns:
        ``matplotlib.figure.Figure`` with M axes (plus colorbars).
    """
    if isinstance(matrices, (torch.Tensor, np.ndarray)) and matrices.ndim == 2:
        matrices = [matrices]
    mats = [_as_matrix(m) for m in matrices]
    if not mats:
        raise ValueError("show_heatmaps needs at least one matrix")
    titles = [titles] if isinstance(titles, str) else list(titles or [f"matrix {i}" for i in range(len(mats))])
    if len(titles) != len(mats):
        raise ValueError(f"{len(titles)} titles for {len(mats)} matrices")
    r, c = mats[0].shape
    fig = Figure(figsize=(len(mats) * min(12, 2.5 + 0.3 * c), min(12, 2 + 0.3 * r)), layout="constrained")
    for i, (mat, ax) in enumerate(zip(mats, np.atleast_1d(fig.subplots(1, len(mats))))):
        im = ax.imshow(mat, cmap=cmap, aspect="auto", interpolation="nearest")
        ax.set_title(titles[i])
        if row_labels is not None:
            ax.set_yticks(range(mat.shape[0]), _check_ticks(row_labels, mat.shape[0]))
        if col_labels is not None:
            ax.set_xticks(range(mat.shape[1]), _check_ticks(col_labels, mat.shape[1]), rotation=90)
        if xlabel:
            ax.set_xlabel(xlabel)
        if ylabel:
            ax.set_ylabel(ylabel)
        fig.colorbar(im, ax=ax)
    return fig


def plot_class_probs(probs, class_names: Sequence[str], top: int = 10, title: Optional[str] = None) -> Figure:
    """Horizontal bar chart of the ``top`` most probable classes, the largest on top.

    Args:
        probs: (K,) probabilities (tensor or array).
        class_names: K names (bars use ``class_colors``).
        top: how many classes to show (at most K).
    Returns:
        ``matplotlib.figure.Figure`` with one axes.
    """
    p = probs.detach().float().cpu().numpy() if isinstance(probs, torch.Tensor) else np.asarray(probs, dtype=float)
    if p.ndim != 1 or p.shape[0] != len(class_names):
        raise ValueError(f"probs must have shape ({len(class_names)},) to match class_names, got {p.shape}")
    order = np.argsort(-p, kind="stable")[:max(1, top)]  # (n,)
    cols = class_colors([class_names[k] for k in order]) / 255.0  # (n, 3)
    fig = Figure(figsize=(6, 0.8 + 0.35 * len(order)), layout="constrained")
    ax = fig.subplots()
    bars = ax.barh(range(len(order)), p[order], color=cols, edgecolor="black", linewidth=0.5)
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels([class_names[k] for k in order])
    ax.invert_yaxis()
    ax.bar_label(bars, fmt="%.3f", padding=2)
    ax.set_xlim(0, 1.15 * max(1.0, float(p.max())))  # room for the value labels
    ax.set_xlabel("probability")
    ax.set_title(title or f"top-{len(order)} classes")
    return fig
