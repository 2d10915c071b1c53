"""Small helpers the numbered notebooks share: pictures of feature maps and masks, and the few
summaries the pictures are about (cosine maps, a PCA-to-RGB projection, which query covers which
ground-truth segment, per-branch accuracy on matched queries).

Like :mod:`ebseg_lite.viz.overlays`, figures are built without pyplot (``matplotlib.figure.Figure``), so a
notebook shows each returned figure once and any backend works. Shapes follow :mod:`ebseg_lite.shapes`.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ebseg_lite.eval.affinity import best_query_per_segment
from ebseg_lite.eval.loop import iterate_predictions
from ebseg_lite.viz.overlays import class_colors


def _np(x) -> np.ndarray:
    """Tensor or array -> numpy; uint8 stays uint8 (an image), everything else float."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return x.numpy() if x.dtype == torch.uint8 else x.float().numpy()
    return np.asarray(x)


# ----------------------------------------------------------------------------- summaries
def cosine_maps(features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every token with every class: (C, h, w), (K, C) -> (K, h, w)."""
    f = F.normalize(features.float(), dim=0)
    t = F.normalize(text.float(), dim=-1)
    return torch.einsum("kc,chw->khw", t, f)


def pca_rgb(*features: torch.Tensor, quantile: float = 0.01) -> List[np.ndarray]:
    """Project feature maps onto their first three principal components, one shared basis.

    A shared basis (fitted on the tokens of all maps together) makes colours comparable between
    maps, e.g. SAM features before and after fusion.

    Args:
        features: maps (E, h_i, w_i) with the same E.
        quantile: each component is clipped to its [q, 1 - q] quantiles before scaling to [0, 1].
    Returns:
        one (h_i, w_i, 3) float array in [0, 1] per map.
    """
    if not features:
        raise ValueError("pca_rgb needs at least one feature map")
    flat = [f.detach().float().cpu().flatten(1).t() for f in features]  # (h_i*w_i, E)
    x = torch.cat(flat)
    mean = x.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(x - mean, full_matrices=False)     # rows of v: principal directions
    basis = v[:3].t()                                             # (E, 3)
    proj = (x - mean) @ basis                                     # (T, 3)
    lo = torch.quantile(proj, quantile, dim=0)
    hi = torch.quantile(proj, 1 - quantile, dim=0)
    rgb = ((proj - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1)
    out, start = [], 0
    for f, fl in zip(features, flat):
        n = fl.shape[0]
        out.append(rgb[start:start + n].reshape(*f.shape[-2:], 3).numpy())
        start += n
    return out


def fisher_ratio(features: torch.Tensor, label: torch.Tensor, ignore_value: int = 255) -> float:
    """Between-class over within-class variance of the pixels of a feature map (higher = classes
    easier to tell apart linearly). The label is resized to the map with nearest neighbours.

    Args:
        features: (E, h, w).  label: (H, W) class ids.
    """
    lab = F.interpolate(label[None, None].float().cpu(), size=features.shape[-2:], mode="nearest")[0, 0].long().flatten()
    x = features.detach().float().cpu().flatten(1).t()            # (h*w, E)
    keep = lab != ignore_value
    x, lab = x[keep], lab[keep]
    mu = x.mean(0)
    between = within = 0.0
    for c in lab.unique():
        xc = x[lab == c]
        between += len(xc) * float(((xc.mean(0) - mu) ** 2).sum())
        within += float(((xc - xc.mean(0)) ** 2).sum())
    return between / max(within, 1e-12)


def matched_queries(mask_logits: torch.Tensor, label: Optional[torch.Tensor] = None, *,
                    class_probs: Optional[torch.Tensor] = None, n: int = 4):
    """Queries worth looking at: with a label, the best-covering query of each ground-truth class
    (:func:`ebseg_lite.eval.affinity.best_query_per_segment`); without one, the ``n`` queries whose
    largest non-void class probability is highest.

    Args:
        mask_logits: (N, Hm, Wm).  label: (H, W) or None.  class_probs: (N, K+1), void last.
    Returns:
        queries (M,) long and their classes (M,) long (ground truth, or the predicted class).
    """
    if label is not None:
        classes, queries = best_query_per_segment(mask_logits, label)
        return queries, classes
    if class_probs is None:
        raise ValueError("matched_queries needs a label or class_probs")
    conf, cls = class_probs[:, :-1].max(-1)
    queries = conf.argsort(descending=True)[:n]
    return queries, cls[queries]


@torch.no_grad()
def branch_accuracy(model, dataset, class_names: Sequence[str], seen, *, n: Optional[int] = None,
                    branches: Sequence[str] = ("A", "B", "D")) -> Dict[str, Dict[str, float]]:
    """Top-1 accuracy of each branch's class probabilities on the query that covers each
    ground-truth segment best, for seen and new classes apart (a mask-quality-free view of
    classification). Each image is encoded once.

    Args:
        branches: any of "A", "B", "D" (``pred.probs``) and "final" (the balanced table, void dropped).
    Returns:
        {branch: {"seen": acc, "new": acc, "n_seen": count, "n_new": count}} (acc NaN without segments).
    """
    seen_t = torch.as_tensor(seen, dtype=torch.bool)
    hits = {b: {True: 0, False: 0} for b in branches}
    counts = {True: 0, False: 0}
    for _, item, enc, preds in iterate_predictions(model, dataset, {"main": {}}, class_names=class_names,
                                                   seen=seen_t, limit=n, progress=False):
        pred = preds["main"]
        tables = {b: pred.class_probs[:, :-1] if b == "final" else pred.probs[b] for b in branches}
        classes, queries = best_query_per_segment(enc.masks, item["label"])
        for c, q in zip(classes.tolist(), queries.tolist()):
            s = bool(seen_t[c])
            counts[s] += 1
            for b in branches:
                hits[b][s] += int(tables[b][q].argmax()) == c
    acc = lambda h, c: h / c if c else float("nan")
    return {b: {"seen": acc(hits[b][True], counts[True]), "new": acc(hits[b][False], counts[False]),
                "n_seen": counts[True], "n_new": counts[False]} for b in branches}


# ----------------------------------------------------------------------------- pictures
def show_grid(panels: Sequence, *, titles: Optional[Sequence[str]] = None, ncols: Optional[int] = None,
              row_labels: Optional[Sequence[str]] = None, cmap: str = "viridis", colorbar: bool = True,
              vmin: Optional[float] = None, vmax: Optional[float] = None, suptitle: Optional[str] = None,
              size: float = 2.2, colorbar_label: Optional[str] = None) -> Figure:
    """A grid of pictures: (H, W, 3) panels are drawn as images, (H, W) panels as heatmaps.

    Heatmaps share one colour scale (``vmin``/``vmax``, default the range over all of them) and one
    colorbar, so their values can be compared across panels.

    Args:
        panels: M arrays or tensors.  titles: M strings.  ncols: panels per row (default all).
        row_labels: one y-axis label per row.
    Returns:
        ``matplotlib.figure.Figure``.
    """
    arrs = [_np(p) for p in panels]
    if not arrs:
        raise ValueError("show_grid needs at least one panel")
    if titles is not None and len(titles) != len(arrs):
        raise ValueError(f"{len(titles)} titles for {len(arrs)} panels")
    ncols = ncols or len(arrs)
    nrows = -(-len(arrs) // ncols)
    if row_labels is not None and len(row_labels) != nrows:
        raise ValueError(f"{len(row_labels)} row labels for {nrows} rows")
    maps = [a for a in arrs if a.ndim == 2]
    lo = vmin if vmin is not None else (min(float(np.nanmin(a)) for a in maps) if maps else 0.0)
    hi = vmax if vmax is not None else (max(float(np.nanmax(a)) for a in maps) if maps else 1.0)
    fig = Figure(figsize=(size * ncols + (1.0 if maps and colorbar else 0.2), size * nrows + 0.6),
                 layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).reshape(nrows, ncols)
    im = None
    for i, ax in enumerate(axes.flat):
        if i >= len(arrs):
            ax.axis("off")
            continue
        a = arrs[i]
        if a.ndim == 2:
            im = ax.imshow(a, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
        elif a.ndim == 3 and a.shape[-1] == 3:
            ax.imshow(a, interpolation="nearest")
        else:
            raise ValueError(f"panel {i}: expected (H, W) or (H, W, 3), got {a.shape}")
        ax.set_xticks([]), ax.set_yticks([])
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    if row_labels is not None:
        for r, text in enumerate(row_labels):
            axes[r, 0].set_ylabel(text, fontsize=9)
    if im is not None and colorbar:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label=colorbar_label)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def highlight(image: torch.Tensor, mask: torch.Tensor, *, dim: float = 0.25) -> np.ndarray:
    """The image dimmed outside a soft mask, for showing where a query looks.

    Args:
        image: (3, H, W) uint8.  mask: (h, w) values in [0, 1] (e.g. ``sigmoid(M)``), resized bilinearly.
        dim: brightness kept where the mask is 0.
    Returns:
        (H, W, 3) uint8.
    """
    m = F.interpolate(mask[None, None].float().cpu(), size=image.shape[-2:], mode="bilinear", align_corners=False)[0]
    out = image.cpu().float() * (dim + (1 - dim) * m.clamp(0, 1))             # (3, H, W)
    return out.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def class_legend(ax, class_names: Sequence[str], ids: Sequence[int], seen=None, **kwargs):
    """A legend of class colours (``class_colors``) for the class ids shown; "(new)" marks new classes."""
    cols = class_colors(class_names) / 255.0
    handles = []
    for i in ids:
        tag = "" if seen is None else (" (seen)" if bool(seen[i]) else " (new)")
        handles.append(Patch(color=cols[i], label=f"{class_names[i]}{tag}"))
    kwargs.setdefault("fontsize", 8)
    kwargs.setdefault("loc", "upper left")
    kwargs.setdefault("bbox_to_anchor", (1.02, 1.0))
    return ax.legend(handles=handles, **kwargs)


def compare_probs(tables: Dict[str, torch.Tensor], class_names: Sequence[str], *, top: int = 6,
                  title: Optional[str] = None, truth: Optional[int] = None) -> Figure:
    """Grouped bars of several (K,) probability tables over the classes most probable in any of them.

    Args:
        tables: branch name -> (K,) probabilities (e.g. {"A": ..., "D": ...} of one query).
        truth: optional ground-truth class id; its tick label is marked with a star.
    Returns:
        ``matplotlib.figure.Figure`` (bars hatched per branch, tick labels tinted with class colours).
    """
    probs = {k: _np(v) for k, v in tables.items()}
    k = len(class_names)
    for name, p in probs.items():
        if p.shape != (k,):
            raise ValueError(f"table {name!r} has shape {p.shape}, expected ({k},)")
    best = np.max(np.stack(list(probs.values())), 0)
    order = list(np.argsort(-best, kind="stable")[:top])
    if truth is not None and truth not in order:
        order[-1] = truth
    fig = Figure(figsize=(1.2 + 0.9 * len(order), 3.2), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(probs)
    hatches = ["", "//", "..", "xx", "\\\\"]
    cols = class_colors([class_names[i] for i in order]) / 255.0
    for j, (name, p) in enumerate(probs.items()):
        ax.bar(np.arange(len(order)) + (j - (len(probs) - 1) / 2) * width, p[order], width, color=cols,
               edgecolor="black", linewidth=0.5, hatch=hatches[j % len(hatches)], label=name)
    ticks = [class_names[i] + (" *" if i == truth else "") for i in order]
    ax.set_xticks(np.arange(len(order)), ticks, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("probability")
    ax.set_xlabel("class" + (" (* = ground truth)" if truth is not None else ""))
    ax.legend(title="branch", fontsize=8, handles=[Patch(facecolor="white", edgecolor="black",
              hatch=hatches[j % len(hatches)], label=n) for j, n in enumerate(probs)])
    ax.set_title(title or "class probabilities per branch")
    return fig
