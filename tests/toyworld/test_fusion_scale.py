"""The fusion's two addends in the toy world: their RMS, the scale that balances them, and the summary of scaled runs."""
import json

import pytest

from ebseg_lite.builder import build_model
from ebseg_lite.modeling.fusion import FUSED
from ebseg_lite.toyworld import fusion_scale as fs


def test_balanced_scale_by_hand():
    table = {"res3": {"sam": 10.0, "clip": 0.5}, "res4": {"sam": 20.0, "clip": 0.5}, "res5": {"sam": 5.0, "clip": 0.5},
             "sam_scale": 2.0}
    # ratios clip / sam: 0.05, 0.025, 0.1 -> mean 0.175 / 3; measured at scale 2
    assert fs.balanced_scale(table) == pytest.approx(2.0 * 0.175 / 3)


def test_the_scale_reaches_the_sam_term_only_and_the_balanced_scale_balances():
    plain = fs.addend_table(build_model("toy", sam={"feature_scale": 1.0}).model, n_scenes=2)
    assert plain["sam_scale"] == 1.0
    assert all(plain[k]["sam"] > 5 * plain[k]["clip"] for k in FUSED)   # the toy SAM drowns the CLIP term
    s = fs.balanced_scale(plain)
    scaled = fs.addend_table(build_model("toy", sam={"feature_scale": s}).model, n_scenes=2)
    for k in FUSED:
        assert scaled[k]["sam"] == pytest.approx(s * plain[k]["sam"], rel=1e-5)
        assert scaled[k]["clip"] == pytest.approx(plain[k]["clip"], rel=1e-6)   # same seed: the same fresh conv
    # on average over the levels, CLIP term / SAM term is now 1
    assert sum(scaled[k]["clip"] / scaled[k]["sam"] for k in FUSED) / 3 == pytest.approx(1.0, rel=1e-5)
    text = fs.format_table(scaled)
    assert "SAM / CLIP" in text and f"{plain['res5']['sam'] / plain['res5']['clip']:11.1f}" in text   # the ratio at scale 1


def test_the_toy_presets_sam_scale_is_its_rule():
    """The toy preset's scale is the balanced scale of the shipped toy SAM and CLIP, to 2 significant figures,
    measured on the command's scenes (fresh fusion); measuring at the preset's own scale gives the same."""
    from ebseg_lite.toyworld.presets import TOY_SAM_FEATURE_SCALE
    at_one = fs.balanced_scale(fs.addend_table(build_model("toy", sam={"feature_scale": 1.0}).model))
    assert float(f"{at_one:.2g}") == TOY_SAM_FEATURE_SCALE
    preset = fs.addend_table()
    assert preset["sam_scale"] == TOY_SAM_FEATURE_SCALE
    assert fs.balanced_scale(preset) == pytest.approx(at_one, rel=1e-5)
    from ebseg_lite.config import get_preset
    assert get_preset("vit_b").sam.feature_scale == get_preset("vit_l").sam.feature_scale == 1.0   # the official code's


def test_collect_keeps_each_runs_figures(tmp_path):
    from ebseg_lite.toyworld.experiments import ToyRun, run_demo
    run = ToyRun(steps=2, batch_size=2, train_scenes=4, test_scenes=2)
    metrics = run_demo(tmp_path / "r", seeds=(0,), run=run, progress=False, figures=False, workers=1,
                       model_overrides={"sam": {"feature_scale": 0.5}})
    table = {k: {"sam": 2.0, "clip": 1.0} for k in FUSED}
    table["sam_scale"] = 1.0
    out = tmp_path / "summary.json"
    result = fs.collect([tmp_path / "r"], table=table, out=out, measured_on="by hand")
    assert json.loads(out.read_text()) == result
    assert result["balanced_scale"] == 0.5 and result["addends"] == table and result["addends_measured_on"] == "by hand"
    (r,) = result["runs"]
    assert r["model_overrides"] == {"sam": {"feature_scale": 0.5}} and r["run"]["steps"] == 2
    assert r["sam_scale"] == fs.trained_scale(tmp_path / "r") == 0.5   # read from the runs' saved configs
    same = lambda a, b: json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)   # NaN for an absent class
    for tag in ("ssc", "no_ssc"):
        assert same(r["stats"][tag]["A"], metrics["stats"][tag]["A"])
        assert same(r["per_seed"][tag][0]["D"], metrics["per_seed"][tag][0]["summary"]["D"])
    # a trained checkpoint is measured at the scale it was trained with (the preset's 1 would refuse it)
    ckpt = tmp_path / "r" / "runs" / "ssc_seed0" / "model.safetensors"
    assert fs.addend_table(checkpoint=str(ckpt), n_scenes=2)["sam_scale"] == 0.5
    text = fs.format_runs(result)
    assert "SAM scale 0.5" in text and "A the best on seen classes" in text
    assert f"{metrics['stats']['ssc']['A']['mIoU_seen']['mean']:5.1f}" in text


def test_fusion_scale_command_refuses_a_folder_without_metrics(tmp_path):
    from ebseg_lite.cli.main import main
    with pytest.raises(SystemExit, match="no metrics.json"):
        main(["toyworld", "fusion-scale", "--reports", str(tmp_path)])


def test_trained_scale_reads_the_runs_and_refuses_a_mixed_or_empty_folder(tmp_path):
    import torch
    from safetensors.torch import save_file

    def run(name, model_sam):   # a run's weights file, its saved model config in the metadata
        d = tmp_path / "r" / "runs" / name
        d.mkdir(parents=True)
        save_file({"w": torch.zeros(1)}, str(d / "model.safetensors"), metadata={"config": json.dumps({"sam": model_sam})})
    run("ssc_seed0", {"feature_scale": 0.025})
    run("no_ssc_seed0", {"feature_scale": 0.025})
    assert fs.trained_scale(tmp_path / "r") == 0.025          # the preset's, with no override in metrics.json
    run("ssc_seed1", {})                                       # a config written before the scale existed: 1
    with pytest.raises(ValueError, match=r"one SAM scale.*0.025, 1.0"):
        fs.trained_scale(tmp_path / "r")
    with pytest.raises(ValueError, match="none"):
        fs.trained_scale(tmp_path / "empty")
