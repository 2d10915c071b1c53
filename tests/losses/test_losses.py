"""Tests of ebseg_lite.losses: hand-computed cases for every term, then properties of matching and criterion."""
import itertools
import math

import numpy as np
import pytest
import torch

from ebseg_lite.losses import (
    EBSegCriterion, LossWeights, class_ce_loss, dice_loss, hungarian_match, mask_point_losses, matching_cost,
    num_masks_normaliser, official_name, pairwise_bce_cost, pairwise_dice_cost, point_sample,
    sigmoid_bce_loss, uncertain_points,
)
from ebseg_lite.shapes import check_shape


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ---------------------------------------------------------------- point sampling
def test_point_sample_pixel_centres_midpoints_and_border():
    img = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])  # (1, 2, 2)
    coords = torch.tensor([[[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.5, 0.5], [0.0, 0.0]]])  # (x, y)
    got = point_sample(img, coords)
    check_shape(got, (1, 5))
    # centres read the pixels, (x, y) order; the middle is the mean; the corner mixes in zero padding
    # (align_corners=False puts it half a pixel outside both centres: weights 1/4 on pixel (0, 0)).
    torch.testing.assert_close(got[0], torch.tensor([1.0, 2.0, 3.0, 2.5, 0.25]))
    check_shape(point_sample(img[:, None].repeat(1, 3, 1, 1), coords), (1, 3, 5))


def test_point_sample_is_resolution_free_and_shares_coords():
    coarse = (torch.rand(2, 4, 4, generator=gen()) > 0.5).float()  # (2, 4, 4)
    fine = coarse.repeat_interleave(4, 1).repeat_interleave(4, 2)  # (2, 16, 16) nearest x4 upsampling
    centres = (torch.arange(4) + 0.5) / 4
    xy = torch.stack(torch.meshgrid(centres, centres, indexing="xy"), -1).reshape(1, 16, 2)  # (1, 16, 2)
    torch.testing.assert_close(point_sample(fine, xy), point_sample(coarse, xy))
    torch.testing.assert_close(point_sample(coarse, xy), coarse.reshape(2, 16))
    bool_masks = point_sample(coarse.bool(), xy)
    assert bool_masks.dtype == torch.float32


def test_uncertain_points_prefers_the_boundary():
    logits = torch.full((3, 16, 16), 20.0)
    logits[:, :, :8] = 0.0  # left half maximally uncertain
    pts = uncertain_points(logits, 400, oversample_ratio=3.0, importance_sample_ratio=0.75, generator=gen())
    check_shape(pts, (3, 400, 2))
    assert pts.min() >= 0 and pts.max() <= 1
    important = pts[:, :300]  # the first 300 = int(0.75 * 400) are the chosen ones
    assert (important[..., 0] < 0.5).all()  # all in the left half (x < 0.5)
    # the 100 fresh uniform points land left about half of the time, not all of them
    assert 0.2 < (pts[:, 300:, 0] < 0.5).float().mean() < 0.8


def test_uncertain_points_ratios_and_determinism():
    logits = torch.randn(2, 1, 8, 8, generator=gen(1))
    a = uncertain_points(logits, 50, generator=gen(5))
    b = uncertain_points(logits, 50, generator=gen(5))
    assert torch.equal(a, b)
    assert not torch.equal(a, uncertain_points(logits, 50, generator=gen(6)))
    check_shape(uncertain_points(logits, 50, importance_sample_ratio=0.0, generator=gen()), (2, 50, 2))
    check_shape(uncertain_points(logits, 50, importance_sample_ratio=1.0, generator=gen()), (2, 50, 2))
    check_shape(uncertain_points(logits[:0], 50, generator=gen()), (0, 50, 2))


