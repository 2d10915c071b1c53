"""Evaluation plots: the drawn numbers equal the evaluator's, titles and labels are set (Agg)."""
import math

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from ebseg_lite.eval.metrics import SemSegEvaluator
from ebseg_lite.viz.eval_plots import (NEW_COLOR, SEEN_COLOR, confusion_from_evaluator, plot_confusion,
                              plot_per_class_iou)
from ebseg_lite.viz.overlays import class_colors

NAMES = ["cat", "sofa, couch", "lamp", "window"]
# class 3 ("window") has no ground-truth pixel; (1, 3) is ignored
GT = np.array([[0, 0, 1, 1], [1, 2, 2, 255]])
PRED = np.array([[0, 1, 1, 1], [1, 2, 3, 0]])


@pytest.fixture
def evaluator():
    ev = SemSegEvaluator(4, seen=[True, True, False, False])
    ev.update(PRED, GT)
    return ev


def test_per_class_iou_bars_equal_the_results(evaluator):
    res = evaluator.compute()
    ax = plot_per_class_iou(res, NAMES)
    assert isinstance(ax, Axes) and isinstance(ax.figure, Figure)
    bars = ax.patches[:4]
    heights = [b.get_height() for b in bars]
    # by hand: cat 1/2, sofa 3/(3 + 1 fp), lamp 1/(1 + 1 fn), window no ground truth (no bar)
    assert heights == pytest.approx([50.0, 75.0, 50.0, 0.0])
    assert heights[:3] == pytest.approx(res["IoU"][:3]) and math.isnan(res["IoU"][3])
    assert [b.get_facecolor() for b in bars] == [to_rgba(c) for c in (SEEN_COLOR, SEEN_COLOR, NEW_COLOR, NEW_COLOR)]
    assert [t.get_text() for t in ax.texts] == ["n/a"] and ax.texts[0].get_position()[0] == 3
    assert "mIoU 58.3%" in ax.get_title()  # (50 + 75 + 50) / 3: the NaN class is left out
    assert ax.get_xlabel() == "class" and ax.get_ylabel() == "IoU (%)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "sofa", "lamp", "window"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:2] == ["seen (2)", "new (2)"] and legend[2].startswith("n/a")


def test_per_class_iou_without_split_uses_class_colours_and_given_axes():
    fig = Figure()
    given = fig.subplots()
    ax = plot_per_class_iou([10.0, 20.0, float("nan")], ["a", "b", "c"], ax=given)
    assert ax is given
    want = class_colors(["a", "b", "c"]) / 255.0
    got = np.array([b.get_facecolor()[:3] for b in ax.patches[:3]])
    assert np.allclose(got, want)
    assert ax.get_legend() is not None and ax.get_title()
    with pytest.raises(ValueError, match="3 per-class IoUs for 2 class names"):
        plot_per_class_iou([1.0, 2.0, 3.0], ["a", "b"])


def test_confusion_from_evaluator_is_row_normalised(evaluator):
    conf = confusion_from_evaluator(evaluator)
    assert conf.shape == (4, 4)
    want = np.array([[0.5, 0.5, 0, 0],       # cat: 2 pixels, one predicted sofa
                     [0, 1.0, 0, 0],         # sofa: 3 pixels, all sofa
                     [0, 0, 0.5, 0.5]])      # lamp: 2 pixels, one predicted window (the ignored pixel is out)
    assert np.allclose(conf[:3], want)
    assert np.allclose(conf[:3].sum(1), 1.0)
    assert np.isnan(conf[3]).all()  # window has no ground truth


def test_plot_confusion_heatmap(evaluator):
    conf = confusion_from_evaluator(evaluator)
    ax = plot_confusion(conf, NAMES)
    assert isinstance(ax, Axes)
    image = ax.get_images()[0]
    assert np.allclose(image.get_array().filled(np.nan)[:3], conf[:3]) and image.get_clim() == (0.0, 1.0)
    assert ax.get_title() and ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "ground-truth class"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cat", "sofa", "lamp", "window"]
    tint = ax.get_xticklabels()[1].get_bbox_patch().get_facecolor()[:3]
    assert np.allclose(tint, class_colors(NAMES)[1] / 255.0)
    assert len(ax.figure.axes) == 2  # the heatmap and its colourbar
    with pytest.raises(ValueError, match=r"conf must have shape \(4, 4\)"):
        plot_confusion(np.zeros((3, 3)), NAMES)
