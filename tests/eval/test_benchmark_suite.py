"""The benchmark suite on the tiny preset: every part present, ratios consistent with their runs,
the library encoders are the unmodified ones at EBSeg's sizes, the table lists the figures."""
import json

import torch
from segment_anything.modeling import ImageEncoderViT

from fixture_data import quiet_build
from ebseg_lite.eval import benchmark_suite as bs


def test_library_encoders_are_unmodified_at_ebseg_sizes():
    p = quiet_build("tiny", seed=0)
    visual, sam, clip_size = bs.library_encoders(p, 64)
    assert clip_size == 32 and visual.positional_embedding.shape[0] == 1 + (32 // visual.conv1.kernel_size[0]) ** 2
    assert type(sam) is ImageEncoderViT and not isinstance(sam.neck, torch.nn.Identity)   # neck kept
    assert visual(torch.randn(1, 3, clip_size, clip_size)).shape[-1] == p.model.embed_dim


def test_suite_parts_and_table(tmp_path, monkeypatch):
    monkeypatch.setenv("EBSEG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(bs, "build_model", lambda preset: quiet_build(preset, seed=0))
    res = bs.run_suite("tiny", 64, repeat=2, out=tmp_path / "s.json", text=False)
    enc = res["encode"]
    assert len(enc["runs"]) == 2
    for run in enc["runs"]:
        assert abs(run["ratio"] - run["encode"] / (run["lib_clip"] + run["lib_sam"])) < 1e-12
    assert enc["ratio"]["min"] <= enc["ratio"]["median"] <= enc["ratio"]["max"]
    assert {"stage_sam_encoder", "stage_pixel_decoder", "stage_clip_encoder"} <= set(enc)
    assert set(res["classify"]) >= {"classify_cached_full_labels", "classify_cached_mask_labels"}
    assert json.loads((tmp_path / "s.json").read_text())["preset"] == "tiny"
    text = bs.table(res)
    assert "encode.ratio" in text and "classify.classify_cached_mask_labels" in text