# ---------------------------------------------------------------- mask losses
def test_dice_loss_hand_case_2x2():
    logits = torch.zeros(1, 4)  # sigmoid = 0.5 everywhere
    target = torch.tensor([[1.0, 1.0, 0.0, 0.0]])  # a 2x2 mask, top row on
    # 1 - (2 * 1 + 1) / (2 + 2 + 1) = 0.4
    torch.testing.assert_close(dice_loss(logits, targets=target), torch.tensor(0.4))
    torch.testing.assert_close(dice_loss(logits.repeat(3, 1), targets=target.repeat(3, 1), num_masks=2.0),
                               torch.tensor(0.6))  # 3 * 0.4 / 2
    assert dice_loss(torch.full((1, 4), -30.0), targets=torch.zeros(1, 4)) < 1e-6  # empty vs empty: +1 smoothing


def test_dice_and_bce_against_numpy():
    x = torch.randn(3, 10, generator=gen(2), dtype=torch.float64)
    t = (torch.rand(3, 10, generator=gen(3)) > 0.4).double()
    p, tn = sigmoid(x.numpy()), t.numpy()
    dice = (1 - (2 * (p * tn).sum(1) + 1) / (p.sum(1) + tn.sum(1) + 1)).sum() / 2.5
    bce = (-(tn * np.log(p) + (1 - tn) * np.log(1 - p))).mean(1).sum() / 2.5
    assert dice_loss(x, targets=t, num_masks=2.5).item() == pytest.approx(dice, rel=1e-10)
    assert sigmoid_bce_loss(x, targets=t, num_masks=2.5).item() == pytest.approx(bce, rel=1e-10)
    # BCE of logit 0 against anything is log 2
    assert sigmoid_bce_loss(torch.zeros(1, 4), targets=torch.tensor([[1.0, 0, 1, 0]])).item() == pytest.approx(math.log(2))


def test_pairwise_costs_equal_per_pair_losses():
    x = torch.randn(4, 12, generator=gen(4), dtype=torch.float64)
    t = (torch.rand(3, 12, generator=gen(5)) > 0.5).double()
    bce, dice = pairwise_bce_cost(x, targets=t), pairwise_dice_cost(x, targets=t)
    check_shape(bce, (4, 3)), check_shape(dice, (4, 3))
    for n, m in itertools.product(range(4), range(3)):
        assert bce[n, m].item() == pytest.approx(sigmoid_bce_loss(x[n:n + 1], targets=t[m:m + 1]).item(), rel=1e-10)
        assert dice[n, m].item() == pytest.approx(dice_loss(x[n:n + 1], targets=t[m:m + 1]).item(), rel=1e-10)


# ---------------------------------------------------------------- class CE
def test_class_ce_hand_case_with_no_object_weight():
    logits = torch.tensor([[[2.0, 0.0, 0.5], [0.0, 1.0, 1.0], [1.0, 0.0, -1.0]]])  # (1, N=3, K+1=3)
    targets = [dict(labels=torch.tensor([1, 0]))]
    # q0 -> segment 1 (class 0), q2 -> segment 0 (class 1), q1 unmatched -> no object (class 2)
    indices = [(torch.tensor([0, 2]), torch.tensor([1, 0]))]
    lp = torch.log_softmax(logits[0].double(), -1).numpy()
    expected = (1.0 * -lp[0, 0] + 0.1 * -lp[1, 2] + 1.0 * -lp[2, 1]) / (1.0 + 0.1 + 1.0)
    assert class_ce_loss(logits, targets, indices).item() == pytest.approx(expected, rel=1e-6)
    plain = -(lp[0, 0] + lp[1, 2] + lp[2, 1]) / 3
    assert class_ce_loss(logits, targets, indices, no_object_weight=1.0).item() == pytest.approx(plain, rel=1e-6)


