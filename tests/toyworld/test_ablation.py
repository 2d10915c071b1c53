"""`toyworld ablate`: the toy versions of the paper's tables 2-7, and the ground-truth-mask probe."""
import json
import re

import pytest
import torch

from ebseg_lite.toyworld import ablation, experiments
from ebseg_lite.toyworld.ablation import TABLES, VARIANTS, harmonic, parse_tables, run_ablation
from ebseg_lite.toyworld.modes import MODES
from ebseg_lite.toyworld.probe import gt_attention_bias, masked_region_images

SMALL = experiments.ToyRun(steps=2, batch_size=2, train_scenes=4, test_scenes=6)  # benchmark scene 5 holds a new class


def test_tables_name_known_variants_and_modes():
    assert sorted(TABLES) == [2, 3, 4, 5, 6, 7]
    for n, (_, rows, paper) in TABLES.items():
        assert rows and all(v in VARIANTS and m in MODES for _, v, m in rows), n
        assert set(paper) <= {label for label, _, _ in rows}, n       # the paper's figure sits on a row
    assert VARIANTS["ssc"] == (True, {}) and VARIANTS["no_ssc"] == (False, {})  # the demo's own models


def test_parse_tables():
    assert parse_tables("all") == [2, 3, 4, 5, 6, 7]
    assert parse_tables("5,2,5") == [2, 5]
    for bad in ("8", "x", "", "1"):
        with pytest.raises(ValueError, match="--table"):
            parse_tables(bad)


def test_harmonic_mean_by_hand():
    assert harmonic(60.0, 40.0) == pytest.approx(48.0)
    assert harmonic(0.0, 40.0) == 0.0


def test_gt_attention_bias_and_region_images_by_hand():
    masks = torch.zeros(2, 8, 8)
    masks[0, :4, :4] = 1          # token (0, 0) of a 2 x 2 grid, wholly inside
    masks[1, :2, :] = 1           # half of tokens (0, 0) and (0, 1)
    bias = gt_attention_bias(masks, (2, 2), heads=3)
    assert bias.shape == (1, 3, 2, 2, 2)
    assert torch.allclose(bias[0, 1, 0], torch.tensor([[0.0, -9.2103], [-9.2103, -9.2103]]), atol=1e-3)
    assert torch.allclose(bias[0, 2, 1], torch.log(torch.tensor([[0.5, 0.5], [1e-4, 1e-4]])))
    image = torch.arange(3 * 8 * 8, dtype=torch.float32).reshape(3, 8, 8)
    mean = torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1)
    r = masked_region_images(image, masks, mean)
    assert torch.equal(r[0, :, :4, :4], image[:, :4, :4])
    assert torch.equal(r[0, :, 5, 5], mean.flatten()) and torch.equal(r[1, :, 7, 0], mean.flatten())


