"""Tests of the pure stage functions (spec stages 1-6) against small cases worked out by hand.

Expected numbers are written out in the tests (tiny tensors, Python arithmetic), never obtained by
calling the function under test another way. The CLIP-block tests use the random-initialised
``tiny`` preset, built once per module.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from ebseg_lite import build_model
from ebseg_lite.attn_bias import NEG, build_attn_bias, folded_per_head_bias, per_head_bias, pool_bias
from ebseg_lite.balance import (
    balance, balance_embeddings, official_map_probs, semantic_inference, void_probability, with_void,
)
from ebseg_lite.clip_dense import attention, clip_block, dual_block, resize_pos_embed
from ebseg_lite.deform_attn import ms_deform_attn, sine_position_embedding
from ebseg_lite.mask_pool import mask_pool
from ebseg_lite.shapes import check_shape
from ebseg_lite.ssc import ssc_loss
from ebseg_lite.text import encode_text_trimmed
from ebseg_lite.transformer_decoder import cross_attention_mask
from ebseg_lite.vocabulary import parse_class_list, seen_mask, validate_class_names


def t(x):
    return torch.tensor(x, dtype=torch.float32)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("tiny").eval()


# ---------------------------------------------------------------- stage 4: mask pooling (eq. 3)
FEATS_2x2 = t([[[[1, 2], [3, 4]], [[10, 20], [30, 40]]]])  # (B=1, C=2, 2, 2)


def test_mask_pool_hand_case_on_2x2_grid():
    logits = t([[[[5, -5], [5, -5]],          # left column
                 [[-3, -3], [-3, -3]],        # empty
                 [[0.1, 0.0], [-0.1, 7]]]])   # (0,0) and (1,1); sigmoid(0) = 0.5 is not > 0.5
    got = check_shape(mask_pool(logits, FEATS_2x2), (1, 3, 2))
    torch.testing.assert_close(got[0, 0], t([(1 + 3) / 2, (10 + 30) / 2]))
    torch.testing.assert_close(got[0, 2], t([(1 + 4) / 2, (10 + 40) / 2]))
    assert torch.equal(got[0, 1], torch.zeros(2))  # empty mask: exactly 0, no renormalisation


def test_mask_pool_denominator_has_1e8_and_no_renormalisation():
    feats = t([[[[1.0]], [[1.0]]]])   # (1, 2, 1, 1): one pixel, vector (1, 1)
    got = mask_pool(t([[[[3.0]]]]), feats)[0, 0]
    # 1 / (1 + 1e-8) in float32 is 1; the point: the norm stays sqrt(2), D is not re-normalised
    torch.testing.assert_close(got, t([1 / (1 + 1e-8), 1 / (1 + 1e-8)]))
    assert abs(got.norm().item() - math.sqrt(2)) < 1e-6


def test_mask_pool_resizes_logits_bilinearly_before_thresholding():
    # 4x4 logits -> 2x2: bilinear (align_corners=False) at factor 2 is the mean of each 2x2 block.
    logits = t([[[[3, -1, 4, -4],
                  [-1, 3, -4, -0.5],
                  [-2, -2, 0.5, 0.5],
                  [-2, 5, 0.5, 0.5]]]])
    # block means: TL 1.0 (in), TR -1.125 (out, though it has a positive pixel),
    # BL -0.25 (out, though it has a positive pixel), BR 0.5 (in)
    got = mask_pool(logits, FEATS_2x2)
    torch.testing.assert_close(got[0, 0], t([(1 + 4) / 2, (10 + 40) / 2]))


def test_mask_pool_detaches_masks_but_not_features():
    logits = t([[[[5, -5], [5, -5]], [[0.1, 0.0], [-0.1, 7]]]]).requires_grad_()
    feats = FEATS_2x2.clone().requires_grad_()
    mask_pool(logits, feats).sum().backward()
    assert logits.grad is None
    # d/dF of sum_n mean_n(F) = sum_n m_n / |m_n|: mask 0 = left column (1/2 each), mask 1 = diagonal (1/2 each)
    per_pixel = t([[0.5 + 0.5, 0.0], [0.5, 0.5]])
    torch.testing.assert_close(feats.grad[0], torch.stack([per_pixel, per_pixel]))


# ---------------------------------------------------------------- stage 5: SSC loss (eq. 4-7)
def test_ssc_k2_hand_case_both_forms():
    img = t([[1, 0], [1, 1]])   # cosine matrix [[1, 1/sqrt2], [1/sqrt2, 1]]
    txt = t([[1, 0], [0, 1]])   # identity
    off = 1 / math.sqrt(2)
    assert ssc_loss(img, txt).item() == pytest.approx(2 * off ** 2 / 4, abs=1e-6)               # 0.25
    assert ssc_loss(img, txt, form="paper").item() == pytest.approx(2 * off / 4, abs=1e-6)


def test_ssc_k3_hand_case_both_forms():
    img = t([[1, 0, 0], [0, 1, 0], [3, 4, 0]])   # cos(e1,e3) = 0.6, cos(e2,e3) = 0.8, cos(e1,e2) = 0
    txt = t([[2, 0, 0], [0, 5, 0], [0, 0, 1]])   # identity cosine matrix
    assert ssc_loss(img, txt).item() == pytest.approx(2 * (0.6 ** 2 + 0.8 ** 2) / 9, abs=1e-6)
    assert ssc_loss(img, txt, form="paper").item() == pytest.approx(2 * (0.6 + 0.8) / 9, abs=1e-6)


def test_ssc_diagonal_counts_with_raw_dot_products():
    # normalize=False: A A^T with |A| = s = 2 puts s^2 = 4 on the diagonal; text diagonal is 1.
    img = t([[2, 0], [0, 2]])
    txt = t([[1, 0], [0, 1]])
    assert ssc_loss(img, txt, normalize=False).item() == pytest.approx(2 * 3 ** 2 / 4)        # 4.5
    assert ssc_loss(img, txt, normalize=False, form="paper").item() == pytest.approx(2 * 3 / 4)
    assert ssc_loss(img, txt).item() == pytest.approx(0.0, abs=1e-7)   # cosine: diagonal 1 = 1
    # raw dot products off the diagonal too: (1,1).(1,-1)=0, |(1,1)|^2 = 2
    img2 = t([[1, 1], [1, 0]])   # A A^T = [[2, 1], [1, 1]]
    assert ssc_loss(img2, txt, normalize=False).item() == pytest.approx((1 + 1 + 1 + 0) / 4)


def test_ssc_is_scale_invariant():
    torch.manual_seed(0)
    img, txt = torch.randn(4, 8), torch.randn(4, 8)
    ref = ssc_loss(img, txt)
    scaled = ssc_loss(img * t([[0.1], [3.0], [7.0], [0.5]]), txt * t([[2.0], [0.2], [1.0], [9.0]]))
    torch.testing.assert_close(scaled, ref)
    assert ref.item() > 0.01  # a real, non-trivial loss


def test_ssc_k0_is_zero_and_differentiable():
    img = torch.zeros(0, 8, requires_grad=True)
    loss = ssc_loss(img, torch.zeros(0, 8))
    assert loss.item() == 0.0 and not torch.isnan(loss)
    loss.backward()
    assert img.grad is not None and img.grad.shape == (0, 8)


def test_ssc_text_side_gets_no_gradient():
    torch.manual_seed(0)
    img = torch.randn(3, 8, requires_grad=True)
    txt = torch.randn(3, 8, requires_grad=True)
    ssc_loss(img, txt).backward()
    assert txt.grad is None
    assert img.grad is not None and img.grad.abs().sum() > 0


def test_ssc_rejects_unknown_form():
    with pytest.raises(ValueError, match="form"):
        ssc_loss(torch.ones(2, 2), torch.ones(2, 2), form="l2")


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


# ---------------------------------------------------------------- stage 2/3: attention bias
def test_build_attn_bias_every_block_n2_grid2x2():
    pooled = t([[[[[1, 2], [3, 4]], [[5, 6], [7, 8]]]]])   # (B=1, nh=1, N=2, 2, 2)
    m, z = NEG, 0.0
    assert m == -100.0
    #          q0  q1  cls  img (row-major h x w)
    expected = [[z, m, m, 1, 2, 3, 4],        # query 0: itself 0, other query -100, CLS -100, its bias
                [m, z, m, 5, 6, 7, 8],        # query 1
                [m, m, z, z, z, z, z],        # CLS: no query, CLS and image 0
                [m, m, z, z, z, z, z],        # image tokens likewise
                [m, m, z, z, z, z, z],
                [m, m, z, z, z, z, z],
                [m, m, z, z, z, z, z]]
    got = check_shape(build_attn_bias(pooled), (1, 1, 7, 7))
    assert torch.equal(got[0, 0], t(expected))
    plain = [row[:] for row in expected]
    plain[0][3:] = [m] * 4
    plain[1][3:] = [m] * 4
    assert torch.equal(build_attn_bias(pooled, plain=True)[0, 0], t(plain))


def test_build_attn_bias_keeps_heads_and_batches_apart():
    pooled = torch.arange(2 * 3 * 2 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2, 2)  # (B, nh, N, h, w)
    got = check_shape(build_attn_bias(pooled), (2, 3, 7, 7))
    for b in range(2):
        for j in range(3):
            for n in range(2):
                assert torch.equal(got[b, j, n, 3:], pooled[b, j, n].flatten())


def _hand_weight(nh, d, dp):
    # an explicit, non-symmetric last-layer weight (nh*D, D') and bias (nh*D,)
    w = t([[((r * 7 + c * 3) % 11 - 5) / 4 for c in range(dp)] for r in range(nh * d)])
    b = t([(r % 5 - 2) / 3 for r in range(nh * d)])
    return w, b


def test_folded_per_head_bias_equals_per_head_bias():
    torch.manual_seed(0)
    bsz, n, d, dp, nh, hm, wm = 2, 3, 4, 5, 2, 3, 3
    e, hidden = torch.randn(bsz, n, d), torch.randn(bsz, dp, hm, wm)
    lw, lb = _hand_weight(nh, d, dp)
    w, c = t([[1.5]]), t([-0.25])
    feats = torch.einsum("oi,bihw->bohw", lw, hidden) + lb[None, :, None, None]   # (B, nh*D, Hm, Wm)
    ref = per_head_bias(e, feats.reshape(bsz, nh, d, hm, wm), weight=w, bias=c)
    got = folded_per_head_bias(e, hidden, lw, lb, weight=w, bias=c)
    check_shape(got, (bsz, nh, n, hm, wm))
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_per_head_bias_one_head_hand_case():
    e = t([[[1, 2]]])                           # (B=1, N=1, D=2)
    hidden = t([[[[3, -1]]]])                   # (B=1, D'=1, 1, 2)
    lw, lb = t([[1], [2]]), t([0.5, -1])        # F_attn = [h + .5, 2h - 1]: [3.5, 5] and [-.5, -3]
    w, c = t([[2.0]]), t([0.5])
    expected = t([2 * (1 * 3.5 + 2 * 5) + 0.5, 2 * (1 * -0.5 + 2 * -3) + 0.5])   # 27.5, -12.5
    feats = t([[[[[3.5, -0.5]], [[5, -3]]]]])   # (B, nh=1, D=2, 1, 2)
    torch.testing.assert_close(per_head_bias(e, feats, weight=w, bias=c)[0, 0, 0, 0], expected)
    torch.testing.assert_close(folded_per_head_bias(e, hidden, lw, lb, weight=w, bias=c)[0, 0, 0, 0], expected)


def test_pool_bias_max_and_avg_4x4_to_2x2():
    x = t([[1, 5, 2, 0],
           [3, 2, 8, 1],
           [0, 0, -1, -2],
           [9, 0, -3, -4]]).reshape(1, 1, 1, 4, 4)
    got = check_shape(pool_bias(x, (2, 2)), (1, 1, 1, 2, 2))
    assert torch.equal(got[0, 0, 0], t([[5, 8], [9, -1]]))
    torch.testing.assert_close(pool_bias(x, (2, 2), "avg")[0, 0, 0], t([[11 / 4, 11 / 4], [9 / 4, -10 / 4]]))
    with pytest.raises(ValueError, match="unknown pooling"):
        pool_bias(x, (2, 2), "median")


# ---------------------------------------------------------------- stage 1: CLIP positional embedding
def test_resize_pos_embed():
    torch.manual_seed(0)
    pos = torch.randn(1 + 4 * 4, 6)
    assert resize_pos_embed(pos, (4, 4), (4, 4)) is pos
    out = check_shape(resize_pos_embed(pos, (4, 4), (3, 5)), (1 + 3 * 5, 6))
    assert torch.equal(out[0], pos[0])
    const = torch.cat([torch.randn(1, 6), t([0.5, -1, 2, 0, 3, 7]).expand(16, 6)])
    big = resize_pos_embed(const, (4, 4), (7, 6))
    torch.testing.assert_close(big[1:], t([0.5, -1, 2, 0, 3, 7]).expand(42, 6))


def _keys_cubic(x, a=-0.75):
    """The bicubic convolution kernel PyTorch uses (Keys, A = -0.75)."""
    x = abs(x)
    if x <= 1:
        return (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1
    if x < 2:
        return a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a
    return 0.0


def test_resize_pos_embed_is_bicubic_by_hand():
    # a 1 x 2 grid -> 1 x 4: rows unchanged, columns cubic-interpolated with borders clamped
    # (align_corners=False: output column j samples source position (j + 0.5) / 2 - 0.5).
    vals = [1.0, 3.0]
    pos = t([[9.0], [vals[0]], [vals[1]]])                  # (1 + 1*2, W=1), CLS = 9
    expected = []
    for j in range(4):
        src = (j + 0.5) / 2 - 0.5
        k0 = math.floor(src)
        expected.append(sum(_keys_cubic(src - k) * vals[min(max(k, 0), 1)] for k in range(k0 - 1, k0 + 3)))
    got = resize_pos_embed(pos, (1, 2), (1, 4))
    torch.testing.assert_close(got[1:, 0], t(expected))
    assert expected[0] < 1.0  # cubic overshoots at the border, unlike bilinear


# ---------------------------------------------------------------- stage 2: deformable attention
def _value_2x3():
    # (B=1, S=6, nh=1, dh=2), token s = row * 3 + col holds (s, 10 s)
    return t([[[[s, 10 * s]] for s in range(6)]])


def _centre(row, col, h, w):
    return [(col + 0.5) / w, (row + 0.5) / h]   # (x, y) in [0, 1]


def test_ms_deform_attn_pixel_centre_reads_that_pixel():
    loc = t(_centre(1, 2, 2, 3)).reshape(1, 1, 1, 1, 1, 2)   # (B, Q, nh, nl, np, 2)
    got = check_shape(ms_deform_attn(_value_2x3(), [(2, 3)], loc, torch.ones(1, 1, 1, 1, 1)), (1, 1, 2))
    torch.testing.assert_close(got[0, 0], t([5, 50]))


def test_ms_deform_attn_mixes_points_with_weights():
    loc = t([_centre(0, 1, 2, 3), _centre(1, 0, 2, 3)]).reshape(1, 1, 1, 1, 2, 2)
    w = t([0.25, 0.75]).reshape(1, 1, 1, 1, 2)
    got = ms_deform_attn(_value_2x3(), [(2, 3)], loc, w)
    torch.testing.assert_close(got[0, 0], t([0.25 * 1 + 0.75 * 3, 0.25 * 10 + 0.75 * 30]))


def test_ms_deform_attn_outside_point_gives_zero():
    loc = t([[1.5, 0.5], [-0.7, -0.7]]).reshape(1, 1, 1, 1, 2, 2)
    got = ms_deform_attn(_value_2x3(), [(2, 3)], loc, t([0.5, 0.5]).reshape(1, 1, 1, 1, 2))
    assert torch.equal(got, torch.zeros(1, 1, 2))


def test_ms_deform_attn_two_levels_two_heads_layout():
    # levels (2, 3) and (1, 2): S = 6 + 2; head 0 holds s, head 1 holds 100 + s (dh = 1)
    value = t([[[[s], [100 + s]] for s in range(8)]])                     # (1, 8, 2, 1)
    loc = t([[[_centre(0, 0, 2, 3)], [_centre(0, 1, 1, 2)]],               # head 0: s=0 (lvl 0), s=7 (lvl 1)
             [[_centre(1, 1, 2, 3)], [_centre(0, 0, 1, 2)]]]).reshape(1, 1, 2, 2, 1, 2)  # head 1: s=4, s=6
    w = t([[[0.5], [0.5]], [[1.0], [0.0]]]).reshape(1, 1, 2, 2, 1)
    got = check_shape(ms_deform_attn(value, [(2, 3), (1, 2)], loc, w), (1, 1, 2))
    torch.testing.assert_close(got[0, 0], t([0.5 * 0 + 0.5 * 7, 1.0 * 104 + 0.0 * 106]))


def test_sine_position_embedding():
    h, w, nf = 3, 4, 8
    pos = check_shape(sine_position_embedding(2, h, w, nf), (2, 2 * nf, h, w))
    assert pos.min() >= -1 and pos.max() <= 1
    two_pi, eps = 2 * math.pi, 1e-6
    y0 = two_pi * 1 / (h + eps)
    torch.testing.assert_close(pos[0, 0, 0], t([math.sin(y0)] * w))         # y channels first: sin(y / 1)
    torch.testing.assert_close(pos[0, 1, 0], t([math.cos(y0)] * w))         # then cos(y / 1)
    torch.testing.assert_close(pos[0, 2, 0], t([math.sin(y0 / 10000 ** (2 / nf))] * w))
    xs = [math.sin(two_pi * (j + 1) / (w + eps)) for j in range(w)]         # x channels from nf on
    torch.testing.assert_close(pos[1, nf, 2], t(xs))


# ---------------------------------------------------------------- stage 2: masked cross-attention
def test_cross_attention_mask_hand_case_and_cleared_rows():
    masks = t([[[[1, -1], [-1, 0]],         # attend (0,0) and (1,1) (sigmoid(0) = 0.5 is attended)
                [[-2, -3], [-1, -5]]],      # masks everything -> cleared (attend all)
               [[[-1, -1], [-1, 2]],
                [[3, 3], [3, 3]]]])         # (B=2, N=2, 2, 2)
    got = check_shape(cross_attention_mask(masks, (2, 2), nheads=2), (4, 2, 4))
    assert got.dtype == torch.bool
    b0 = torch.tensor([[False, True, True, False], [False, False, False, False]])
    b1 = torch.tensor([[True, True, True, False], [False, False, False, False]])
    for i, exp in enumerate([b0, b0, b1, b1]):   # batch-major, heads repeated
        assert torch.equal(got[i], exp), i


# ---------------------------------------------------------------- stage 3/4: CLIP blocks and Surgery
def _surgery_term(blk, h):
    """out_proj(softmax(v v^T / sqrt(dh)) v) by hand from the block's in_proj weights."""
    width, nh = h.shape[-1], blk.attn.num_heads
    dh = width // nh
    wv = blk.attn.in_proj_weight[2 * width:]
    bv = blk.attn.in_proj_bias[2 * width:]
    v = h @ wv.t() + bv                                              # (B, T, W)
    b, tk, _ = v.shape
    v = v.reshape(b, tk, nh, dh).permute(0, 2, 1, 3)                 # (B, nh, T, dh)
    att = torch.softmax(v @ v.transpose(-1, -2) / math.sqrt(dh), dim=-1)
    o = (att @ v).permute(0, 2, 1, 3).reshape(b, tk, width)
    return o @ blk.attn.out_proj.weight.t() + blk.attn.out_proj.bias


