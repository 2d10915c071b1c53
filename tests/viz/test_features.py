"""The notebooks' helpers: cosine maps, PCA colours, Fisher ratio, matched queries, figures."""
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from ebseg_lite.viz.features import (class_legend, compare_probs, cosine_maps, fisher_ratio, highlight, matched_queries,
                                pca_rgb, show_grid)


def test_cosine_maps_hand_case():
    feats = torch.zeros(2, 1, 2)       # (C, h, w): token 0 points along x, token 1 along y
    feats[0, 0, 0] = 3.0
    feats[1, 0, 1] = 0.5
    text = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # (K, C)
    m = cosine_maps(feats, text)
    assert m.shape == (2, 1, 2)
    assert torch.allclose(m[0, 0], torch.tensor([1.0, 0.0]))
    assert torch.allclose(m[1, 0], torch.full((2,), 2 ** -0.5))


def test_pca_rgb_shared_basis_and_range():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(8, 4, 5, generator=g)
    b = torch.randn(8, 3, 3, generator=g)
    ra, rb = pca_rgb(a, b)
    assert ra.shape == (4, 5, 3) and rb.shape == (3, 3, 3)
    assert ra.min() >= 0 and ra.max() <= 1 and rb.min() >= 0 and rb.max() <= 1
    # one basis: a map that is the other's copy gets the same colours
    r1, r2 = pca_rgb(a, a.clone())
    assert np.allclose(r1, r2)
    with pytest.raises(ValueError):
        pca_rgb()


def test_fisher_ratio_separable_vs_mixed():
    label = torch.zeros(4, 4, dtype=torch.long)
    label[:, 2:] = 1
    sep = torch.zeros(1, 4, 4)
    sep[0, :, 2:] = 1.0
    sep[0, 0, 0] = 0.1                   # a little within-class spread
    mixed = torch.arange(16.0).reshape(1, 4, 4) % 2
    assert fisher_ratio(sep, label) > 10 * fisher_ratio(mixed, label)
    assert fisher_ratio(mixed, label) == pytest.approx(0.0, abs=1e-6)


def test_matched_queries_with_and_without_label():
    masks = torch.full((3, 4, 4), -5.0)
    masks[1, :, :2] = 5.0                # query 1 covers class 7 (left half)
    masks[2, :, 2:] = 5.0                # query 2 covers class 3 (right half)
    label = torch.full((4, 4), 7, dtype=torch.long)
    label[:, 2:] = 3
    q, c = matched_queries(masks, label)
    assert dict(zip(c.tolist(), q.tolist())) == {3: 2, 7: 1}
    probs = torch.tensor([[0.1, 0.1, 0.8], [0.7, 0.2, 0.1], [0.3, 0.6, 0.1]])  # (N, K+1), void last
    q, c = matched_queries(masks, class_probs=probs, n=2)
    assert q.tolist() == [1, 2] and c.tolist() == [0, 1]
    with pytest.raises(ValueError):
        matched_queries(masks)


def test_figures_build():
    fig = show_grid([np.zeros((4, 4, 3)), np.ones((4, 4)), np.zeros((4, 4))], titles=["a", "b", "c"], ncols=2,
                    row_labels=["r0", "r1"])
    assert isinstance(fig, Figure) and len(fig.axes) == 5  # 4 panels + colorbar
    with pytest.raises(ValueError):
        show_grid([np.zeros((4, 4))], titles=["a", "b"])
    names = ["sky", "grass", "cat"]
    fig = compare_probs({"A": torch.tensor([0.2, 0.7, 0.1]), "D": torch.tensor([0.5, 0.25, 0.25])}, names,
                        top=2, truth=2)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["grass", "cat *"]
    leg = class_legend(ax, names, [0, 2], seen=[True, True, False])
    assert [t.get_text() for t in leg.get_texts()] == ["sky (seen)", "cat (new)"]


def test_highlight_dims_outside_the_mask():
    img = torch.full((3, 4, 4), 200, dtype=torch.uint8)
    mask = torch.zeros(2, 2)
    mask[0, 0] = 1.0
    out = highlight(img, mask, dim=0.25)
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8
    assert out[0, 0, 0] == 200 and out[3, 3, 0] == 50
