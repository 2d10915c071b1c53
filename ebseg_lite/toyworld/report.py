"""Figures of the toy-world report: predictions against ground truth, per-class IoU of each way of
classifying, and the class affinity matrices that the SSC loss works on."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
from matplotlib.figure import Figure

from ebseg_lite.io.files import atomic_write
from ebseg_lite.toyworld.modes import MODES
from ebseg_lite.eval.affinity import affinity_gap, affinity_matrices, class_embeddings
from ebseg_lite.viz.overlays import class_colors, show_heatmaps

FIGURE_MODES = ("A", "B", "D", "A+B+D official")


def colorize(labels, class_names) -> np.ndarray:
    """(H, W) ids -> (H, W, 3) uint8 with the stable class colours; ignore (255) black."""
    lab = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    cols = np.concatenate([class_colors(class_names), np.zeros((256 - len(class_names), 3), np.uint8)])
    return cols[np.clip(lab, 0, 255)]


def prediction_figure(model, dataset, world, *, n: int = 4, modes=FIGURE_MODES) -> Figure:
    """Rows = test scenes; columns = image, ground truth, and the labels of each mode (one encoding per
    scene); one legend of the classes shown, "(new)" marking those never labelled."""
    from ebseg_lite.viz.segmentation import show_segmentations
    names, seen = world.class_names, torch.tensor(world.seen)
    images, rows = [], []
    for r in range(min(n, len(dataset))):
        item = dataset[r]
        enc = model.encode(item["image"], keep_intermediates=False)
        row = {"ground truth": item["label"]}
        row.update({m: model.classify(enc, names, seen=seen, **MODES[m]).labels for m in modes})
        images.append(item["image"])
        rows.append(row)
    return show_segmentations(images, rows, names, seen=list(world.seen), size=2.2,
                              suptitle="Toy world test scenes: ground truth vs each way of classifying the masks")


def per_class_figure(iou: Dict[str, List[float]], world, modes=FIGURE_MODES) -> Figure:
    """Heatmap of per-class IoU (``iou[mode]``: K values in percent, None = no ground truth): rows = modes, columns = classes (seen first, then new)."""
    order = [i for i, s in enumerate(world.seen) if s] + [i for i, s in enumerate(world.seen) if not s]
    mat = np.array([[np.nan if iou[m][i] is None else iou[m][i] for i in order] for m in modes])  # percent
    labels = [world.class_names[i] + ("" if world.seen[i] else " *") for i in order]
    fig = show_heatmaps(mat, row_labels=list(modes), col_labels=labels,
                        titles="per-class IoU % (* = new class)", xlabel="class", ylabel="classified by")
    ax = fig.axes[0]
    ax.axvline(sum(world.seen) - 0.5, color="white", lw=2)
    for t, i in zip(ax.get_xticklabels(), order):
        t.set_color(tuple(class_colors([world.class_names[i]])[0] / 255 * 0.8))
    return fig


def affinity_figure(models: Dict[str, object], dataset, world, *, n: int = 60) -> (Figure, Dict[str, float]):
    """Text affinity next to the A-embedding affinity of each model (e.g. without / with SSC)."""
    names = world.class_names
    text = next(iter(models.values())).text_embeddings(names)
    mats, titles, gaps = [], [], {}
    for tag, model in models.items():
        pairs = []
        for i in range(min(n, len(dataset))):
            item = dataset[i]
            enc = model.encode(item["image"], keep_intermediates=False)
            pairs.append((enc.A, enc.masks, item["label"]))
        emb, _ = class_embeddings(pairs, len(names))
        img_aff, txt_aff = affinity_matrices(emb, text)
        gaps[tag] = {"seen": affinity_gap(img_aff, txt_aff, world.seen),
                     "new": affinity_gap(img_aff, txt_aff, [not s for s in world.seen])}
        mats.append(img_aff)
        titles.append(f"A cosine, {tag} (gap seen {gaps[tag]['seen']:.2f} / new {gaps[tag]['new']:.2f})")
    mats.insert(0, txt_aff)
    titles.insert(0, "text cosine (the SSC target)")
    fig = show_heatmaps(mats, row_labels=names, col_labels=names, titles=titles, cmap="coolwarm",
                        xlabel="class", ylabel="class")
    return fig, gaps


def write_figures(out: Path, models: Dict, dataset, per: Dict, world, *, affinity_dataset=None) -> Dict[str, float]:
    """predictions.png, per_class_iou.png, affinity.png in ``out``; returns the affinity gaps.
    ``affinity_dataset`` (default ``dataset``): the scenes the class affinities are averaged over; the
    demo gives equal-draw scenes, where every new class has many instances."""
    out = Path(out)
    save = lambda fig, name: atomic_write(out / name, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    seed = per[next(iter(per))][0]["seed"]
    main_tag = "ssc" if ("ssc", seed) in models else "no_ssc"
    save(prediction_figure(models[(main_tag, seed)], dataset, world), "predictions.png")
    save(per_class_figure(per[main_tag][0]["iou"], world), "per_class_iou.png")
    fig, gaps = affinity_figure({tag: m for (tag, s), m in models.items() if s == seed},
                                dataset if affinity_dataset is None else affinity_dataset, world)
    save(fig, "affinity.png")
    return gaps


def ablation_figure(result: Dict, tables=None) -> Figure:
    """One panel per ablation table of ``result`` (``toyworld ablate``'s ``ablation.json``): seen and
    new mIoU of each row, mean over seeds with the std as an error bar."""
    nums = [str(n) for n in (tables or sorted(result["tables"], key=int))]
    fig = Figure(figsize=(4.2 * len(nums), 4.4), layout="constrained")
    axes = fig.subplots(1, len(nums), squeeze=False)[0]
    for ax, n in zip(axes, nums):
        rows = result["tables"][n]["rows"]
        x = np.arange(len(rows))
        for j, (key, color) in enumerate((("mIoU_seen", "tab:blue"), ("mIoU_new", "tab:orange"))):
            ax.bar(x + (j - 0.5) * 0.4, [r[key]["mean"] for r in rows], width=0.4, color=color,
                   yerr=[r[key]["std"] for r in rows], capsize=2, label=key.split("_")[1])
        ax.set_xticks(x, [r["label"] if len(r["label"]) <= 28 else r["label"][:26] + ".." for r in rows],
                      rotation=40, ha="right", fontsize=7)
        ax.set_title(f"table {n}: {result['tables'][n]['title']}", fontsize=9)
        ax.set_ylabel("mIoU % (mean +- std over seeds)")
    axes[0].legend(fontsize=8)
    return fig