# ---------------------------------------------------------------- matching
def test_matching_optimal_not_greedy():
    # K = 2 classes + no object. Greedy (query 0 takes its best target first) gives 0->0, 1->1 with
    # total -(0.5 + 0.05); the optimum 0->1, 1->0 has -(0.45 + 0.45).
    probs = torch.tensor([[[0.5, 0.45, 0.05], [0.45, 0.05, 0.5]]])
    targets = [dict(labels=torch.tensor([0, 1]), masks=torch.zeros(2, 4, 4))]
    (pred, tgt), = hungarian_match(probs.log(), torch.zeros(1, 2, 4, 4), targets,
                                   cost_class=1.0, cost_mask=0.0, cost_dice=0.0, num_points=16, generator=gen())
    assert pred.tolist() == [0, 1] and tgt.tolist() == [1, 0]
    assert pred.dtype == tgt.dtype == torch.int64


def test_matching_recovers_permuted_masks_and_is_optimal():
    quads = torch.zeros(4, 8, 8)
    quads[0, :4, :4] = quads[1, :4, 4:] = quads[2, 4:, :4] = quads[3, 4:, 4:] = 1  # (4, 8, 8)
    perm = torch.tensor([2, 0, 3, 1, 4])  # query q predicts quadrant perm[q] (4 = nothing)
    masks = torch.cat([quads, torch.zeros(1, 8, 8)])[perm] * 20 - 10  # (5, 8, 8) logits
    logits = torch.zeros(1, 5, 4)  # class costs tie
    targets = [dict(labels=torch.tensor([0, 1, 2, 0]), masks=quads.bool())]
    (pred, tgt), = hungarian_match(logits, masks[None], targets, num_points=256, generator=gen())
    assert {(p, t) for p, t in zip(pred.tolist(), tgt.tolist())} == {(1, 0), (3, 1), (0, 2), (2, 3)}
    # brute force over all injective assignments of a random problem, same points (same seed)
    cl, ml = torch.randn(5, 4, generator=gen(7)), torch.randn(5, 8, 8, generator=gen(8))
    cost = matching_cost(cl, ml, labels=targets[0]["labels"], masks=quads, num_points=64, generator=gen(9))
    (pred, tgt), = hungarian_match(cl[None], ml[None], targets, num_points=64, generator=gen(9))
    best = min(sum(cost[q, m] for m, q in enumerate(qs)) for qs in itertools.permutations(range(5), 4))
    assert cost[pred, tgt].sum().item() == pytest.approx(best.item(), abs=1e-5)


def test_matching_invariant_to_query_permutation_and_deterministic():
    cl, ml = torch.randn(2, 6, 4, generator=gen(1)), torch.randn(2, 6, 5, 5, generator=gen(2))
    targets = [dict(labels=torch.tensor([0, 2, 1]), masks=torch.rand(3, 20, 20, generator=gen(3)) > 0.5),
               dict(labels=torch.tensor([1]), masks=torch.rand(1, 20, 20, generator=gen(4)) > 0.5)]
    perm = torch.tensor([4, 0, 5, 2, 1, 3])
    base = hungarian_match(cl, ml, targets, num_points=128, generator=gen(11))
    again = hungarian_match(cl, ml, targets, num_points=128, generator=gen(11))
    permuted = hungarian_match(cl[:, perm], ml[:, perm], targets, num_points=128, generator=gen(11))
    for (p0, t0), (p1, t1), (p2, t2) in zip(base, again, permuted):
        assert torch.equal(p0, p1) and torch.equal(t0, t1)
        assert set(zip(p0.tolist(), t0.tolist())) == set(zip(perm[p2].tolist(), t2.tolist()))


def test_matching_handles_empty_images():
    targets = [dict(labels=torch.zeros(0, dtype=torch.long), masks=torch.zeros(0, 8, 8)),
               dict(labels=torch.tensor([1]), masks=torch.ones(1, 8, 8))]
    out = hungarian_match(torch.randn(2, 3, 3), torch.randn(2, 3, 4, 4), targets, num_points=32, generator=gen())
    assert out[0][0].numel() == out[0][1].numel() == 0 and out[0][0].dtype == torch.int64
    assert out[1][0].numel() == 1 and out[1][1].tolist() == [0]