def test_ablation_rows_are_the_variants_measured_figures_and_runs_are_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("EBSEG_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "abl"
    res = run_ablation(out, tables=(6, 7), seeds=(0, 1), run=SMALL, workers=1, progress=False)
    saved = json.loads((out / "ablation.json").read_text())
    assert saved["tables"].keys() == {"6", "7"} and saved["seeds"] == [0, 1]
    assert set(saved["per_seed"]) == {"no_ssc", "ssc", "no_sam", "sam_trained"}
    for n in ("6", "7"):
        for row in saved["tables"][n]["rows"]:
            vals = torch.tensor([s[row["mode"]]["mIoU_new"] for s in saved["per_seed"][row["variant"]]], dtype=torch.float64)
            assert row["mIoU_new"]["mean"] == pytest.approx(float(vals.mean()))
            assert row["mIoU_new"]["std"] == pytest.approx(float(vals.std()))
            h = [harmonic(s[row["mode"]]["mIoU_seen"], s[row["mode"]]["mIoU_new"]) for s in saved["per_seed"][row["variant"]]]
            assert row["hmean"]["mean"] == pytest.approx(sum(h) / 2)
    text = (out / "table7.txt").read_text()
    assert "SAM trained" in text and "no SAM" in text
    assert (out / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # only the trained-SAM variant saves SAM's blocks; the no-SAM variant was built without SAM features
    from safetensors.torch import load_file
    keys = {v: load_file(str(out / "runs" / f"{v}_seed0" / "model.safetensors")).keys()
            for v in ("no_ssc", "sam_trained", "no_sam")}
    assert any(k.startswith("sam.blocks.") for k in keys["sam_trained"])
    assert not any(k.startswith("sam.blocks.") for k in keys["no_ssc"] | keys["no_sam"])
    cfg = json.loads((out / "runs" / "no_sam_seed0" / "config.json").read_text())
    assert cfg["model"]["sam"]["enabled"] is False and cfg["train"]["ssc_weight"] == 0.0
    # a second call keeps every finished run
    monkeypatch.setattr(experiments, "train_toy_model", lambda **kw: (_ for _ in ()).throw(AssertionError("retrained")))
    again = run_ablation(out, tables=(6,), seeds=(0, 1), run=SMALL, workers=1, progress=False)
    assert again["tables"]["6"]["rows"] == res["tables"]["6"]["rows"]
    # ... but not a run made with other settings
    other = experiments.toy_train_config(ssc=True, seed=0, run=experiments.ToyRun(steps=3), out_dir=out)
    assert not experiments.finished_run(out / "runs" / "ssc_seed0", other)
    same = experiments.toy_train_config(ssc=True, seed=0, run=SMALL, out_dir=out)
    assert experiments.finished_run(out / "runs" / "ssc_seed0", same)
    # ... nor one trained on other toy encoders (a re-pretrained CLIP keeps its file name)
    monkeypatch.setattr(experiments, "encoder_digest", lambda: {"toy_clip": "0" * 16, "toy_sam": "1" * 16})
    assert not experiments.finished_run(out / "runs" / "ssc_seed0", same)


def test_ablate_command_rejects_an_unknown_table(capsys):
    from ebseg_lite.cli.main import main
    with pytest.raises(SystemExit, match="--table"):
        main(["toyworld", "ablate", "--table", "9"])


def test_oracle_probe_reports_every_way_for_all_and_new(monkeypatch):
    from ebseg_lite.builder import build_model
    from ebseg_lite.toyworld.probe import oracle_probe
    r = oracle_probe(build_model("toy"), n_scenes=2, start_blocks=(3, 9))
    ways = {k.rsplit(": ", 1)[0] for k in r}
    assert ways == {"B, GT masks (head over blocks 7-12)", "B, GT masks (head over blocks 4-12)",
                    "B, GT masks (head over blocks 10-12)", "D, GT masks",
                    "CLIP on the region alone (rest mean grey)", "A of the best-overlapping query",
                    "B of the best-overlapping query", "D of the best-overlapping query"}
    from ebseg_lite.toyworld import ToyWorld
    w = ToyWorld()
    data = w.dataset(2, seed=98, split="test", size=128)
    labels = [int(c) for i in range(2) for c in data.scene(i).instance_labels]
    n_all, n_new = len(labels), sum(not w.seen[c] for c in labels)
    for k, v in r.items():  # accuracies over the GT instances: whole counts of them
        n = n_new if k.endswith(": new") else n_all
        assert abs(v * n / 100 - round(v * n / 100)) < 1e-6, (k, v)


def test_table3_text_lists_query_and_map_accuracy_per_mode():
    from ebseg_lite.toyworld.ablation import format_table
    st = lambda m: {"mean": m, "std": 0.5}
    keys = ("query_seen", "query_new", "map_seen", "map_new", "query_seen_names")
    res = {"seeds": [0, 1], "rows": [], "query_vs_map": {"A": {k: st(10.0 + i) for i, k in enumerate(keys)}}}
    line = next(l for l in format_table(3, res).splitlines() if l.strip().startswith("A "))
    assert line.split() == ["A", "query", "10.0", "+-", "0.5", "/", "11.0", "+-", "0.5", "map", "12.0", "+-", "0.5",
                            "/", "13.0", "+-", "0.5", "seen", "names", "only", "14.0", "+-", "0.5"]


def test_ablation_figure_draws_each_tables_means_and_stds():
    from ebseg_lite.toyworld.report import ablation_figure
    st = lambda m, s: {"mean": m, "std": s}
    rows = lambda *vals: [{"label": f"row {i}", "mIoU_seen": st(a, 1.0 + i), "mIoU_new": st(b, 0.5)}
                          for i, (a, b) in enumerate(vals)]
    result = {"tables": {"2": {"title": "components", "rows": rows((10, 5), (20, 8))},
                         "7": {"title": "SAM", "rows": rows((30, 12), (25, 9), (40, 1))}}}
    fig = ablation_figure(result)
    assert len(fig.axes) == 2 and fig.axes[1].get_title() == "table 7: SAM"
    heights = [[round(p.get_height(), 6) for p in ax.patches] for ax in fig.axes]
    assert heights == [[10, 20, 5, 8], [30, 25, 40, 12, 9, 1]]          # seen bars, then new bars
    from matplotlib.container import ErrorbarContainer
    err = [c for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer)][0].lines[2][0].get_segments()
    assert [round(seg[1][1] - seg[0][1], 6) for seg in err] == [2.0, 4.0]   # 2 x std of seen rows 0, 1
    assert len(ablation_figure(result, tables=[7]).axes) == 1


def test_head_placement_rows_say_where_their_variants_head_runs():
    """The mask-attention head runs from the block after the last feature block to the last block (12)."""
    import re
    from ebseg_lite.toyworld.presets import toy
    depth = toy().clip.custom_cfg["vision_cfg"]["layers"]
    labelled = [(label, v) for label, v, _ in TABLES[3][1] if "head over blocks" in label]
    assert {v for _, v in labelled} == {"ssc_head_late", "ssc_head_early"}
    for label, v in labelled:
        first, last = map(int, re.search(r"blocks (\d+)-(\d+)", label).groups())
        blocks = VARIANTS[v][1]["model_overrides"]["clip"]["feature_blocks"]
        assert (first, last) == (max(blocks) + 1, depth), label


def test_table3_text_lists_the_open_vocabulary_cost_and_error_kinds():
    from ebseg_lite.toyworld.ablation import format_table
    from ebseg_lite.toyworld.vocab_probe import KINDS, SETTINGS
    st = lambda m: {"mean": m, "std": 0.5}
    res = {"seeds": [0, 1], "rows": [],
           "open_vocabulary": {"A": {k: st(60.0 - 10 * i) for i, k in enumerate(SETTINGS)}},
           "error_kinds": {"A": {f"{g} -> {k}": st(float(10 * j + (5 if g == "new" else 0)))
                                 for g in ("seen", "new") for j, k in enumerate(KINDS)}}}
    lines = format_table(3, res).splitlines()
    cost = next(l for l in lines if l.strip().startswith("A ") and "+-" in l)
    assert [float(x) for x in re.findall(r"(\d+\.\d) \+-", cost)] == [60.0, 50.0, 40.0, 30.0]
    seen_row = next(l for l in lines if l.split()[:2] == ["A", "seen"])
    new_row = lines[lines.index(seen_row) + 1]
    assert [float(x) for x in seen_row.split()[2:]] == [0.0, 10.0, 20.0, 30.0, 40.0]
    assert new_row.split()[0] == "new" and [float(x) for x in new_row.split()[1:]] == [5.0, 15.0, 25.0, 35.0, 45.0]


def test_a_runs_model_overrides_reach_every_variant_and_the_variants_own_win():
    from ebseg_lite.toyworld.ablation import VARIANTS, train_overrides, variant_model
    base = {"sam": {"feature_scale": 0.25, "enabled": True}}
    # no_sam turns SAM off on top of the run's scale; the run's dict is not modified
    assert variant_model("no_sam", base) == {"sam": {"feature_scale": 0.25, "enabled": False}}
    assert base == {"sam": {"feature_scale": 0.25, "enabled": True}}
    assert variant_model("ssc_head_late", base) == {"sam": {"feature_scale": 0.25, "enabled": True},
                                                   "clip": {"feature_blocks": (3, 6, 9)}}
    assert variant_model("ssc") == {} and train_overrides("ssc") is VARIANTS["ssc"][1]   # no base: unchanged
    assert train_overrides("sam_trained", base) == {"train_sam": True, "cache_features": False,
                                                    "model_overrides": {"sam": {"feature_scale": 0.25, "enabled": True}}}


def test_ablate_and_length_commands_pass_the_sam_feature_scale(stand_in):
    from ebseg_lite.cli import toyworld as cli
    from ebseg_lite.cli.main import main
    from ebseg_lite.toyworld import ablation, length
    for module, name, argv in ((ablation, "run_ablation", ["ablate", "--table", "7"]),
                               (length, "run_length", ["length", "--steps", "300"])):
        seen = stand_in(module, name)
        with pytest.raises(stand_in.reached):
            main(["toyworld", *argv, "--sam-feature-scale", "0.1"])
        assert seen["model_overrides"] == {"sam": {"feature_scale": 0.1}}
        seen.clear()
        with pytest.raises(stand_in.reached):
            main(["toyworld", *argv])
        assert seen["model_overrides"] is None
        with pytest.raises(SystemExit, match="positive"):
            main(["toyworld", *argv, "--sam-feature-scale", "-1"])
