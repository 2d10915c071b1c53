"""Tests of balance (pure stage functions) against small cases worked out by hand.

Expected numbers are written out in the tests (tiny tensors, Python arithmetic), never obtained by
calling the function under test another way. The CLIP-block tests use the random-initialised
``tiny`` preset, built once per module.
"""
import math

import pytest
import torch

from ebseg_lite.modeling.balance import (
    balance, balance_embeddings, official_map_probs, semantic_inference, void_probability, with_void,
)
from ebseg_lite.shapes import check_shape


def t(x):
    return torch.tensor(x, dtype=torch.float32)


# ---------------------------------------------------------------- stage 6: balancing (eq. 8-14)
def _fused(pa, pb, pd, w):
    wa, wb, wd = w
    return 1e-8 + pa ** wa * pd ** wd * pb ** wb


def test_balance_hand_case_k3():
    seen = torch.tensor([True, True, False])
    ws, wn = (0.21, 0.7, 0.09), (0.0, 0.7, 0.3)
    pa, pb, pd = [0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.6, 0.1, 0.3]
    raw = [_fused(pa[0], pb[0], pd[0], ws), _fused(pa[1], pb[1], pd[1], ws), 1e-8 + pb[2] ** 0.7 * pd[2] ** 0.3]
    expected = [r / sum(raw) for r in raw]
    got = check_shape(balance(t(pa), t(pb), t(pd), seen), (3,))
    torch.testing.assert_close(got, t(expected))
    # the weights matter: swapping seen/new changes the answer
    assert not torch.allclose(balance(t(pa), t(pb), t(pd), ~seen), got, atol=1e-3)


def test_balance_zero_to_the_zero_is_one_for_new_class():
    # new class 2 has p_A = 0 with weight 0: 0^0 = 1, so it keeps p_B^0.7 p_D^0.3, not eps.
    # seen class 0 has p_A = 0 with weight 0.21: its product is 0 and only eps survives.
    seen = torch.tensor([True, True, False])
    pa, pb, pd = [0.0, 0.6, 0.0], [0.3, 0.3, 0.4], [0.2, 0.5, 0.3]
    raw = [1e-8, _fused(pa[1], pb[1], pd[1], (0.21, 0.7, 0.09)), 1e-8 + 0.4 ** 0.7 * 0.3 ** 0.3]
    got = balance(t(pa), t(pb), t(pd), seen)
    torch.testing.assert_close(got, t([r / sum(raw) for r in raw]))
    assert got[2] > 0.5 and got[0] < 1e-6
    assert torch.isfinite(got).all()


def test_balance_rows_sum_to_one_and_w100_returns_pa():
    torch.manual_seed(0)
    pa, pb, pd = (torch.randn(2, 5, 7).softmax(-1) for _ in range(3))
    seen = torch.tensor([True, False, True, False, False, True, True])
    got = check_shape(balance(pa, pb, pd, seen), (2, 5, 7))
    torch.testing.assert_close(got.sum(-1), torch.ones(2, 5))
    only_a = balance(pa, pb, pd, seen, w_seen=(1, 0, 0), w_new=(1, 0, 0))
    torch.testing.assert_close(only_a, (pa + 1e-8) / (1 + 7e-8))
    torch.testing.assert_close(only_a, pa)


def test_balance_embeddings_eq_9_13_by_hand():
    A, B, D = t([[[1, 0]]]), t([[[0, 1]]]), t([[[1, 1]]])   # (1, N=1, C=2)
    text = t([[1, 0], [0, 1]])                              # K = 2
    seen = torch.tensor([True, False])
    probs, e_seen, e_new = balance_embeddings(A, B, D, text, seen, logit_scale=2.0)  # a=0.2 b=0.7 g=0
    torch.testing.assert_close(e_seen, t([[[0.2 + 0.1, 0.7 + 0.1]]]))   # 0.2A + 0.7B + 0.1D
    torch.testing.assert_close(e_new, t([[[0.0 + 0.3, 0.7 + 0.3]]]))    # 0A + 0.7B + 0.3D
    # class 0 (seen) from E_seen: 2 * 0.3; class 1 (new) from E_new: 2 * 1.0
    z = [math.exp(2 * 0.3), math.exp(2 * 1.0)]
    torch.testing.assert_close(probs, t([[[z[0] / sum(z), z[1] / sum(z)]]]))
    # other weights: E_seen = .5A + .25B + .25D, E_new = .1A + .25B + .65D
    probs, e_seen, e_new = balance_embeddings(A, B, D, text, ~seen, a=0.5, b=0.25, g=0.1, logit_scale=1.0)
    torch.testing.assert_close(e_seen, t([[[0.75, 0.5]]]))
    torch.testing.assert_close(e_new, t([[[0.75, 0.9]]]))
    z = [math.exp(0.75), math.exp(0.5)]     # class 0 new -> E_new[0]; class 1 seen -> E_seen[1]
    torch.testing.assert_close(probs, t([[[z[0] / sum(z), z[1] / sum(z)]]]))


def test_semantic_inference_hand_case():
    probs = t([[[0.9, 0.1], [0.2, 0.8]]])                            # (B=1, N=2, K=2)
    masks = t([[[[0.0, math.log(3)]], [[-math.log(3), 0.0]]]])       # sigmoid: [.5, .75], [.25, .5]
    got = check_shape(semantic_inference(probs, masks), (1, 2, 1, 2))
    torch.testing.assert_close(got[0, 0, 0], t([0.9 * 0.5 + 0.2 * 0.25, 0.9 * 0.75 + 0.2 * 0.5]))
    torch.testing.assert_close(got[0, 1, 0], t([0.1 * 0.5 + 0.8 * 0.25, 0.1 * 0.75 + 0.8 * 0.5]))


def test_void_probability_with_void_and_official_map_probs():
    pv = void_probability(t([[0.0, 0.0, math.log(2)]]))       # softmax: 1/4, 1/4, 1/2
    torch.testing.assert_close(pv, t([0.5]))
    full = check_shape(with_void(t([[0.6, 0.4]]), pv), (1, 3))
    torch.testing.assert_close(full, t([[0.6 * 0.5, 0.4 * 0.5, 0.5]]))
    # official: softmax(log(p + 1e-8)) over K + 1, then the void column is dropped (not renormalised)
    z = 0.3 + 0.2 + 0.5 + 3e-8
    got = check_shape(official_map_probs(full), (1, 2))
    torch.testing.assert_close(got, t([[(0.3 + 1e-8) / z, (0.2 + 1e-8) / z]]))
    assert got.sum().item() == pytest.approx(0.5, abs=1e-6)