def test_clip_block_matches_open_clip_block(tiny):
    blk = tiny.clip.visual.transformer.resblocks[0]
    torch.manual_seed(1)
    x = torch.randn(2, 5, blk.ln_1.normalized_shape[0])
    with torch.no_grad():
        torch.testing.assert_close(clip_block(blk, x), blk(x), atol=1e-5, rtol=1e-5)
        # a bias of -100 on one key changes the output; zeros do not
        torch.testing.assert_close(clip_block(blk, x, torch.zeros(2, blk.attn.num_heads, 5, 5)), blk(x),
                                   atol=1e-5, rtol=1e-5)
        bias = torch.zeros(2, blk.attn.num_heads, 5, 5)
        bias[..., 0] = -100.0
        assert not torch.allclose(clip_block(blk, x, bias), blk(x), atol=1e-4)


def test_dual_block_streams(tiny):
    blk = tiny.clip.visual.transformer.resblocks[0]
    torch.manual_seed(2)
    width = blk.ln_1.normalized_shape[0]
    x, xs = torch.randn(2, 5, width), torch.randn(2, 5, width)
    with torch.no_grad():
        term = _surgery_term(blk, blk.ln_1(x))
        x_out, xs_out = dual_block(blk, x, None)
        torch.testing.assert_close(x_out, clip_block(blk, x), atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(xs_out, x + term, atol=1e-5, rtol=1e-5)      # no FFN
        x_out2, xs_out2 = dual_block(blk, x, xs)
        torch.testing.assert_close(x_out2, clip_block(blk, x), atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(xs_out2, xs + term, atol=1e-5, rtol=1e-5)   # ln_1 of x, not of xs
        wrong = _surgery_term(blk, blk.ln_1(xs))
        assert not torch.allclose(xs_out2, xs + wrong, atol=1e-3)


def test_attention_weights_sum_to_one_and_bias_masks_a_key():
    torch.manual_seed(3)
    q, k, v = (torch.randn(1, 2, 4, 8) for _ in range(3))
    out, w = attention(q, k, v)
    check_shape(out, (1, 2, 4, 8))
    torch.testing.assert_close(w.sum(-1), torch.ones(1, 2, 4))
    bias = torch.zeros(4, 4)
    bias[:, 0] = -100.0
    out_b, w_b = attention(q, k, v, bias)
    assert w_b[..., 0].max() < 1e-30
    out_rest, _ = attention(q, k[:, :, 1:], v[:, :, 1:])
    torch.testing.assert_close(out_b, out_rest, atol=1e-6, rtol=1e-6)


def test_attention_hand_case_scaled_by_sqrt_dh():
    q = t([2, 0, 0, 0]).reshape(1, 1, 1, 4)                         # dh = 4: scores / 2
    k = t([[1, 0, 0, 0], [0, 0, 0, 0]]).reshape(1, 1, 2, 4)          # scores 2/2 = 1 and 0
    v = t([[1, 0, 0, 0], [0, 1, 0, 0]]).reshape(1, 1, 2, 4)
    out, w = attention(q, k, v)
    e = math.e
    torch.testing.assert_close(w[0, 0, 0], t([e / (e + 1), 1 / (e + 1)]))
    torch.testing.assert_close(out[0, 0, 0], t([e / (e + 1), 1 / (e + 1), 0, 0]))


# ---------------------------------------------------------------- stage 6: text embeddings
def test_encode_text_trimmed_matches_encode_text(tiny, monkeypatch):
    clip = tiny.clip
    prompts = ["cat", "a photo of a large cat in the scene.", "There is a medium road, route in the scene."]
    tokens = tiny.tokenizer(prompts)
    with torch.no_grad():
        ref = clip.encode_text(tokens, normalize=True)
        short = clip.encode_text(tiny.tokenizer(["cat"]), normalize=True)

        def forbidden(*args, **kwargs):
            raise AssertionError("the trimmed path must not fall back to encode_text on the tiny model")

        monkeypatch.setattr(clip, "encode_text", forbidden)
        got = encode_text_trimmed(clip, tokens)
        got_short = encode_text_trimmed(clip, tiny.tokenizer(["cat"]))
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_short, short, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(3))


# ---------------------------------------------------------------- vocabulary and shapes
def test_seen_mask_with_synonyms():
    got = seen_mask(["road, route", "cat", "sky", "sofa, couch"], ["route", "sky, clouds", "chair"])
    assert got.dtype == torch.bool
    assert got.tolist() == [True, False, True, False]


def test_validate_class_names_errors_and_stripping():
    assert validate_class_names([" cat ", "road, route"]) == ["cat", "road, route"]
    with pytest.raises(ValueError, match="empty"):
        validate_class_names([])
    with pytest.raises(ValueError, match="blank"):
        validate_class_names(["cat", "  "])
    with pytest.raises(ValueError, match="duplicate"):
        validate_class_names(["cat", "sofa", " cat"])
    with pytest.raises(ValueError, match="one string"):
        validate_class_names("cat,sofa")
    with pytest.raises(ValueError, match="not a string"):
        validate_class_names(["cat", 3])


def test_parse_class_list_commas_and_semicolons():
    assert parse_class_list("cat, sofa ,,tree") == ["cat", "sofa", "tree"]
    assert parse_class_list("road, route; sofa, couch;") == ["road, route", "sofa, couch"]


def test_check_shape_passes_and_fails_with_message():
    x = torch.zeros(2, 3)
    assert check_shape(x, (2, None)) is x
    assert check_shape(x, (2, 3)) is x
    with pytest.raises(AssertionError, match=r"masks: expected shape \(2, 4\), got \(2, 3\)"):
        check_shape(x, (2, 4), name="masks")
    with pytest.raises(AssertionError, match=r"tensor: expected shape .*got \(2, 3\)"):
        check_shape(x, (2, 3, None))   # a different rank fails even with a wildcard
