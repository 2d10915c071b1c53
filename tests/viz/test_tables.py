"""Seaborn result tables: the tidy frames hold exactly the evaluator's / demo's numbers, and the plots
draw those numbers (bar lengths, group means, heatmap cells, the framed best of each column)."""
import numpy as np
import pytest
from matplotlib.patches import Rectangle

from ebseg_lite.viz.tables import ablation_frame, iou_frame, plot_ablation, plot_iou_bars

NAMES = ["cat", "sofa, couch", "road, route", "sky"]
RESULTS = {"IoU": [40.0, float("nan"), 10.0, 80.0], "seen": [True, True, False, False]}


def test_iou_frame_sorted_without_missing_classes():
    f = iou_frame(RESULTS, NAMES)
    assert f["class"].tolist() == ["sky", "cat", "road"]  # best first, first synonym, sofa has no ground truth
    assert f["IoU"].tolist() == [80.0, 40.0, 10.0]
    assert f["kind"].tolist() == ["new", "seen", "new"]
    assert iou_frame([1.0, 2.0, 3.0, 4.0], NAMES)["kind"].unique().tolist() == ["all"]
    with pytest.raises(ValueError, match="3 per-class IoUs for 4"):
        iou_frame([1.0, 2.0, 3.0], NAMES)


def test_iou_bars_have_the_values_and_group_means():
    ax = plot_iou_bars(RESULTS, NAMES)
    bars = sorted((p.get_y(), p.get_width()) for p in ax.patches if isinstance(p, Rectangle) and p.get_width() > 0)
    assert [w for _, w in bars] == [80.0, 40.0, 10.0]  # top to bottom
    lines = {ln.get_label(): ln.get_xdata()[0] for ln in ax.get_lines()}
    assert lines == {"mean new 45.0": 45.0, "mean seen 40.0": 40.0}  # per group, NaN left out
    assert "mIoU 43.3%" in ax.get_title()
    ax = plot_iou_bars(RESULTS, NAMES, top=2)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["sky", "cat"] and "best 2 of 3" in ax.get_title()


def spread_stats():
    cell = lambda m, s: {"mean": m, "std": s}
    return {"no_ssc": {"A": {"mIoU": cell(16.5, 1.1), "mIoU_seen": cell(26.1, 2.3), "mIoU_new": cell(4.4, 0.4)},
                       "D": {"mIoU": cell(10.4, 0.4), "mIoU_seen": cell(13.7, 0.6), "mIoU_new": cell(6.4, 0.4)}},
            "ssc": {"A": {"mIoU": cell(15.7, 1.6), "mIoU_seen": cell(25.1, 3.3), "mIoU_new": cell(4.0, 0.6)},
                    "D": {"mIoU": cell(10.4, 0.2), "mIoU_seen": cell(13.5, 0.4), "mIoU_new": cell(6.4, 0.1)}}}


def test_ablation_frame_from_the_demo_statistics_and_from_one_run():
    f = ablation_frame(spread_stats())
    assert len(f) == 12 and list(f.columns) == ["mode", "ssc", "split", "mIoU", "std"]
    row = f[(f["mode"] == "A") & (f["ssc"] == "on") & (f["split"] == "seen")]
    assert row[["mIoU", "std"]].values.tolist() == [[25.1, 3.3]]
    one = ablation_frame({"B": {"mIoU": 8.0, "mIoU_seen": 10.9, "mIoU_new": 4.3}})
    assert one.values.tolist() == [["B", "", "all", 8.0, 0.0], ["B", "", "seen", 10.9, 0.0],
                                   ["B", "", "new", 4.3, 0.0]]
    with pytest.raises(ValueError, match="no mIoU"):
        ablation_frame({"A": {"loss": 1.0}})


def test_ablation_plot_cells_annotations_and_best_frames():
    fig = plot_ablation(spread_stats())
    ax = fig.axes[0]
    cols = [t.get_text() for t in ax.get_xticklabels()]
    assert cols == ["all, SSC off", "seen, SSC off", "new, SSC off", "all, SSC on", "seen, SSC on", "new, SSC on"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A", "D"]
    cells = np.ma.getdata(ax.collections[0].get_array()).reshape(2, 6)
    np.testing.assert_allclose(cells, [[16.5, 26.1, 4.4, 15.7, 25.1, 4.0], [10.4, 13.7, 6.4, 10.4, 13.5, 6.4]])
    assert "26.1\n± 2.3" in [t.get_text() for t in ax.texts]
    framed = sorted((int(p.get_x()), int(p.get_y())) for p in ax.patches if isinstance(p, Rectangle) and not p.fill)
    # best per column: A for all/seen, D for new (x = column, y = row)
    assert framed == [(0, 0), (1, 0), (2, 1), (3, 0), (4, 0), (5, 1)]
    single = plot_ablation({"A": {"mIoU": 16.5}, "B": {"mIoU": 8.0}})
    assert [t.get_text() for t in single.axes[0].texts] == ["16.5", "8.0"]
