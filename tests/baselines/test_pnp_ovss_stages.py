"""PnP-OVSS's pure stages against small hand-computed cases."""
import numpy as np
import pytest
import torch

from ebseg_lite.baselines.pnp_ovss.classes import classes_from_label, clip_classes
from ebseg_lite.baselines.pnp_ovss.crf import CrfConfig, dense_crf
from ebseg_lite.baselines.pnp_ovss.dropout import (combine_rounds, drop_patches, salience_dropout,
                                                   top_patches)
from ebseg_lite.baselines.pnp_ovss.gradcam import class_maps, gradcam, to_grid
from ebseg_lite.baselines.pnp_ovss.pipeline import to_vocabulary_ids
from ebseg_lite.baselines.pnp_ovss.postprocess import (add_background, blur_maps, blur_sigma, minmax,
                                                       resize_maps, threshold_maps, use_background)
from ebseg_lite.baselines.pnp_ovss.search import masked_pair, random_search, weak_reward


def test_gradcam_is_attention_times_positive_gradient_times_mask():
    a = torch.tensor([[[[0.5, 0.5], [0.2, 0.8], [0.9, 0.1]]]])        # (B=1, nh=1, T=3, P=2)
    g = torch.tensor([[[[2.0, -1.0], [-3.0, 1.0], [1.0, 1.0]]]])
    m = torch.tensor([[1, 1, 0]])                                      # the last token is padding
    want = torch.tensor([[[[1.0, 0.0], [0.0, 0.8], [0.0, 0.0]]]])
    assert torch.allclose(gradcam(a, g, m), want)


def test_to_grid_drops_the_cls_token_row_major():
    t = torch.arange(5.0).view(1, 5)                                   # CLS + 2x2 patches
    assert to_grid(t, 2, 2).tolist() == [[[1.0, 2.0], [3.0, 4.0]]]
    with pytest.raises(ValueError):
        to_grid(torch.zeros(1, 4), 2, 2)


def test_class_maps_average_the_word_pieces_of_each_name():
    tok = torch.tensor([0.0, 1.0, 3.0, 10.0]).view(4, 1, 1) * torch.ones(4, 2, 2)
    out = class_maps(tok, [(1, 3), (3, 4)])                            # class 0 = pieces 1, 2
    assert out[:, 0, 0].tolist() == [2.0, 10.0]


def test_top_patches_skips_dropped_and_breaks_ties_by_index():
    s = torch.tensor([[5.0, 1.0], [5.0, 9.0]])
    dropped = torch.tensor([[False, False], [False, True]])
    assert top_patches(s, dropped, 2).tolist() == [0, 2]
    assert top_patches(s, torch.ones(2, 2, dtype=torch.bool), 3).tolist() == []


def test_drop_patches_zeroes_exactly_the_patch_blocks():
    x = torch.ones(1, 3, 4, 4)
    d = torch.tensor([[False, True], [False, False]])                  # patch (0, 1): rows 0-1, cols 2-3
    y = drop_patches(x, d, 2)
    assert y[0, :, :2, 2:].sum() == 0 and y.sum() == 3 * 12


def test_combine_rounds_counts_round_zero_twice():
    maps = torch.stack([torch.full((1, 1, 1), v) for v in (1.0, 10.0, 100.0)])
    assert combine_rounds(maps).item() == 1 + 1 + 10 + 100


def test_salience_dropout_drops_the_top_patches_of_each_round():
    sal = torch.arange(16.0).view(1, 4, 4)                             # patch value = its index
    seen = []

    def run(x):
        seen.append(x.clone())
        return sal, sal.clone(), 1.0

    combined, rounds = salience_dropout(run, torch.ones(1, 3, 8, 8), rounds=3, patches=2, patch=2)
    assert [int(r.dropped.sum()) for r in rounds] == [0, 2, 4]
    assert rounds[1].dropped.flatten().nonzero().flatten().tolist() == [14, 15]
    assert rounds[2].dropped.flatten().nonzero().flatten().tolist() == [12, 13, 14, 15]
    assert seen[2][0, 0, 6:, 4:].sum() == 0 and seen[2][0, 0, :6].sum() == 3 * 0 + 6 * 8
    assert rounds[2].gradcam[0, 3, 3] == 0 and rounds[2].gradcam[0, 2, 3] == 11
    want = 2 * sal[0] + sal[0] * (~rounds[1].dropped) + sal[0] * (~rounds[2].dropped)
    assert torch.equal(combined[0], want)


def test_minmax_and_threshold_keep_raw_values_above_the_scaled_cut():
    m = torch.tensor([[[1.0, 2.0], [3.0, 5.0]]])
    assert torch.allclose(minmax(m), torch.tensor([[[0.0, 0.25], [0.5, 1.0]]]))
    assert threshold_maps(m, 0.3).tolist() == [[[0.0, 0.0], [3.0, 5.0]]]
    assert minmax(torch.ones(1, 2, 2)).sum() == 0                     # a flat map: 0, not NaN


def test_resize_keeps_corners_and_background_marks_empty_pixels():
    m = torch.tensor([[[0.0, 4.0], [0.0, 0.0]]])
    up = resize_maps(m, (3, 3))                                        # align_corners: corners exact
    assert up[0, 0, 2] == 1 and up[0, 0, 1] == 0.5 and up[0, 2, 0] == 0
    bg = add_background(torch.tensor([[[0.0, 1.0]], [[0.0, 0.0]]]))
    assert bg[0].tolist() == [[1.0, 0.0]] and bg.shape == (3, 1, 2)


