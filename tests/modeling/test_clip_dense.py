"""Tests of clip dense (pure stage functions) against small cases worked out by hand.

Expected numbers are written out in the tests (tiny tensors, Python arithmetic), never obtained by
calling the function under test another way. The CLIP-block tests use the random-initialised
``tiny`` preset, built once per module.
"""
import math

import pytest
import torch

from ebseg_lite import build_model
from ebseg_lite.modeling.clip_dense import attention, clip_block, dual_block, resize_pos_embed
from ebseg_lite.shapes import check_shape


def t(x):
    return torch.tensor(x, dtype=torch.float32)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("tiny").model.eval()


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
