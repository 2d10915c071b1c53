"""Tests of deform attn (pure stage functions) against small cases worked out by hand.

Expected numbers are written out in the tests (tiny tensors, Python arithmetic), never obtained by
calling the function under test another way. The CLIP-block tests use the random-initialised
``tiny`` preset, built once per module.
"""
import math

import torch

from ebseg_lite.modeling.deform_attn import ms_deform_attn, sine_position_embedding
from ebseg_lite.shapes import check_shape


def t(x):
    return torch.tensor(x, dtype=torch.float32)


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