def test_background_policies_follow_the_official_rule():
    assert use_background("always", 5) and not use_background("never", 1)
    assert use_background("few", 2) and not use_background("few", 3)
    with pytest.raises(ValueError):
        use_background("sometimes", 2)


def test_blur_uses_five_percent_of_the_long_side_and_rescales():
    assert blur_sigma((100, 60)) == 5.0
    x = torch.zeros(1, 21, 21)
    x[0, 10, 10] = 1
    b = blur_maps(x, 2.0)[0]
    assert b[10, 10] == 1 and b.min() == 0
    # scipy samples the Gaussian: one pixel off the peak, the ratio is exp(-1 / (2 sigma^2))
    assert abs(float(b[10, 11]) - np.exp(-1 / 8)) < 1e-6 and torch.allclose(b[10, 11], b[11, 10])


def test_crf_without_pairwise_terms_returns_the_softmax():
    torch.manual_seed(0)
    s = torch.rand(3, 4, 5)
    img = np.zeros((4, 5, 3), np.uint8)
    q = dense_crf(img, s, CrfConfig(gaussian_compat=0.0, bilateral_compat=0.0))
    assert torch.allclose(q, torch.softmax(s, 0), atol=1e-4)


def test_crf_flips_a_weak_outlier_to_its_uniform_region():
    img = np.zeros((12, 12, 3), np.uint8)
    img[:, 6:] = 200                                                   # two flat colour regions
    s = torch.zeros(2, 12, 12)
    s[0, :, :6], s[1, :, 6:] = 2.0, 2.0                                # region labels, confident
    s[:, 3, 3] = torch.tensor([0.0, 0.3])                              # one pixel leans the wrong way
    q = dense_crf(img, s)
    lab = q.argmax(0)
    assert lab[3, 3] == 0 and lab[:, :6].eq(0).all() and lab[:, 6:].eq(1).all()
    assert torch.softmax(s, 0).argmax(0)[3, 3] == 1                   # without the CRF it was wrong


def test_vocabulary_ids_map_background_to_fill():
    lab = torch.tensor([[0, 1], [-1, 1]])
    assert to_vocabulary_ids(lab, [7, 3], fill=255).tolist() == [[7, 3], [255, 3]]


class FakeScorer:
    """CLIP stand-in: class k's probability is the mean of channel k (images carry one class per channel)."""

    def probs(self, images, names):
        m = torch.from_numpy(images.astype(np.float64)).mean((1, 2))[:, :len(names)] + 1e-6
        return m / m.sum(1, keepdim=True)


def test_weak_reward_counts_classes_whose_positive_crop_wins():
    img = np.zeros((2, 4, 3), np.uint8)
    img[:, :2, 0] = 255                                                # class 0 lives on the left
    img[:, 2:, 1] = 255                                                # class 1 on the right
    pos, neg = masked_pair(img, np.array([[1, 1, 0, 0]] * 2, bool))
    assert pos[:, 2:].sum() == 0 and neg[:, :2].sum() == 0
    good = np.array([[0, 0, 1, 1]] * 2)
    swapped = 1 - good
    assert weak_reward(FakeScorer(), img, good, ["a", "b"]) == 2
    assert weak_reward(FakeScorer(), img, swapped, ["a", "b"]) == 0


def test_random_search_draws_distinct_points_and_sorts_best_first():
    space = {"layer": [0, 1, 2], "head": [0, 1], "threshold": [0.1, 0.2]}
    trials = random_search(lambda p: p["layer"] * 10 + p["head"] - p["threshold"], space, n_iter=12, seed=3)
    assert len({tuple(p.values()) for p, _ in trials}) == 12            # the whole grid, no repeats
    assert trials[0][0] == {"layer": 2, "head": 1, "threshold": 0.1}
    assert [v for _, v in trials] == sorted((v for _, v in trials), reverse=True)
    again = random_search(lambda p: 0.0, space, n_iter=4, seed=3)
    assert [p for p, _ in again] == [p for p, _ in random_search(lambda p: 0.0, space, n_iter=4, seed=3)]


def test_class_sources_gt_and_clip():
    lab = np.array([[3, 3, 255], [1, 3, 1]])
    assert classes_from_label(lab) == [1, 3]

    class Probs:
        def probs(self, images, names):
            return torch.tensor([[0.05, 0.6, 0.35]])

    keep, p = clip_classes(Probs(), np.zeros((2, 2, 3), np.uint8), ["x", "y", "z"], threshold=0.3)
    assert keep == [1, 2]
    assert clip_classes(Probs(), np.zeros((2, 2, 3), np.uint8), ["x", "y", "z"], threshold=0.9)[0] == [1]


def test_clip_scorer_warns_about_names_the_toy_tokenizer_cannot_spell():
    from ebseg_lite.baselines.pnp_ovss.classes import ClipScorer
    from ebseg_lite.toyworld.pretrain_clip import load_toy_clip
    from ebseg_lite.toyworld.presets import toy_weights_dir
    clip, tok = load_toy_clip(toy_weights_dir() / "toy_clip.safetensors")
    scorer = ClipScorer(clip, tok, ["a photo of a {}."], image_size=64)
    with pytest.warns(UserWarning, match="'dog'"):
        emb = scorer.text(["red solid", "dog"])
    assert emb.shape == (2, 64)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scorer.text(["red solid", "dog"])       # cached: warned when first encoded
        scorer.text(["red solid", "grass"])     # every word known
