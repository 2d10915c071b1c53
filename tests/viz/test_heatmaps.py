"""Seaborn heatmaps: the clustered class order, the affinity panels and the confusion heatmap show
exactly the numbers they are given, in the order they claim."""
import matplotlib
import numpy as np
import pytest

from ebseg_lite.viz.heatmaps import (affinity_clustermap, affinity_linkage, cluster_order, plot_affinity_pair,
                                     plot_confusion_heatmap, top_confusions)

NAMES = ["red circle", "grass, lawn", "red ring", "water", "red square"]


def block_affinity():
    """Classes 0, 2, 4 (the red things) are alike (0.9), 1 and 3 (stuff) are alike (0.8), else 0.1."""
    a = np.full((5, 5), 0.1)
    for group, v in (([0, 2, 4], 0.9), ([1, 3], 0.8)):
        for i in group:
            for j in group:
                a[i, j] = v
    np.fill_diagonal(a, 1.0)
    return a


def contiguous(order, members):
    pos = sorted(list(order).index(m) for m in members)
    return pos == list(range(pos[0], pos[0] + len(members)))


def test_cluster_order_keeps_blocks_together():
    order = cluster_order(block_affinity())
    assert sorted(order.tolist()) == [0, 1, 2, 3, 4]
    assert contiguous(order, [0, 2, 4]) and contiguous(order, [1, 3])
    assert cluster_order(np.ones((1, 1))).tolist() == [0]


def test_affinity_linkage_merges_at_one_minus_cosine():
    z = affinity_linkage(block_affinity())  # (K-1, 4): a, b, distance, size
    assert z.shape == (4, 4)
    # first merges: inside the red block at distance 1 - 0.9, the stuff pair at 1 - 0.8, the blocks last
    assert z[0, 2] == pytest.approx(0.1) and z[1, 2] == pytest.approx(0.1)
    assert z[2, 2] == pytest.approx(0.2) and set(z[2, :2].astype(int)) == {1, 3}
    assert z[3, 2] == pytest.approx(0.9) and z[3, 3] == 5  # average linkage of 0.1 affinities


def _mesh(ax, k=5):
    return np.ma.getdata(ax.collections[0].get_array()).reshape(k, k)


def test_affinity_pair_panels_are_the_matrices_in_the_text_order():
    t = block_affinity()
    rng = np.random.default_rng(0)
    i = np.clip(t + rng.normal(scale=0.1, size=t.shape), -1, 1)
    seen = [True, True, False, True, False]
    fig = plot_affinity_pair(t, i, NAMES, seen=seen)
    order = cluster_order(t)
    heat = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in heat] == ["text (what SSC aims for)", "image embeddings (A)", "image - text"]
    for ax, want in zip(heat, (t, i, i - t)):
        np.testing.assert_allclose(_mesh(ax), want[order][:, order])
    ticks = [x.get_text() for x in heat[0].get_yticklabels()]
    assert ticks == [NAMES[j].split(",")[0] for j in order]  # first synonym, clustered order
    styles = {x.get_text(): x.get_style() for x in heat[1].get_xticklabels()}
    assert styles["red ring"] == "italic" and styles["red circle"] == "normal"
    gap = np.abs(i - t)[~np.eye(5, dtype=bool)].mean()
    assert f"{gap:.3f}" in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="permutation"):
        plot_affinity_pair(t, i, NAMES, order=[0, 0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"\(5, 5\)"):
        plot_affinity_pair(t[:4, :4], i, NAMES)


def test_clustermap_uses_the_same_clustering():
    g = affinity_clustermap(block_affinity(), NAMES, seen=[True, True, False, True, False])
    try:
        assert g.dendrogram_row.reordered_ind == cluster_order(block_affinity()).tolist()
        assert g.dendrogram_col.reordered_ind == g.dendrogram_row.reordered_ind
        assert "orange = new" in g.figure._suptitle.get_text()
        np.testing.assert_allclose(g.data2d.to_numpy(), block_affinity()[g.dendrogram_row.reordered_ind][
            :, g.dendrogram_row.reordered_ind])
    finally:
        matplotlib.pyplot.close(g.figure)


def confusion():
    c = np.array([[0.7, 0.2, 0.1], [np.nan, np.nan, np.nan], [0.5, 0.05, 0.45]])
    return c, ["cat", "dog", "sofa, couch"]


def test_top_confusions_skip_the_diagonal_and_empty_rows():
    c, names = confusion()
    assert top_confusions(c, names, n=3) == [("sofa, couch", "cat", 0.5), ("cat", "dog", 0.2),
                                             ("cat", "sofa, couch", 0.1)]
    assert top_confusions(np.eye(3), names) == []  # no confusion at all


def test_confusion_heatmap_shows_percent_and_blanks_empty_rows():
    c, names = confusion()
    ax = plot_confusion_heatmap(c, names, seen=[True, False, True])
    mesh = ax.collections[0].get_array()
    assert mesh.mask.reshape(3, 3)[1].all() and not mesh.mask.reshape(3, 3)[[0, 2]].any()
    np.testing.assert_allclose(np.ma.compressed(mesh), 100 * c[[0, 2]].ravel())
    assert sorted(t.get_text() for t in ax.texts) == sorted(["70", "20", "10", "50", "5", "45"])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cat", "dog *", "sofa"]
    assert ax.figure.axes[-1].get_ylabel() == "% of the class's pixels"  # the colorbar
    ax = plot_confusion_heatmap(c, names, annotate=False)
    assert len(ax.texts) == 0 and "new class" not in ax.get_title()
