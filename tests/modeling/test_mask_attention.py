"""The mask-attention head (section 3.3) against a computation by hand: with one head block, a
query whose bias opens one grid cell is CLIP's block applied to [CLS copy, that cell's token]."""
import dataclasses

import pytest
import torch

from ebseg_lite import build_model
from ebseg_lite.modeling.attn_bias import NEG
from ebseg_lite.modeling.clip_dense import clip_block, dense_clip_features, project_tokens
from ebseg_lite.modeling.mask_attention import clip_mask_attention


@pytest.fixture(scope="module")
def visual():
    return build_model("tiny", seed=0).model.clip.visual.eval()


@torch.no_grad()
def test_query_sees_itself_and_the_cells_its_bias_opens(visual):
    blocks = visual.transformer.resblocks
    depth, nh = len(blocks), blocks[0].attn.num_heads
    img = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    dense = dense_clip_features(visual, img, feature_blocks=(depth - 1,), surgery=False)
    h, w = dense.grid
    cells = [(2, 3), (5, 1)]
    pooled = torch.full((1, nh, len(cells), h, w), NEG)
    for q, (r, c) in enumerate(cells):
        pooled[:, :, q, r, c] = 0.0
    B, f_clip = clip_mask_attention(visual, dense, pooled, start_block=depth - 1, surgery=False)
    assert f_clip is None and B.shape == (1, len(cells), visual.proj.shape[1])
    cls, tokens = dense.tokens[:, :1], dense.tokens[:, 1:]
    for q, (r, c) in enumerate(cells):
        seq = torch.cat([cls, tokens[:, r * w + c][:, None]], dim=1)   # [query = CLS copy, its cell]
        want = project_tokens(visual, clip_block(blocks[depth - 1], seq)[:, :1])[:, 0]
        assert torch.allclose(B[:, q], want, atol=1e-5), q
    # the cell a query does not open does not move it; the cell it opens does
    moved = dense.tokens.clone()
    kick = 3 * torch.randn(moved.shape[-1], generator=torch.Generator().manual_seed(2))  # not a constant
    moved[:, 1 + 0] += kick                                 # cell (0, 0): closed for both queries
    again, _ = clip_mask_attention(visual, dataclasses.replace(dense, tokens=moved), pooled,
                                   start_block=depth - 1, surgery=False)
    assert torch.allclose(again, B, atol=1e-5)
    moved[:, 1 + 2 * w + 3] += kick                         # cell (2, 3): open for query 0 only
    again, _ = clip_mask_attention(visual, dataclasses.replace(dense, tokens=moved), pooled,
                                   start_block=depth - 1, surgery=False)
    assert not torch.allclose(again[:, 0], B[:, 0], atol=1e-3) and torch.allclose(again[:, 1], B[:, 1], atol=1e-5)


@torch.no_grad()
def test_surgery_stream_gives_fclip_on_the_grid(visual):
    depth = len(visual.transformer.resblocks)
    img = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    dense = dense_clip_features(visual, img, feature_blocks=(depth - 2,), surgery=True)
    h, w = dense.grid
    nh = visual.transformer.resblocks[0].attn.num_heads
    pooled = torch.zeros(1, nh, 3, h, w)
    B, f_clip = clip_mask_attention(visual, dense, pooled, start_block=depth - 2, surgery=True)
    B_plain, none = clip_mask_attention(visual, dense, pooled, start_block=depth - 2, surgery=False)
    assert none is None and torch.allclose(B, B_plain, atol=1e-5)   # the Surgery stream never changes B
    assert f_clip.shape == (1, visual.proj.shape[1], h, w)
    assert torch.allclose(f_clip.norm(dim=1), torch.ones(1, h, w), atol=1e-5)  # normalised per cell


def test_all_outputs_in_one_run_match_one_run_each_values_and_gradients(visual):
    # training's deep supervision: B of every decoder output from one shared sequence; a learned,
    # strongly varied bias (some cells far above the queries' self score) so a leak between the
    # stacked queries would show; gradients reach each output's bias as in its own run
    from ebseg_lite.modeling.mask_attention import clip_mask_attention_layers
    depth = len(visual.transformer.resblocks)
    nh = visual.transformer.resblocks[0].attn.num_heads
    img = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    dense = dense_clip_features(visual, img, feature_blocks=(depth - 2,), surgery=False)
    h, w = dense.grid
    g = torch.Generator().manual_seed(4)
    biases = [(8 * torch.randn(2, nh, n, h, w, generator=g)).requires_grad_() for n in (5, 5, 3)]
    stacked = clip_mask_attention_layers(visual, dense, biases, start_block=depth - 2)
    one_each = [clip_mask_attention(visual, dense, b, start_block=depth - 2, surgery=False)[0] for b in biases]
    assert [s.shape for s in stacked] == [o.shape for o in one_each] == [(2, n, visual.proj.shape[1]) for n in (5, 5, 3)]
    for s, o in zip(stacked, one_each):
        assert torch.allclose(s, o, atol=1e-6)
    weights = [torch.randn(s.shape, generator=g) for s in stacked]
    grads_stacked = torch.autograd.grad(sum((s * c).sum() for s, c in zip(stacked, weights)), biases)
    grads_each = torch.autograd.grad(sum((o * c).sum() for o, c in zip(one_each, weights)), biases)
    for a, b in zip(grads_stacked, grads_each):
        assert a.abs().max() > 0 and torch.allclose(a, b, atol=1e-6)
    # and the outputs differ from each other (a run that reused one output's bias would not)
    assert not torch.allclose(stacked[0], stacked[1], atol=1e-3)
