"""The pixel decoder: which input reaches which output (the FPN adds res2 to mask features only)."""
import pytest
import torch

from ebseg_lite.config import get_preset
from ebseg_lite.modeling.pixel_decoder import PixelDecoder
from ebseg_lite.modeling.sam_features import resize_level


@pytest.fixture(scope="module")
def decoder():
    torch.manual_seed(0)
    cfg = get_preset("tiny").decoder
    return PixelDecoder(16, cfg).eval(), cfg


def feats(seed=0, b=1, e=16, size=64):
    g = torch.Generator().manual_seed(seed)
    return {f"res{i}": torch.randn(b, e, size >> i, size >> i, generator=g) for i in (2, 3, 4, 5)}


@torch.no_grad()
def test_shapes_strides_and_order_coarse_to_fine(decoder):
    dec, cfg = decoder
    mask_features, memories = dec(feats())
    assert mask_features.shape == (1, cfg.mask_dim, 16, 16)       # stride 4 of a 64 px input
    assert [tuple(m.shape[-2:]) for m in memories] == [(2, 2), (4, 4), (8, 8)]  # res5, res4, res3
    assert all(m.shape[:2] == (1, cfg.conv_dim) for m in memories)


@torch.no_grad()
def test_res2_reaches_mask_features_only(decoder):
    dec, _ = decoder
    base = feats()
    mf, mem = dec(base)
    changed = dict(base, res2=base["res2"] + 1.0)
    mf2, mem2 = dec(changed)
    assert all(torch.equal(a, b) for a, b in zip(mem, mem2))      # the encoder never sees res2
    assert not torch.allclose(mf, mf2)                             # the FPN step does
    coarse = dict(base, res5=base["res5"] + 1.0)
    mf3, mem3 = dec(coarse)
    assert not any(torch.allclose(a, b) for a, b in zip(mem, mem3))  # deformable attention mixes levels
    assert not torch.allclose(mf, mf3)


@torch.no_grad()
def test_images_of_a_batch_stay_apart(decoder):
    dec, _ = decoder
    a, b = feats(0), feats(1)
    both = {k: torch.cat([a[k], b[k]]) for k in a}
    mf, mem = dec(both)
    mf_a, mem_a = dec(a)
    assert torch.allclose(mf[:1], mf_a, atol=1e-5)
    assert all(torch.allclose(x[:1], y, atol=1e-5) for x, y in zip(mem, mem_a))


@torch.no_grad()
def test_res2_at_its_block_stride_conv_before_resizing_gives_the_official_map(decoder):
    # the lateral's 1x1 conv and bilinear resizing commute (both linear, resize weights sum to one);
    # its GroupNorm does not (spatial statistics), so it must run after the resizing
    dec, _ = decoder
    base = feats(3)
    low = torch.randn(1, 16, 4, 4, generator=torch.Generator().manual_seed(4))   # res2 at stride 16
    official, mem = dec(dict(base, res2=resize_level(low, 4.0)))
    deferred, mem2 = dec(dict(base, res2=low), res2_scale=4.0)
    assert all(torch.equal(a, b) for a, b in zip(mem, mem2))
    assert deferred.shape == official.shape and torch.allclose(deferred, official, atol=1e-5)
    whole_first = resize_level(dec.lateral(low), 4.0)                       # GroupNorm before the resize: wrong
    assert (whole_first - dec.lateral(resize_level(low, 4.0))).abs().max() > 1e-3
    assert torch.allclose(dec.lateral_res2(low, 4.0), dec.lateral(resize_level(low, 4.0)), atol=1e-5)
