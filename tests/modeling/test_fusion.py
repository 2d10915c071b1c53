"""Feature fusion (eq. 1) on a hand-computed case: ``F_i = F_sam_i + Up(Conv1x1(LN(F_clip_i)))``."""
import math

import pytest
import torch

from ebseg_lite.modeling.fusion import FUSED, FeatureFusion, addend_rms


def set_layer(layer, weight, bias):
    """LayerNorm2d at identity affine, 1x1 conv with the given (E, W) weight and (E,) bias."""
    ln, conv = layer[0], layer[1]
    with torch.no_grad():
        ln.weight.fill_(1.0), ln.bias.zero_()
        conv.weight.copy_(torch.tensor(weight, dtype=torch.float32)[:, :, None, None])
        conv.bias.copy_(torch.tensor(bias, dtype=torch.float32))


def test_fusion_by_hand_one_level_at_a_time():
    fusion = FeatureFusion(clip_width=2, sam_width=1)
    for i, layer in enumerate(fusion.layers):
        set_layer(layer, [[1.0, 2.0]], [0.5 * (i + 1)])
    # a CLIP token [3, 1]: LN over channels -> [1, -1] / sqrt(1 + 1e-6); conv -> 1 - 2 + bias
    ln = 1 / math.sqrt(1 + 1e-6)
    clip = [torch.tensor([3.0, 1.0]).view(1, 2, 1, 1)] * 3
    sam = {"res2": torch.full((1, 1, 8, 8), 7.0), "res3": torch.ones(1, 1, 4, 4),
           "res4": torch.ones(1, 1, 2, 2), "res5": torch.ones(1, 1, 1, 1)}
    out = fusion(sam, clip)
    for i, name in enumerate(FUSED):
        want = 1.0 + (ln - 2 * ln + 0.5 * (i + 1))      # upsampling a 1x1 map keeps the value
        assert out[name].shape == sam[name].shape
        assert torch.allclose(out[name], torch.full_like(sam[name], want), atol=1e-6), name
    assert out["res2"] is sam["res2"]                     # res2 gets no CLIP feature
    assert torch.equal(sam["res3"], torch.ones(1, 1, 4, 4))  # the input dict is not modified


def test_fusion_upsamples_bilinearly_to_the_sam_level():
    fusion = FeatureFusion(clip_width=2, sam_width=1)
    for layer in fusion.layers:
        set_layer(layer, [[1.0, 0.0]], [0.0])
    # a 1x2 CLIP grid whose normalised first channel is +1 then -1, brought to a 1x4 SAM level
    clip = torch.tensor([[[[3.0, 1.0]], [[1.0, 3.0]]]])   # (1, W=2, 1, 2)
    sam = {"res2": torch.zeros(1, 1, 1, 8), "res3": torch.zeros(1, 1, 1, 4),
           "res4": torch.zeros(1, 1, 1, 2), "res5": torch.zeros(1, 1, 1, 2)}
    out = fusion(sam, [clip, clip, clip])
    ln = 1 / math.sqrt(1 + 1e-6)
    # align_corners=False: output x = 0..3 samples input at (x + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25
    want = torch.tensor([1.0, 0.5, -0.5, -1.0]) * ln
    assert torch.allclose(out["res3"].flatten(), want, atol=1e-6)
    assert torch.allclose(out["res5"].flatten(), torch.tensor([1.0, -1.0]) * ln, atol=1e-6)


def test_sam_scale_multiplies_every_sam_level_and_not_the_clip_term():
    """``F_i = s * F_sam_i + Up(Conv1x1(LN(F_clip_i)))``; res2 becomes ``s * F_sam_2``."""
    plain, scaled = FeatureFusion(clip_width=2, sam_width=1), FeatureFusion(clip_width=2, sam_width=1, sam_scale=0.25)
    for a, b in zip(plain.layers, scaled.layers):
        set_layer(a, [[1.0, 2.0]], [0.5]), set_layer(b, [[1.0, 2.0]], [0.5])
    g = torch.Generator().manual_seed(0)
    clip = [torch.randn(1, 2, 2, 2, generator=g) for _ in range(3)]
    sam = {"res2": torch.randn(1, 1, 8, 8, generator=g), "res3": torch.randn(1, 1, 4, 4, generator=g),
           "res4": torch.randn(1, 1, 2, 2, generator=g), "res5": torch.randn(1, 1, 1, 1, generator=g)}
    quarter = {k: v * 0.25 for k, v in sam.items()}
    got, want = scaled(sam, clip), plain(quarter, clip)
    for k in sam:
        assert torch.allclose(got[k], want[k], atol=1e-6), k
    assert not torch.allclose(got["res3"], plain(sam, clip)["res3"])  # the scale is not a no-op
    assert torch.equal(sam["res2"], quarter["res2"] * 4)              # the inputs are left alone


def test_addend_rms_measures_each_term_of_eq_1():
    fusion = FeatureFusion(clip_width=2, sam_width=1, sam_scale=0.5)
    for layer in fusion.layers:
        set_layer(layer, [[1.0, 0.0]], [0.0])
    # CLIP tokens [3, 1] and [1, 3]: LN'd first channel +1 and -1 (x 1/sqrt(1 + 1e-6)), so RMS 1
    clip = torch.tensor([[[[3.0, 1.0]], [[1.0, 3.0]]]])
    sam = {"res2": torch.zeros(1, 1, 1, 4), "res3": torch.tensor([[[[3.0, -3.0, 3.0, -3.0]]]]),
           "res4": torch.full((1, 1, 1, 2), 4.0), "res5": torch.full((1, 1, 1, 2), -2.0)}
    rms = addend_rms(fusion, sam, [clip] * 3)
    assert list(rms) == list(FUSED)
    assert [round(rms[k]["sam"], 6) for k in FUSED] == [1.5, 2.0, 1.0]   # with the fusion's scale 0.5
    for k in FUSED:
        assert math.isclose(rms[k]["clip"], 1 / math.sqrt(1 + 1e-6), rel_tol=1e-6)


def test_sam_scale_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        FeatureFusion(clip_width=2, sam_width=1, sam_scale=0.0)
