"""Each dense-CLIP variant's last-block arithmetic against hand computations and open_clip itself."""
import math

import open_clip
import pytest
import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock

from ebseg_lite.baselines.dense_clip import (attention_weights, block_qkv, dense_features, feature_surgery,
                                             last_block, neighbourhood_bias, patch_logits, surgery_start)
from ebseg_lite.modeling.clip_dense import dense_clip_features, project_tokens

# One head of width 1, three tokens: every score is a product of two numbers, checked with math.exp.
Q = torch.tensor([1.0, 0.0, 2.0]).view(1, 1, 3, 1)
K = torch.tensor([0.5, -1.0, 1.0]).view(1, 1, 3, 1)
V = torch.tensor([3.0, 1.0, -2.0]).view(1, 1, 3, 1)


def softmax_row(scores):
    e = [math.exp(s) for s in scores]
    return [x / sum(e) for x in e]


def hand(a, b):
    """softmax_j(a_i * b_j) for 3 scalar tokens (dh = 1, so the scale dh^-0.5 is 1)."""
    return torch.tensor([softmax_row([ai * bj for bj in b]) for ai in a])


def test_attention_kinds_match_hand_computation():
    q, k, v = Q.flatten().tolist(), K.flatten().tolist(), V.flatten().tolist()
    got = lambda kind: attention_weights(kind, Q, K, V)[0, 0]
    torch.testing.assert_close(got("qk"), hand(q, k))
    torch.testing.assert_close(got("qq"), hand(q, q))
    torch.testing.assert_close(got("vv"), hand(v, v))
    torch.testing.assert_close(got("qq+kk"), hand(q, q) + hand(k, k))  # SCLIP adds, rows sum to 2
    torch.testing.assert_close(got("identity"), torch.eye(3))
    # first row of q q^T by hand: scores (1, 0, 2) -> e^1, e^0, e^2 normalised
    e = [math.e, 1.0, math.e ** 2]
    torch.testing.assert_close(got("qq")[0], torch.tensor([x / sum(e) for x in e]))


def test_scale_is_head_width_to_minus_half():
    q = torch.tensor([[1.0, 1.0], [0.0, 0.0]]).view(1, 1, 2, 2)  # dh = 2: q0.q0 = 2, scaled 2 / sqrt(2)
    w = attention_weights("qq", q, q, q)[0, 0, 0]
    s = 2 / math.sqrt(2)
    torch.testing.assert_close(w, torch.tensor([math.exp(s), 1.0]) / (math.exp(s) + 1.0))


def test_neighbourhood_bias_values_and_cls_row():
    g = neighbourhood_bias((2, 2), sigma=1.0)  # tokens: CLS, (0,0), (0,1), (1,0), (1,1)
    assert g.shape == (5, 5)
    assert torch.all(g[0] == 0) and torch.all(g[:, 0] == 0)
    assert g[1, 1].item() == pytest.approx(1.0)
    assert g[1, 2].item() == pytest.approx(math.exp(-0.5))   # one step: exp(-1 / 2)
    assert g[1, 4].item() == pytest.approx(math.exp(-1.0))   # diagonal: exp(-2 / 2)


def test_neighbourhood_bias_equals_naclip_convolution_form():
    """NACLIP builds G by convolving a delta at every patch with a (2h-1) x (2w-1) Gaussian window."""
    h, w, sigma = 3, 4, 5.0
    c = 1 / (sigma * math.sqrt(2))
    ky = torch.linspace(-(h - 1) * c, (h - 1) * c, 2 * h - 1)
    kx = torch.linspace(-(w - 1) * c, (w - 1) * c, 2 * w - 1)
    window = torch.exp(-(ky[:, None] ** 2 + kx[None, :] ** 2))
    deltas = torch.eye(h * w).view(h * w, 1, h, w)
    ref = F.conv2d(deltas, window[None, None], padding="same").view(h * w, h * w)
    torch.testing.assert_close(neighbourhood_bias((h, w), sigma, cls_token=False), ref, atol=1e-6, rtol=1e-5)


def test_naclip_weights_add_gaussian_before_softmax():
    k = torch.tensor([0.3, -0.2, 0.5, 1.0, 0.0]).view(1, 1, 5, 1)  # CLS + a 2 x 2 grid
    g = neighbourhood_bias((2, 2), sigma=5.0)
    want = torch.stack([torch.tensor(softmax_row([k[0, 0, i, 0].item() * k[0, 0, j, 0].item() + g[i, j].item()
                                                  for j in range(5)])) for i in range(5)])
    torch.testing.assert_close(attention_weights("kk+gauss", k, k, k, grid=(2, 2))[0, 0], want)
    with pytest.raises(ValueError, match="grid"):
        attention_weights("kk+gauss", k, k, k)


@pytest.fixture(scope="module")
def block():
    torch.manual_seed(0)
    blk = ResidualAttentionBlock(d_model=8, n_head=2, mlp_ratio=2.0, batch_first=True).eval()
    return blk, torch.randn(2, 5, 8)


