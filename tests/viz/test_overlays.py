"""Stable class colours, overlays with legends, atomic PNG saving, heatmap and bar-chart figures."""
import io

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from ebseg_lite.viz.overlays import (class_colors, legend_entries, overlay, plot_class_probs, save_overlay,
                                  show_heatmaps)

NAMES = ["sky", "grass", "house", "tree", "ball"]


@pytest.fixture
def scene():
    img = torch.full((3, 40, 60), 100, dtype=torch.uint8)  # (3, H, W) flat grey
    labels = torch.zeros(40, 60, dtype=torch.long)  # (H, W)
    labels[20:] = 1             # grass: 1200 px
    labels[5:15, 10:30] = 2     # house: 200 px; sky keeps 1200 - 200 = 1000 px
    labels[0, :] = 255          # unlabelled row: sky ends with 940 px
    return img, labels


def test_class_colors_shape_and_stability_across_vocabularies():
    c = class_colors(NAMES)
    assert c.shape == (5, 3) and c.dtype == np.uint8
    assert np.array_equal(class_colors(NAMES), c)  # across calls
    assert np.array_equal(class_colors(["cat", "sky", "dog"])[1], c[0])  # across vocabularies
    assert np.array_equal(class_colors(["  Sky "])[0], c[0])  # whitespace and case do not matter


def test_neighbouring_names_get_distinct_colours():
    c = class_colors([f"class {i}" for i in range(20)]).astype(int)
    assert len({tuple(r) for r in c}) == 20
    assert np.sqrt(((c[:, None] - c[None]) ** 2).sum(-1))[~np.eye(20, dtype=bool)].min() > 30  # every pair


def test_legend_entries_only_present_ordered_by_area(scene):
    _, labels = scene
    entries = legend_entries(labels, NAMES)
    assert [e.name for e in entries] == ["grass", "sky", "house"]
    assert [e.index for e in entries] == [1, 0, 2]
    assert entries[0].fraction == pytest.approx(1200 / 2400)
    assert entries[1].fraction == pytest.approx(940 / 2400)
    assert entries[2].color == tuple(class_colors(["house"])[0].tolist())


def test_overlay_blends_and_keeps_unlabelled_pixels(scene):
    img, labels = scene
    plain = overlay(img, labels, NAMES, alpha=0.5, legend=False)
    assert isinstance(plain, Image.Image) and plain.mode == "RGB" and plain.size == (60, 40)
    px = np.asarray(plain)
    grass = class_colors(["grass"])[0].astype(float)
    assert px[30, 5].tolist() == np.round(0.5 * 100 + 0.5 * grass).astype(int).tolist()
    assert px[0, 5].tolist() == [100, 100, 100]  # label 255: not coloured
    assert np.array_equal(np.asarray(overlay(img, labels, NAMES, alpha=0.0, legend=False, outline=0)), img.permute(1, 2, 0).numpy())


def test_overlay_outlines_regions_in_the_legend_colour(scene):
    img, labels = scene
    px = np.asarray(overlay(img, labels, NAMES, alpha=0.3, legend=False))
    cols = class_colors(NAMES)
    assert px[19, 30].tolist() == cols[0].tolist()   # sky's last row above grass: the pure sky colour
    assert px[20, 30].tolist() == cols[1].tolist()   # grass's first row: the pure grass colour
    assert px[5, 20].tolist() == cols[2].tolist()    # the house's top edge
    assert px[10, 20].tolist() != cols[2].tolist()   # inside the house: a blend
    assert px[1, 30].tolist() == cols[0].tolist()    # sky next to the unlabelled row is outlined ...
    assert px[0, 30].tolist() == [100, 100, 100]     # ... the unlabelled row itself is not
    no_outline = np.asarray(overlay(img, labels, NAMES, alpha=0.3, legend=False, outline=0))
    assert no_outline[19, 30].tolist() != cols[0].tolist()


def test_overlay_side_by_side_scale_and_seen_tags(scene):
    img, labels = scene
    both = overlay(img, labels, NAMES, legend=False, side_by_side=True, scale=2)
    assert both.size == (2 * 120 + 4, 80)
    right = np.asarray(both)[:, 124:]
    assert right[60, 10].tolist() == class_colors(["grass"])[0].tolist()   # the pure label map, upscaled
    assert right[0, 10].tolist() == [255, 255, 255]                        # unlabelled: white
    seen = [True, False, True, True, True]
    with_tags = overlay(img, labels, NAMES, seen=seen)
    without = overlay(img, labels, NAMES)
    assert with_tags.width > without.width   # " (seen)" / " (new)" make the legend wider
    with pytest.raises(ValueError, match="scale"):
        overlay(img, labels, NAMES, scale=0)


