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
    assert "encode.ratio" in text and "classify.classify_cached_mask_labels" in text and "gflop.ratio" in text
    assert res["flops"]["encode"] > res["flops"]["stage_sam_encoder"] > 0


def _spread(m, lo, hi):
    return {"median": m, "min": lo, "max": hi}


def test_markdown_section_carries_each_figure_and_its_command():
    res = {"preset": "vit_b", "size": 640, "threads": 2, "repeat": 3,
           "encode": {"lib_clip": _spread(0.5, 0.4, 0.6), "lib_sam": _spread(4.0, 3.9, 4.2),
                      "encode": _spread(7.2, 7.0, 7.9), "ratio": _spread(1.6, 1.55, 1.7),
                      "ratio_cpu": _spread(1.5, 1.4, 1.6), "stage_pixel_decoder": _spread(2.5, 2.4, 2.6),
                      "runs": [], "peak_rss_gb": 3.25},
           "classify": {"classify_new_vocabulary_labels": 12.5, "classify_cached_full_labels": _spread(0.1234, 0.1, 0.2),
                        "classify_cached_mask_labels": _spread(0.0215, 0.02, 0.03),
                        "dense_full_labels_reference": _spread(1.5, 1.4, 1.6),
                        "dense_mask_labels_reference": _spread(0.05, 0.04, 0.06), "labels_equal_reference": True,
                        "num_classes": 150, "peak_rss_gb": 3.5},
           "text": {"ade20k_150": {"names": 150, "cold_seconds": 8.25, "warm_new_process": {"seconds": 0.4}},
                    "peak_rss_gb": 3.6}}
    md = bs.markdown(res, "ebseg-lite benchmark --suite --preset vit_b")
    assert "`ebseg-lite benchmark --suite --preset vit_b`" in md and "peak resident 3.6 GB" in md
    assert "**1.60 (1.55-1.70)**" in md                     # the ratio, median (min-max)
    assert "| stage `pixel_decoder` | 2.50 (2.40-2.60) |" in md
    assert "| full-resolution `labels` | 123 (100-200) |" in md     # seconds -> ms
    assert "| mask-resolution `mask_labels` (the explorer's re-classification) | 22 (20-30) |" in md
    assert "| ade20k_150 (150 names) | 8.2 | 0.40 |" in md
    assert "Labels equal the dense reference: True." in md


def test_new_vocabulary_figure_runs_the_text_tower_even_with_a_warm_disk_cache(tmp_path, monkeypatch):
    import ebseg_lite.inference.predictor as pred_mod
    monkeypatch.setenv("EBSEG_CACHE_DIR", str(tmp_path / "cache"))
    p = quiet_build("tiny", seed=0)
    p.text_embeddings([f"class {i}" for i in range(3)])     # now on disk and in memory
    calls = []
    real = pred_mod.encode_class_names
    monkeypatch.setattr(pred_mod, "encode_class_names", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    bs.classify_suite(p, 64, num_classes=3, repeat=1)
    assert len(calls) == 1                                  # the timed new-vocabulary call, and only it
    assert bs.os.environ["EBSEG_CACHE_DIR"] == str(tmp_path / "cache")   # restored


def test_toy_demo_is_timed_from_a_fresh_folder_with_one_thread_per_process(tmp_path, monkeypatch):
    """The demo reuses finished runs it finds: timing it in a used folder would time an evaluation only."""
    import os
    seen = []
    monkeypatch.setattr(bs, "build_model", lambda preset: quiet_build(preset, seed=0))
    monkeypatch.setattr(bs, "encode_vs_library", lambda *a, **k: {})
    monkeypatch.setattr(bs, "flop_counts", lambda *a, **k: {})
    monkeypatch.setattr(bs, "classify_suite", lambda *a, **k: {})
    monkeypatch.setattr(bs, "_timed", lambda cmd, shown: seen.append((cmd, os.environ.get("OMP_NUM_THREADS"),
                                                              os.path.isdir(cmd[-1]))) or {"seconds": 1.0})
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    bs.run_suite("tiny", 64, repeat=1, text=False, with_toy=True)
    (cmd, threads, existed), = seen
    assert cmd[-2] == "--out" and not existed and threads == "1"
    assert "OMP_NUM_THREADS" not in os.environ                     # restored