def test_clip_last_block_is_open_clips_block(block):
    blk, x = block
    y, _ = last_block(blk, x, "clip", grid=(2, 2))
    torch.testing.assert_close(y, blk(x), atol=1e-5, rtol=1e-5)


def test_variant_blocks_by_hand(block):
    blk, x = block
    W = 8
    h = F.layer_norm(x, (W,), blk.ln_1.weight, blk.ln_1.bias, blk.ln_1.eps)
    wq, wk, wv = blk.attn.in_proj_weight.split(W)
    bq, bk, bv = blk.attn.in_proj_bias.split(W)
    q, k, v = h @ wq.t() + bq, h @ wk.t() + bk, h @ wv.t() + bv  # (B, T, W)
    out = lambda a: a @ blk.attn.out_proj.weight.t() + blk.attn.out_proj.bias
    ffn = lambda y: y + blk.mlp(F.layer_norm(y, (W,), blk.ln_2.weight, blk.ln_2.bias, blk.ln_2.eps))

    def per_head(fn):  # 2 heads of width 4, computed one at a time
        return torch.cat([fn(q[..., i:i + 4], k[..., i:i + 4], v[..., i:i + 4]) for i in (0, 4)], dim=-1)

    sm = lambda a, b: (a @ b.transpose(1, 2) / 2.0).softmax(-1)  # scale 4^-0.5
    want = {
        "maskclip": ffn(x + out(v)),
        "sclip": ffn(x + out(per_head(lambda q, k, v: (sm(q, q) + sm(k, k)) @ v))),
        "clearclip": out(per_head(lambda q, k, v: sm(q, q) @ v)),
        "naclip": out(per_head(lambda q, k, v: ((k @ k.transpose(1, 2) / 2.0 + neighbourhood_bias((2, 2), 5.0))
                                                 .softmax(-1)) @ v)),
    }
    for method, expected in want.items():
        got, weights = last_block(blk, x, method, grid=(2, 2))
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5, msg=method)
        assert weights.shape == (2, 2, 5, 5)
    qh, kh, vh = block_qkv(blk, x)
    torch.testing.assert_close(qh[:, 1], q[..., 4:])


def test_feature_surgery_by_hand():
    cos = torch.tensor([0.2, 0.5]).view(1, 2, 1, 1)
    cls = torch.tensor([[0.1, 0.4]])
    p = softmax_row([0.2, 0.8])  # softmax(2 * cls)
    w = [pi / (sum(p) / 2) for pi in p]
    a, b = w[0] * 0.2, w[1] * 0.5
    got = feature_surgery(cos, cls).flatten()
    torch.testing.assert_close(got, torch.tensor([a - (a + b) / 2, b - (a + b) / 2]))


@pytest.fixture(scope="module")
def tiny_clip():
    torch.manual_seed(0)
    cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 16, "layers": 4, "head_width": 8},
           "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}}
    return open_clip.CLIP(**cfg).eval(), torch.randn(2, 3, 32, 48)


def test_dense_clip_cls_is_open_clips_image_embedding(tiny_clip):
    model, img = tiny_clip
    out = dense_features(model.visual, img[..., :32], "clip")
    torch.testing.assert_close(out.cls, model.encode_image(img[..., :32], normalize=True), atol=1e-5, rtol=1e-5)
    assert out.patches.shape == (2, 16, 4, 4) and out.grid == (4, 4)
    torch.testing.assert_close(out.patches.norm(dim=1), torch.ones(2, 4, 4))


def test_surgery_uses_the_dual_stream_and_original_cls(tiny_clip):
    model, img = tiny_clip
    out = dense_features(model.visual, img, "surgery")  # a 4 x 6 grid
    assert surgery_start(4) == 2 and surgery_start(12) == 6 and surgery_start(24) == 18
    ref = dense_clip_features(model.visual, img, feature_blocks=(4,), surgery=True, surgery_start=2)
    torch.testing.assert_close(out.cls, project_tokens(model.visual, ref.tokens[:, 0]), atol=1e-5, rtol=1e-5)
    surg = project_tokens(model.visual, ref.surgery[:, 1:]).transpose(1, 2).reshape(2, 16, 4, 6)
    torch.testing.assert_close(out.patches, surg, atol=1e-5, rtol=1e-5)
    text = F.normalize(torch.randn(3, 16), dim=-1)
    cos = torch.einsum("bchw,kc->bkhw", surg, text)
    torch.testing.assert_close(patch_logits(out, text, "surgery"), feature_surgery(cos, out.cls @ text.t()))
    torch.testing.assert_close(patch_logits(out, text, "clearclip"), cos)  # other methods: plain cosines
    with pytest.raises(ValueError, match="unknown dense-CLIP method"):
        dense_features(model.visual, img, "gem")


def test_methods_differ_only_in_the_last_block(tiny_clip):
    model, img = tiny_clip
    outs = {m: dense_features(model.visual, img, m).patches for m in ("clip", "maskclip", "sclip", "naclip", "clearclip")}
    for a in outs:
        for b in outs:
            if a < b:
                assert not torch.allclose(outs[a], outs[b], atol=1e-4), (a, b)
