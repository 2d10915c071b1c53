"""SAM blocks through fused SDPA (relative-position bias as an additive mask) equal
segment-anything's own Block, windowed (with padding) and global, and the whole multi-scale pass."""
from functools import partial

import torch
from torch import nn
from segment_anything.modeling import ImageEncoderViT

from ebseg_lite.modeling.sam_features import sam_block, sam_multiscale_features


def _encoder(seed=0):
    torch.manual_seed(seed)
    enc = ImageEncoderViT(img_size=128, patch_size=16, embed_dim=32, depth=4, num_heads=2, mlp_ratio=4.0,
                          out_chans=16, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6),
                          use_abs_pos=True, use_rel_pos=True, window_size=3, global_attn_indexes=(1, 3))
    for blk in enc.blocks:  # the library zero-initialises them: random tables make the bias matter
        nn.init.normal_(blk.attn.rel_pos_h, std=0.5)
        nn.init.normal_(blk.attn.rel_pos_w, std=0.5)
    return enc.eval()


@torch.no_grad()
def test_block_equals_library_windowed_with_padding_and_global():
    enc = _encoder()
    x = torch.randn(2, 5, 7, 32)   # 5x7 grid: padded to 6x9 for 3x3 windows; global tables resized 15 -> 9, 13
    for i in (0, 1):               # block 0 windowed, block 1 global
        ref, ours = enc.blocks[i](x), sam_block(enc.blocks[i], x)
        assert ours.shape == ref.shape == (2, 5, 7, 32)
        assert torch.allclose(ours, ref, atol=1e-5), i
    # the bias is really used: without the relative tables the output differs
    blk = enc.blocks[1]
    blk.attn.use_rel_pos = False
    assert (sam_block(blk, x) - enc.blocks[1].__class__.forward(blk, x)).abs().max() < 1e-5
    blk.attn.use_rel_pos = True
    assert (sam_block(blk, x) - ref).abs().max() < 1e-5
    blk.attn.use_rel_pos = False
    assert (sam_block(blk, x) - ref).abs().max() > 1e-3
    blk.attn.use_rel_pos = True


@torch.no_grad()
def test_multiscale_features_fast_equals_library_blocks():
    enc = _encoder(1)
    img = torch.randn(1, 3, 96, 64)
    fast = sam_multiscale_features(enc, img, global_attn_indexes=(1, 3))
    ref = sam_multiscale_features(enc, img, global_attn_indexes=(1, 3), fast=False)
    assert [tuple(v.shape) for v in fast.values()] == [(1, 32, 24, 16), (1, 32, 12, 8)]  # two global blocks
    for k in ref:
        assert torch.allclose(fast[k], ref[k], atol=1e-5), k
        # laid out as the library path lays them out (NCHW): the in-place blocks keep a (B, h, w, E) layout,
        # and a convolution reading the features rounds by layout (toy training reproduces only so)
        assert fast[k].is_contiguous() and fast[k].stride() == ref[k].stride(), k


def test_gradient_checkpointing_gives_the_same_gradient_to_the_positional_embedding():
    grads = []
    for ckpt in (False, True):
        enc = _encoder(2)
        enc.pos_embed.requires_grad_(True)
        out = sam_multiscale_features(enc, torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)),
                                      global_attn_indexes=(1, 3), checkpoint=ckpt)
        sum((v * torch.linspace(-1, 1, v.numel()).view_as(v)).sum() for v in out.values()).backward()
        grads.append(enc.pos_embed.grad.clone())
    assert grads[0].abs().max() > 0 and torch.allclose(grads[0], grads[1], atol=1e-6)


def test_rel_pos_sdpa_chunks_of_query_rows_equal_one_whole_bias_values_and_gradients():
    from ebseg_lite.modeling.sam_features import rel_pos_sdpa
    g = torch.Generator().manual_seed(3)
    b, nh, h, w, dh = 2, 3, 5, 7, 4
    q, k, v = (torch.randn(b, nh, h * w, dh, generator=g, requires_grad=True) for _ in range(3))
    rel_h = torch.randn(b, nh, h * w, h, generator=g, requires_grad=True)
    rel_w = torch.randn(b, nh, h * w, w, generator=g, requires_grad=True)
    bias = (rel_h[..., :, None] + rel_w[..., None, :]).flatten(-2)          # the whole (h*w) x (h*w) bias
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    seed = torch.randn(ref.shape, generator=g)
    ref_grads = torch.autograd.grad((ref * seed).sum(), (q, k, v, rel_h, rel_w))
    for chunk in (b * nh * h * w * 4, b * nh * h * w * 11, 10 ** 9):     # 4 and 11 rows (35 = 8 x 4 + 3), one chunk
        out = rel_pos_sdpa(q, k, v, rel_h, rel_w, chunk=chunk)
        assert torch.allclose(out, ref, atol=1e-6), chunk
        grads = torch.autograd.grad((out * seed).sum(), (q, k, v, rel_h, rel_w))
        assert all(torch.allclose(a, r, atol=1e-5) for a, r in zip(grads, ref_grads)), chunk
    # the bias matters: without it the output differs
    assert (torch.nn.functional.scaled_dot_product_attention(q, k, v) - ref).abs().max() > 1e-2


@torch.no_grad()
def test_block_in_place_path_leaves_its_input_alone_and_promotes_mixed_dtypes():
    enc = _encoder(4)
    x = torch.randn(1, 5, 7, 32)
    keep = x.clone()
    for blk in enc.blocks:
        out = sam_block(blk, x)
        assert torch.equal(x, keep)                                   # a kept feature level is never written
        assert torch.allclose(out, blk(x), atol=1e-5)
    # a lower-precision attention output (as under autocast) must not round the float32 residual stream
    blk = enc.blocks[0]
    orig = blk.attn.proj.forward
    blk.attn.proj.forward = lambda t: orig(t).to(torch.bfloat16)
    try:
        assert sam_block(blk, x).dtype == torch.float32
    finally:
        blk.attn.proj.forward = orig