def test_matching_has_no_grad():
    cl = torch.randn(1, 3, 3, requires_grad=True)
    cost = matching_cost(cl[0], torch.randn(3, 4, 4), labels=torch.tensor([0]), masks=torch.ones(1, 4, 4), num_points=8)
    assert not cost.requires_grad


# ---------------------------------------------------------------- criterion
K = 3  # classes in the criterion tests (logits have K + 1 entries)


def make_outputs(num_outputs=3, b=2, n=5, hm=8, seed=0, grad=True):
    g = gen(seed)
    outs = []
    for _ in range(num_outputs):
        o = dict(logits_A=torch.randn(b, n, K + 1, generator=g), logits_B=torch.randn(b, n, K + 1, generator=g),
                 masks=torch.randn(b, n, hm, hm, generator=g))
        outs.append({k: v.requires_grad_(grad) for k, v in o.items()})
    return outs


def make_targets(ms=(2, 1), size=32, seed=1):
    g = gen(seed)
    return [dict(labels=torch.randint(0, K, (m,), generator=g), masks=torch.rand(m, size, size, generator=g) > 0.5)
            for m in ms]


def test_mask_point_losses_hand_case():
    # one matched mask, logits 0 everywhere (so every point is "most uncertain"), target all ones on a large
    # canvas: every point reads BCE = log 2 whatever the target; with S = sum of sampled targets,
    # dice = 1 - (2 * 0.5 * S + 1) / (0.5 P + S + 1), which is 0.5 P / (1.5 P + 1) at S = P and grows as
    # S drops (points within half a fine pixel of the border read < 1 through the zero padding).
    logits = torch.zeros(1, 1, 4, 4, requires_grad=True)
    targets = [dict(labels=torch.tensor([0]), masks=torch.ones(1, 64, 64))]
    idx = [(torch.tensor([0]), torch.tensor([0]))]
    bce, dice = mask_point_losses(logits, targets, idx, num_masks=1.0, num_points=500, generator=gen())
    assert bce.item() == pytest.approx(math.log(2), rel=1e-6)
    at_s = lambda s: 1 - (s + 1) / (0.5 * 500 + s + 1)
    assert at_s(500) == pytest.approx(250 / 751)
    assert at_s(500) - 1e-6 < dice.item() < at_s(0.95 * 500)
    bce.backward()
    assert logits.grad.abs().sum() > 0


def test_criterion_names_weights_total_and_indices():
    outs, targets = make_outputs(), make_targets()
    res = EBSegCriterion(K, num_points=64)(outs, targets, generator=gen())
    names = {"loss_ce_A", "loss_ce_B", "loss_mask", "loss_dice"}
    expected = names | {f"{n}_{i}" for n in names for i in (0, 1)}
    assert set(res.losses) == set(res.weighted) == expected
    w = LossWeights()
    assert (w.ce_A, w.ce_B, w.mask, w.dice) == (1.5, 1.5, 5.0, 5.0)
    for name, value in res.losses.items():
        torch.testing.assert_close(res.weighted[name], w.of(name) * value)
    torch.testing.assert_close(res.total, sum(res.weighted.values()))
    assert official_name("loss_ce_B_1") == "1_loss_ce_1" and official_name("loss_ce_A") == "loss_ce"
    assert len(res.indices) == 3 and all(len(ix) == 2 for ix in res.indices)
    last = hungarian_match(outs[-1]["logits_A"], outs[-1]["masks"], targets, num_points=64, generator=gen())
    for (p0, t0), (p1, t1) in zip(res.indices[-1], last):  # the final output is matched first
        assert torch.equal(p0, p1) and torch.equal(t0, t1)