def test_overlay_legend_panel_shows_only_present_colours(scene):
    img, labels = scene
    out = overlay(img, labels, NAMES, title="a title")
    assert out.width > 60 and out.height >= 40
    panel = np.asarray(out)[:, 60:].reshape(-1, 3)
    colours = {tuple(p) for p in panel.tolist()}
    cols = class_colors(NAMES)
    for k in (0, 1, 2):
        assert tuple(cols[k].tolist()) in colours
    for k in (3, 4):
        assert tuple(cols[k].tolist()) not in colours


def test_overlay_many_classes_legend_is_capped():
    names = [f"c{i}" for i in range(30)]
    labels = torch.arange(30).repeat_interleave(2).view(6, 10)  # (H, W), 30 classes present
    out = overlay(torch.zeros(3, 6, 10, dtype=torch.uint8), labels, names, max_legend=5)
    assert out.height < 200  # 5 rows + "+25 more", not 30 rows


def test_overlay_accepts_path_and_checks_inputs(scene, tmp_path):
    img, labels = scene
    Image.fromarray(img.permute(1, 2, 0).numpy()).save(tmp_path / "im.png")
    assert overlay(tmp_path / "im.png", labels.numpy(), NAMES, legend=False).size == (60, 40)
    with pytest.raises(ValueError, match="differ in size"):
        overlay(img, labels[:10], NAMES)
    with pytest.raises(ValueError, match="vocabulary has 5"):
        overlay(img, labels.clamp(max=7) + 2, NAMES)
    with pytest.raises(ValueError, match="colors"):
        overlay(img, labels, NAMES, colors=np.zeros((2, 3)))


def test_save_overlay_writes_png_atomically(scene, tmp_path):
    img, labels = scene
    path = tmp_path / "out" / "ov.png"
    assert save_overlay(path, img, labels, NAMES, title="t") == path
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == overlay(img, labels, NAMES, title="t").size
    save_overlay(path, img, labels, NAMES, legend=False)  # overwrite in place
    with Image.open(path) as im:
        assert im.size == (60, 40)
    assert [p.name for p in path.parent.iterdir()] == ["ov.png"]  # no temp file left


def test_save_overlay_failure_leaves_nothing(scene, tmp_path):
    img, labels = scene
    with pytest.raises(ValueError):
        save_overlay(tmp_path / "bad.png", img, labels[:3], NAMES)
    assert list(tmp_path.iterdir()) == []


def test_show_heatmaps_titles_labels_colorbars():
    mats = torch.rand(2, 3, 4)  # (M, R, Cc)
    fig = show_heatmaps(mats, row_labels=["q0", "q1", "q2"], col_labels=["a", "b", "c", "d"],
                        titles=["A", "B"], xlabel="class", ylabel="query", cmap="magma")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 4  # 2 heatmaps + 2 colorbars
    ax = fig.axes[0]
    assert [a.get_title() for a in fig.axes if a.get_title()] == ["A", "B"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["q0", "q1", "q2"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c", "d"]
    assert ax.get_xlabel() == "class" and ax.get_ylabel() == "query"
    fig.savefig(io.BytesIO(), format="png")  # renders without a display


def test_show_heatmaps_single_matrix_and_errors():
    fig = show_heatmaps(np.eye(3), titles="identity")
    assert fig.axes[0].get_title() == "identity"
    with pytest.raises(ValueError, match="tick labels"):
        show_heatmaps(np.eye(3), row_labels=["a"], titles="x")
    with pytest.raises(ValueError, match="titles"):
        show_heatmaps([np.eye(2), np.eye(2)], titles=["only one"])


def test_plot_class_probs_top_sorted():
    probs = torch.tensor([0.1, 0.5, 0.05, 0.3, 0.05])
    fig = plot_class_probs(probs, NAMES, top=3)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["grass", "tree", "sky"]
    assert len(ax.patches) == 3
    assert ax.get_title()
    assert len(plot_class_probs(probs.numpy(), NAMES, top=50).axes[0].patches) == 5
    with pytest.raises(ValueError, match="shape"):
        plot_class_probs(probs[:3], NAMES)
