"""The benchmark times the real forward_features: every stage seen, nothing changed, all restored."""
import torch

from ebseg_lite import build_model
from ebseg_lite.eval import benchmark
from ebseg_lite.modeling import clip_dense, ebseg, mask_attention, sam_features

STAGES = {"preprocess", "clip_encoder", "sam_encoder", "fusion", "pixel_decoder", "transformer_decoder",
          "attn_bias_pool", "mask_attention_head", "mask_pool_D"}


@torch.no_grad()
def test_stage_timer_sees_every_stage_and_changes_nothing():
    model = build_model("tiny", seed=0).model.eval()
    originals = [clip_dense.dense_clip_features, sam_features.sam_multiscale_features,
                 mask_attention.clip_mask_attention, ebseg.pool_bias, ebseg.mask_pool]
    img = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    plain = model.forward_features(img, inference=True)
    with benchmark.stage_timer(model) as times:
        timed = model.forward_features(img, inference=True)
        assert clip_dense.dense_clip_features is not originals[0]     # wrapped inside the block
    assert set(times) == STAGES
    for key in ("B", "D", "F_clip", "mask_features"):
        assert torch.equal(plain[key], timed[key]), key
    assert [clip_dense.dense_clip_features, sam_features.sam_multiscale_features, mask_attention.clip_mask_attention,
            ebseg.pool_bias, ebseg.mask_pool] == originals             # restored on exit
    assert "preprocess" not in model.__dict__ and not model.fusion._forward_hooks


def test_stage_times_adds_up_to_the_whole_call():
    res = benchmark.stage_times(build_model("tiny", seed=0), size=64, repeat=1)
    parts = sum(res[k] for k in STAGES) + res["other"]
    assert abs(parts - res["encode_total"]) < 1e-9
    assert res["own_encoder_stages"] == res["clip_encoder"] + res["sam_encoder"]
    assert res["ratio_to_own_encoder_stages"] == res["encode_total"] / res["own_encoder_stages"]
