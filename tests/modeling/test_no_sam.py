"""The "w/o SAM" ablation (paper table 7): SAM does not run, its feature shapes are kept as zeros."""
import pytest
import torch

from ebseg_lite.modeling import sam_features
from fixture_data import quiet_build


def test_disabled_sam_gives_zeros_of_the_same_shapes_and_never_runs(monkeypatch):
    on = quiet_build("tiny")
    off = quiet_build("tiny", sam={"enabled": False})
    images = torch.randint(0, 256, (2, 3, 96, 128), dtype=torch.uint8)
    with torch.no_grad():
        ref = on.model.frozen_features(images)["sam"]
        monkeypatch.setattr(sam_features, "sam_multiscale_features",
                            lambda *a, **k: (_ for _ in ()).throw(AssertionError("SAM ran")))
        got = off.model.frozen_features(images)["sam"]
    assert got.keys() == ref.keys()
    for name in ref:
        assert got[name].shape == ref[name].shape, name
        assert not got[name].any(), name
    # eq. 1 with zero SAM terms: fused res3..res5 are the CLIP terms alone, res2 stays empty
    with torch.no_grad():
        fused = off.model.forward_features(images)["fused"]
    assert not fused["res2"].any() and fused["res3"].abs().sum() > 0


@pytest.mark.parametrize("scales", [(4.0, 2.0, 1.0, 0.5), (2.0, 1.0, 0.5, 0.25)])
def test_zero_features_match_the_real_shapes_for_both_scale_sets(scales):
    enc = sam_features.build_sam_encoder(quiet_build("tiny").cfg.sam)
    image = torch.zeros(1, 3, 64, 96)
    real = sam_features.sam_multiscale_features(enc, image, global_attn_indexes=(1, 3, 5, 7), scales=scales)
    zero = sam_features.zero_features(image, embed_dim=64, patch_size=16, scales=scales)
    assert {k: v.shape for k, v in zero.items()} == {k: v.shape for k, v in real.items()}
