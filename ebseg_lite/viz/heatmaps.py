"""Seaborn heatmaps for readers: class affinity matrices in a clustered order, and confusion matrices.

The SSC loss (paper eq. 4-7) asks the (K, K) cosine matrix of the image embeddings of different classes
to look like the cosine matrix of their text embeddings. Side by side and in the same class order, with
the order found by clustering the *text* affinities, both matrices show blocks of related classes
("red solid" near "red striped", the stuff textures together) and the difference shows where the image
embeddings disagree with the text. ``affinity_clustermap`` is seaborn's own clustermap with
dendrograms; ``plot_affinity_pair`` keeps the three panels in one figure for comparison.

Like the rest of :mod:`ebseg_lite.viz`, the figures are built without pyplot (``matplotlib.figure.Figure``,
any backend, a notebook shows a returned figure once); only ``affinity_clustermap`` goes through pyplot,
because seaborn's clustermap makes its own figure. Legend: K classes.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform

from ebseg_lite.viz.eval_plots import NEW_COLOR, SEEN_COLOR, _tick_names


def _square(m, name: str, k: Optional[int] = None) -> np.ndarray:
    a = np.asarray(m.detach().cpu().float() if hasattr(m, "detach") else m, dtype=float)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or (k is not None and a.shape[0] != k):
        want = f"({k}, {k})" if k is not None else "square"
        raise ValueError(f"{name} must be a {want} matrix, got shape {a.shape}")
    return a


def _seen_array(seen, k: int) -> Optional[np.ndarray]:
    if seen is None:
        return None
    s = np.asarray(seen.cpu() if hasattr(seen, "cpu") else seen, dtype=bool)
    if s.shape != (k,):
        raise ValueError(f"seen must have shape ({k},), got {s.shape}")
    return s


def affinity_linkage(affinity) -> np.ndarray:
    """Average-linkage clustering of K classes with the distance 1 - cosine affinity.

    Args:
        affinity: (K, K) cosine matrix (symmetric, ones on the diagonal).
    Returns:
        the (K-1, 4) scipy linkage matrix.
    """
    a = _square(affinity, "affinity")
    dist = np.clip(1.0 - (a + a.T) / 2.0, 0.0, None)  # (K, K), symmetrised against float noise
    np.fill_diagonal(dist, 0.0)
    return linkage(squareform(dist, checks=False), method="average")


def cluster_order(affinity) -> np.ndarray:
    """(K,) permutation of the classes that puts similar classes next to each other (the leaves of
    :func:`affinity_linkage`); ``affinity[order][:, order]`` shows the blocks."""
    if len(np.asarray(affinity)) < 2:
        return np.arange(len(np.asarray(affinity)))
    return leaves_list(affinity_linkage(affinity))


def affinity_clustermap(affinity, class_names: Sequence[str], *, seen=None, title: str = "text affinity",
                        cmap: str = "vlag", figsize: Optional[Tuple[float, float]] = None):
    """Seaborn's clustermap of one (K, K) affinity matrix, clustered by 1 - cosine, with dendrograms
    and a seen/new colour strip.

    Args:
        affinity: (K, K) cosine matrix (``ebseg_lite.eval.affinity.affinity_matrices``).
        class_names: K names (ticks show the first synonym).  seen: (K,) bool or None.
    Returns:
        the ``seaborn.matrix.ClusterGrid`` (``.figure``; ``.dendrogram_row.reordered_ind`` is the order).
    """
    k = len(class_names)
    a = _square(affinity, "affinity", k)
    z = affinity_linkage(a)
    s = _seen_array(seen, k)
    colors = None if s is None else [SEEN_COLOR if v else NEW_COLOR for v in s]
    size = figsize or (min(20.0, 3.0 + 0.32 * k),) * 2
    g = sns.clustermap(a, row_linkage=z, col_linkage=z, cmap=cmap, vmin=-1, vmax=1, center=0,
                       xticklabels=_tick_names(class_names), yticklabels=_tick_names(class_names),
                       row_colors=colors, col_colors=colors, figsize=size,
                       cbar_kws={"label": "cosine"}, dendrogram_ratio=0.12)
    strip = f"; strip: {SEEN_COLOR.replace('tab:', '')} = seen, {NEW_COLOR.replace('tab:', '')} = new"
    g.figure.suptitle(title + ("" if s is None else strip), y=1.02)
    return g


def plot_affinity_pair(text_affinity, image_affinity, class_names: Sequence[str], *, seen=None,
                       order=None, image_title: str = "image embeddings (A)") -> Figure:
    """Text affinity, image affinity and their difference (image - text), in one clustered class order.

    Args:
        text_affinity, image_affinity: (K, K) cosine matrices (keyword-free but named: text first).
        class_names: K names.  seen: (K,) bool; new classes' tick labels are drawn in italics.
        order: (K,) class order; default :func:`cluster_order` of the text affinity.
    Returns:
        a Figure with three heatmap Axes (and their colorbars).
    """
    k = len(class_names)
    t, i = _square(text_affinity, "text_affinity", k), _square(image_affinity, "image_affinity", k)
    order = cluster_order(t) if order is None else np.asarray(order)
    if sorted(order.tolist()) != list(range(k)):
        raise ValueError(f"order must be a permutation of 0..{k - 1}")
    s = _seen_array(seen, k)
    names = [_tick_names(class_names)[j] for j in order]
    side = min(9.0, 2.0 + 0.24 * k)
    fig = Figure(figsize=(3 * side + 1.5, side), layout="constrained")
    axes = fig.subplots(1, 3)
    panels = [(t, "text (what SSC aims for)", "vlag", -1, 1), (i, image_title, "vlag", -1, 1),
              (i - t, "image - text", "PuOr_r", -1, 1)]
    gap = np.abs(i - t)[~np.eye(k, dtype=bool)].mean() if k > 1 else 0.0
    for ax, (m, title, cmap, lo, hi) in zip(axes, panels):
        sns.heatmap(m[order][:, order], ax=ax, cmap=cmap, vmin=lo, vmax=hi, center=0, square=True,
                    xticklabels=names, yticklabels=names, cbar_kws={"shrink": 0.7})
        ax.set_title(title)
        ax.tick_params(labelsize=7 if k > 25 else 9)
        if s is not None:
            for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
                for text, j in zip(labels, order):
                    text.set_style("normal" if s[j] else "italic")
    fig.suptitle(f"class affinities, clustered by text; mean |image - text| off the diagonal {gap:.3f}"
                 + ("" if s is None else "; new classes in italics"))
    return fig


def top_confusions(conf, class_names: Sequence[str], n: int = 5) -> List[Tuple[str, str, float]]:
    """The ``n`` largest off-diagonal entries of a row-normalised confusion matrix.

    Args:
        conf: (K, K) rows ground truth, columns prediction (``confusion_from_evaluator``); NaN rows skipped.
    Returns:
        [(ground-truth name, predicted name, share)] sorted by share, largest first.
    """
    k = len(class_names)
    c = _square(conf, "conf", k).copy()
    np.fill_diagonal(c, -np.inf)
    c[np.isnan(c)] = -np.inf
    flat = np.argsort(-c, axis=None, kind="stable")[:n]
    out = [(class_names[g], class_names[p], float(c[g, p])) for g, p in zip(*np.unravel_index(flat, c.shape))]
    return [row for row in out if np.isfinite(row[2]) and row[2] > 0]


def plot_confusion_heatmap(conf, class_names: Sequence[str], *, seen=None, annotate: Optional[bool] = None,
                           ax=None, cmap: str = "rocket_r"):
    """Seaborn heatmap of a (K, K) row-normalised confusion matrix, shares in percent.

    Args:
        conf: (K, K) rows ground truth, columns prediction, shares in [0, 1]; NaN rows (no ground truth)
            stay blank.
        class_names: K names.  seen: (K,) bool; new classes get a "*" after their name.
        annotate: write the percentages in the cells (default: when K <= 15).
        ax: Axes to draw on; a new figure when None.
    Returns:
        the Axes.
    """
    k = len(class_names)
    c = _square(conf, "conf", k)
    s = _seen_array(seen, k)
    names = [n + ("" if s is None or s[j] else " *") for j, n in enumerate(_tick_names(class_names))]
    if ax is None:
        ax = Figure(figsize=(min(30.0, 3.5 + 0.32 * k), min(30.0, 3.0 + 0.3 * k)), layout="constrained").subplots()
    annotate = k <= 15 if annotate is None else annotate
    sns.heatmap(100 * c, ax=ax, mask=np.isnan(c), cmap=cmap, vmin=0, vmax=100, annot=annotate, fmt=".0f",
                annot_kws={"fontsize": 8}, xticklabels=names, yticklabels=names, linewidths=0.3,
                linecolor="white", cbar_kws={"label": "% of the class's pixels"})
    ax.set_xlabel("predicted class")
    ax.set_ylabel("ground-truth class")
    ax.set_title("confusion (row-normalised)" + ("" if s is None else "; * = new class"))
    return ax