def test_criterion_deterministic_and_gradients_reach_every_output():
    outs, targets = make_outputs(), make_targets()
    crit = EBSegCriterion(K, num_points=64)
    a, b = crit(outs, targets, generator=gen(3)), crit(outs, targets, generator=gen(3))
    assert all(torch.equal(a.losses[k], b.losses[k]) for k in a.losses)
    a.total.backward()
    for o in outs:
        for key in ("logits_A", "logits_B", "masks"):
            assert o[key].grad is not None and o[key].grad.abs().sum() > 0, key


def test_criterion_perfect_predictions_are_minimal():
    targets = make_targets(ms=(2, 3), size=16)
    n = 4
    masks = torch.full((2, n, 16, 16), -30.0)
    logits = torch.full((2, n, K + 1), -30.0)
    logits[..., K] = 30.0  # unused queries say "no object"
    for b, t in enumerate(targets):
        m = len(t["labels"])
        masks[b, :m] = t["masks"].float() * 60 - 30
        logits[b, torch.arange(m), K] = -30.0
        logits[b, torch.arange(m), t["labels"]] = 30.0
    crit = EBSegCriterion(K, num_points=256)
    perfect = crit([dict(logits_A=logits, logits_B=logits, masks=masks)], targets, generator=gen())
    assert perfect.losses["loss_ce_A"] < 1e-6 and perfect.losses["loss_ce_B"] < 1e-6
    for b, (pred, tgt) in enumerate(perfect.indices[0]):
        assert torch.equal(pred, tgt)  # query i was built for segment i
    flipped = crit([dict(logits_A=logits, logits_B=logits, masks=-masks)], targets, generator=gen())
    shuffled = crit([dict(logits_A=logits.roll(1, -1), logits_B=logits, masks=masks)], targets, generator=gen())
    noisy = crit([dict(logits_A=logits, logits_B=logits, masks=masks + 40 * torch.randn(masks.shape, generator=gen(2)))],
                 targets, generator=gen())
    for worse in (flipped, shuffled, noisy):
        assert perfect.total < worse.total


def test_criterion_empty_targets_finite_with_gradients():
    crit = EBSegCriterion(K, num_points=32)
    for ms in ((0, 2), (0, 0)):
        outs, targets = make_outputs(num_outputs=2), make_targets(ms=ms)
        res = crit(outs, targets, generator=gen())
        assert all(torch.isfinite(v) for v in res.losses.values())
        res.total.backward()
        for o in outs:
            assert all(torch.isfinite(o[k].grad).all() for k in o)
            assert o["logits_A"].grad.abs().sum() > 0  # "no object" is still taught
        if ms == (0, 0):
            assert res.losses["loss_mask"] == 0 and res.losses["loss_dice"] == 0


def test_criterion_pads_smaller_target_canvases_and_skips_missing_b():
    outs = [dict(logits_A=torch.randn(2, 1, K + 1), masks=torch.randn(2, 1, 4, 4))]
    small = dict(labels=torch.tensor([1]), masks=torch.ones(1, 4, 4))
    padded = dict(labels=torch.tensor([1]), masks=torch.nn.functional.pad(torch.ones(1, 4, 4), (0, 4, 0, 4)))
    big = dict(labels=torch.tensor([0]), masks=torch.ones(1, 8, 8))
    crit = EBSegCriterion(K, num_points=64)
    a = crit(outs, [big, small], generator=gen())
    b = crit(outs, [big, padded], generator=gen())
    assert "loss_ce_B" not in a.losses
    for k in ("loss_mask", "loss_dice"):
        torch.testing.assert_close(a.losses[k], b.losses[k])


def test_num_masks_normaliser_clamps_and_reduces(tmp_path):
    assert num_masks_normaliser(make_targets(ms=(0, 0)), torch.device("cpu")) == 1.0
    assert num_masks_normaliser(make_targets(ms=(2, 3)), torch.device("cpu")) == 5.0
    dist = torch.distributed  # a one-worker gloo group exercises the all-reduce branch
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        assert num_masks_normaliser(make_targets(ms=(2, 3)), torch.device("cpu")) == 5.0
    finally:
        dist.destroy_process_group()
