"""Tests of attn bias (pure stage functions) against small cases worked out by hand.

Expected numbers are written out in the tests (tiny tensors, Python arithmetic), never obtained by
calling the function under test another way. The CLIP-block tests use the random-initialised
``tiny`` preset, built once per module.
"""

import pytest
import torch

from ebseg_lite.modeling.attn_bias import NEG, build_attn_bias, folded_per_head_bias, per_head_bias, pool_bias
from ebseg_lite.shapes import check_shape


def t(x):
    return torch.tensor(x, dtype=torch.float32)


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
