"""The training-length curve (``toyworld length``): its readings on hand-made figures, and that each of its
points is the demo's figure for the same recipe (so the shipped curve's 500 and 1500 points are the demo's
and ``make demo-long``'s)."""
import json

import pytest

from ebseg_lite.toyworld.experiments import ToyRun, run_demo
from ebseg_lite.toyworld.length import (CURVE_MODES, a_leads_on_seen, curve_point, format_length, parse_steps,
                                        run_length)
from ebseg_lite.toyworld.readings import harmonic


def _summary(a, b, d, official=(50.0, 40.0)):
    rows = {"A": a, "B": b, "D": d, "A+B+D official": official}
    return {m: {"mIoU": (s + n) / 2, "mIoU_seen": s, "mIoU_new": n} for m, (s, n) in rows.items()}


def _same(a, b) -> bool:
    """Equal figures, NaN (a class group absent from a few scenes) equal to NaN."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_parse_steps_sorts_and_refuses_nonsense():
    assert parse_steps("600, 300,600,1500") == [300, 600, 1500]
    for bad in ("", "0,300", "300,x"):
        with pytest.raises(ValueError, match="--steps"):
            parse_steps(bad)


def test_a_leads_on_the_seed_means_and_counts_the_seeds():
    # seed 0: A leads by 10; seed 1: D leads by 2 -> on the means A leads (65 vs 61), on 1 of 2 seeds
    seeds = [_summary((70, 5), (55, 20), (60, 30)), _summary((60, 4), (50, 20), (62, 30))]
    assert a_leads_on_seen(seeds) == {"holds": True, "seeds_holding": "1 of 2"}
    # B above A on the mean although A beats D on both seeds
    seeds = [_summary((60, 5), (70, 20), (50, 30)), _summary((60, 4), (58, 20), (50, 30))]
    assert a_leads_on_seen(seeds) == {"holds": False, "seeds_holding": "1 of 2"}


def test_curve_point_takes_the_h_mean_per_seed():
    seeds = [_summary((80, 10), (50, 20), (60, 30)), _summary((40, 30), (50, 20), (60, 30))]
    point = curve_point(seeds)
    assert set(point["stats"]) == set(CURVE_MODES)
    want = (harmonic(80, 10) + harmonic(40, 30)) / 2
    assert point["stats"]["A"]["hmean"]["mean"] == pytest.approx(want)
    assert point["stats"]["A"]["hmean"]["mean"] != pytest.approx(harmonic(60, 20))   # not the h-mean of the means
    assert point["stats"]["A"]["mIoU_seen"] == {"mean": pytest.approx(60.0), "std": pytest.approx(28.2843, abs=1e-3)}


def test_each_length_is_the_demos_run_and_finished_runs_are_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("EBSEG_CACHE", str(tmp_path / "cache"))
    run = ToyRun(batch_size=2, train_scenes=6, test_scenes=3)
    out = tmp_path / "length"
    result = run_length(out, steps=(2, 3), seeds=(0,), ssc_options=(True,), run=run, progress=False, workers=1)
    saved = json.loads((out / "length.json").read_text())
    assert saved["steps"] == [2, 3] and set(saved["per_seed"]) == {"ssc"}
    assert (out / "length.png").stat().st_size > 0
    # the 3-step point is the demo's seed-0 figure at 3 steps, mode for mode
    demo = run_demo(tmp_path / "demo", seeds=(0,), run=ToyRun(steps=3, batch_size=2, train_scenes=6, test_scenes=3),
                    ssc_options=(True,), progress=False, figures=False, workers=1)
    assert _same(saved["per_seed"]["ssc"]["3"][0], demo["per_seed"]["ssc"][0]["summary"])
    # the 2- and 3-step trainings differ (each length is its own schedule, not one run's checkpoints)
    assert saved["per_seed"]["ssc"]["2"][0] != saved["per_seed"]["ssc"]["3"][0]
    # a second call keeps the finished runs (no retraining) and gives the same figures
    weights = out / "steps3" / "ssc_seed0" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    again = run_length(out, steps=(3,), seeds=(0,), ssc_options=(True,), run=run, progress=False, workers=1)
    assert weights.stat().st_mtime_ns == stamp
    assert _same(again["per_seed"]["ssc"]["3"], result["per_seed"]["ssc"]["3"])
    table = format_length(saved)
    assert "SSC on" in table and "SSC off" not in table and "A best on seen" in table


def test_a_scaled_length_point_is_the_scaled_demos_run(tmp_path, monkeypatch):
    """With model overrides (a SAM feature scale), each point is the demo's figure with the same overrides."""
    monkeypatch.setenv("EBSEG_CACHE", str(tmp_path / "cache"))
    run, mo = ToyRun(steps=2, batch_size=2, train_scenes=4, test_scenes=2), {"sam": {"feature_scale": 0.5}}
    saved = run_length(tmp_path / "length", steps=(2,), seeds=(0,), ssc_options=(True,), run=run, progress=False,
                       workers=1, figure=False, model_overrides=mo)
    assert saved["model_overrides"] == mo
    cfg = json.loads((tmp_path / "length" / "steps2" / "ssc_seed0" / "config.json").read_text())
    assert cfg["model"]["sam"]["feature_scale"] == 0.5
    demo = run_demo(tmp_path / "demo", seeds=(0,), run=run, ssc_options=(True,), progress=False, figures=False,
                    workers=1, model_overrides=mo)
    assert _same(saved["per_seed"]["ssc"]["2"][0], demo["per_seed"]["ssc"][0]["summary"])


def test_length_command_rejects_bad_step_counts_and_seeds():
    from ebseg_lite.cli.main import main
    with pytest.raises(SystemExit, match="--steps"):
        main(["toyworld", "length", "--steps", "300,zero"])
    for bad in (["--first-seed", "-1"], ["--seeds", "0"]):
        with pytest.raises(SystemExit, match="--first-seed must be >= 0 and --seeds >= 1"):
            main(["toyworld", "length", *bad])


def test_length_command_passes_seeds_and_lengths(stand_in):
    from ebseg_lite.cli.main import main
    from ebseg_lite.toyworld import length
    seen = stand_in(length, "run_length")
    with pytest.raises(stand_in.reached):
        main(["toyworld", "length", "--steps", "600,300", "--first-seed", "4", "--seeds", "2", "--ssc-only"])
    assert seen["steps"] == [300, 600] and seen["seeds"] == (4, 5) and seen["ssc_options"] == (True,)
