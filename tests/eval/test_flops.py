"""FLOP counts: the library CLIP's count is the ViT formula (so the fused attention paths are seen),
the stages of ``encode`` add up to its total, GFLOP/s divides the right figures, and the README
section carries the count ratio beside the time ratio."""
import pytest
import torch

from fixture_data import quiet_build
from ebseg_lite.eval import benchmark_suite as bs
from ebseg_lite.eval.flops import _gflop, flop_counts, gflop_per_second


def vit_gflop(tokens: int, width: int, layers: int, patch: int, out_dim: int) -> float:
    """Patch embedding + per block (qkv 6ND^2, out 2ND^2, MLP 16ND^2, attention 4N^2D) + pooled projection."""
    n, d = tokens, width
    patches = (n - 1) * d * 3 * patch * patch * 2
    return (patches + layers * (24 * n * d * d + 4 * n * n * d) + 2 * d * out_dim) / 1e9


def test_fused_cpu_attention_is_counted():
    q, k, v = torch.randn(2, 4, 50, 16), torch.randn(2, 4, 30, 16), torch.randn(2, 4, 30, 8)
    got = _gflop(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v)) * 1e9
    assert got == 2 * 2 * 4 * 50 * 30 * (16 + 8)


def test_library_clip_is_the_vit_formula_and_stages_add_up():
    p = quiet_build("tiny", seed=0)
    visual, sam, clip_size = bs.library_encoders(p, 64)
    fast = torch.backends.mha.get_fastpath_enabled()
    c = flop_counts(p.model, visual, sam, clip_size, 64)
    assert torch.backends.mha.get_fastpath_enabled() == fast           # restored
    patch = visual.conv1.kernel_size[0]
    tokens = 1 + (clip_size // patch) ** 2
    expected = vit_gflop(tokens, visual.transformer.width, len(visual.transformer.resblocks), patch, visual.proj.shape[1])
    assert c["lib_clip"] == pytest.approx(expected, rel=1e-12)
    stages = {k: v for k, v in c.items() if k.startswith("stage_")}
    assert sum(stages.values()) == pytest.approx(c["encode"], rel=1e-9)
    for k in ("stage_clip_encoder", "stage_sam_encoder", "stage_pixel_decoder", "stage_transformer_decoder",
              "stage_mask_attention_head"):
        assert stages[k] > 0, k
    assert c["ratio"] == pytest.approx(c["encode"] / (c["lib_clip"] + c["lib_sam"]))


def test_counting_leaves_parameters_trainable():
    p = quiet_build("tiny", seed=0)
    visual, sam, clip_size = bs.library_encoders(p, 64)
    before = [q.requires_grad for q in p.model.parameters()]
    flop_counts(p.model, visual, sam, clip_size, 64)
    assert [q.requires_grad for q in p.model.parameters()] == before and any(before)


def test_gflop_per_second_divides_matching_figures():
    counts = {"lib_clip": 80.0, "encode": 600.0, "stage_fusion": 1.0, "ratio": 1.5}
    secs = {"lib_clip": {"median": 0.8, "min": 0.7, "max": 0.9}, "encode": 6.0, "stage_fusion": 0.0}
    assert gflop_per_second(counts, secs) == {"lib_clip": 100.0, "encode": 100.0}


def test_markdown_reads_the_time_ratio_against_the_count_ratio():
    sp = lambda m: {"median": m, "min": m, "max": m}
    res = {"preset": "vit_b", "size": 640, "threads": 2, "repeat": 1,
           "encode": {"lib_clip": sp(0.5), "lib_sam": sp(3.5), "encode": sp(6.4), "ratio": sp(1.6),
                      "ratio_cpu": sp(1.6), "stage_sam_encoder": sp(3.2)},
           "flops": {"lib_clip": 50.0, "lib_sam": 350.0, "encode": 600.0, "stage_sam_encoder": 320.0, "ratio": 1.5},
           "classify": {"classify_new_vocabulary_labels": 1.0, "classify_cached_full_labels": sp(0.1),
                        "classify_cached_mask_labels": sp(0.02), "dense_full_labels_reference": sp(1.0),
                        "dense_mask_labels_reference": sp(0.1), "labels_equal_reference": True, "num_classes": 150}}
    md = bs.markdown(res, "cmd")
    assert "| stage_sam_encoder | 320.0 | 100 |" in md and "| encode | 600.0 | 94 |" in md
    assert "FLOP ratio encode / the two library encoders: **1.50**; the time ratio above is 1.07x it" in md
    assert "the libraries at 100 GFLOP/s" in md
