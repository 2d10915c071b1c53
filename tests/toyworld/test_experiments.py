"""The toy-world pipeline at a reduced size: training on seen names only, every classification mode,
the report folder, and the trained-model cache."""
import hashlib
import json

import numpy as np
import pytest
import torch

from ebseg_lite.toyworld import ToyWorld
from ebseg_lite.toyworld import experiments as pipeline
from ebseg_lite.toyworld.experiments import MODES, ToyRun, evaluate_toy_modes as evaluate_modes, run_demo, held_out_scenes
from ebseg_lite.toyworld.presets import SeenVocabulary

SMALL = ToyRun(steps=3, batch_size=2, train_scenes=6, test_scenes=3)


def test_training_vocabulary_is_the_seen_classes_only():
    w = ToyWorld()
    ds = SeenVocabulary(w.dataset(4, split="train"), w)
    assert ds.class_names == w.seen_names
    for i in range(4):
        raw, item = w.dataset(4, split="train")[i]["label"], ds[i]["label"]
        ids = torch.unique(item[item != 255])
        assert int(ids.max()) < len(w.seen_names)
        names = {w.seen_names[j] for j in ids.tolist()}
        assert names == {w.class_names[j] for j in torch.unique(raw[raw != 255]).tolist()}  # same classes, new ids
    with pytest.raises(ValueError, match="new class"):
        SeenVocabulary(w.dataset(40, split="test"), w)[next(i for i in range(40) if not all(
            w.seen[j] for j in torch.unique(w.dataset(40, split="test")[i]["label"]).tolist() if j != 255))]


def test_modes_cover_the_paper_tables_and_official_mode_is_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("EBSEG_CACHE", str(tmp_path))
    assert {"A", "B", "D", "A+B", "A+D", "B+D", "A+B+D official", "A+B+D paper", "A+B+D unbalanced"} <= set(MODES)
    model = pipeline.toy_model(run=SMALL, progress=False)
    test = held_out_scenes(2)
    res = evaluate_modes(model, test, progress=False)
    w = ToyWorld()
    k = len(w.class_names)
    encoded = [(model.encode(item["image"], keep_intermediates=False), item["label"]) for item in test]
    for m, r in res.items():
        # intersection / union counted here, pixel by pixel, from the same mode's labels
        inter, gt, pred = np.zeros(k), np.zeros(k), np.zeros(k)
        for enc, label in encoded:
            got = model.classify(enc, w.class_names, seen=w.seen, **MODES[m]).labels.numpy()
            lab = label.numpy()
            keep = lab != 255
            got, lab = got[keep], lab[keep]
            inter += np.bincount(lab[got == lab], minlength=k)
            gt += np.bincount(lab, minlength=k)
            pred += np.bincount(got, minlength=k)
        present = gt > 0
        want = 100 * inter[present] / (gt + pred - inter)[present]
        np.testing.assert_allclose(np.asarray(r["IoU"])[present], want, rtol=1e-9, err_msg=m)
        assert np.isnan(np.asarray(r["IoU"])[~present]).all(), m
        seen = np.asarray(w.seen)
        assert r["mIoU"] == pytest.approx(want.mean()), m
        assert r["mIoU_seen"] == pytest.approx(100 * (inter / np.maximum(gt + pred - inter, 1))[present & seen].mean()), m
    item = test[0]
    enc = model.encode(item["image"])
    default = model.classify(enc, w.class_names, seen=w.seen).labels
    assert torch.equal(default, model.classify(enc, w.class_names, seen=w.seen, **MODES["A+B+D official"]).labels)
    only_a = model.classify(enc, w.class_names, seen=w.seen, **MODES["A"])
    assert torch.allclose(only_a.class_probs[:, :-1].sum(-1) + only_a.p_void, torch.ones(len(only_a.p_void)), atol=1e-5)


def test_trained_model_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("EBSEG_CACHE", str(tmp_path))
    first = pipeline.toy_model(ssc=False, run=SMALL, progress=False)
    monkeypatch.setattr(pipeline, "train_toy_model", lambda **kw: (_ for _ in ()).throw(AssertionError("retrained")))
    again = pipeline.toy_model(ssc=False, run=SMALL, progress=False)
    for (k, a), b in zip(first.model.state_dict().items(), again.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_demo_writes_the_report(tmp_path, monkeypatch):
    monkeypatch.setenv("EBSEG_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "report"
    metrics = run_demo(out, seeds=(0,), run=SMALL, progress=False)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["stats"].keys() == {"ssc", "no_ssc"}
    for tag in ("ssc", "no_ssc"):
        for m in MODES:
            assert set(saved["stats"][tag][m]) == {"mIoU", "mIoU_seen", "mIoU_new"}
    assert set(saved["affinity_gap"]) == {"ssc", "no_ssc"}
    from ebseg_lite.io.checkpoints import checkpoint_metadata
    from ebseg_lite.toyworld.presets import toy_weights_dir
    clip = json.loads(checkpoint_metadata(toy_weights_dir() / "toy_clip.safetensors")["summary"])
    sam = json.loads(checkpoint_metadata(toy_weights_dir() / "toy_sam.safetensors")["summary"])
    assert saved["toy_clip_zero_shot"] == {"things": round(100 * clip["thing_acc"], 1),
                                           "stuff": round(100 * clip["stuff_acc"], 1)}
    assert saved["sam_proposal_recall"] == round(100 * sam["proposal_recall"], 1)
    # which encoder files made this report (re-made encoders give other figures: README, toy world)
    for name in ("toy_clip", "toy_sam"):
        data = (toy_weights_dir() / f"{name}.safetensors").read_bytes()
        assert saved["encoder_digest"][name] == hashlib.sha256(data).hexdigest()[:16]
    for name in ("predictions.png", "per_class_iou.png", "affinity.png", "table.txt"):
        assert (out / name).stat().st_size > 0, name
    table = (out / "table.txt").read_text()
    assert sum(line.startswith("A+B+D official") for line in table.splitlines()) == 2
    # the paper's claims read off this run's own per-seed figures, in metrics.json and under the table
    from ebseg_lite.toyworld.readings import paper_readings
    summaries = {tag: [p["summary"] for p in saved["per_seed"][tag]] for tag in ("ssc", "no_ssc")}
    assert saved["readings"] == paper_readings(summaries["ssc"], summaries["no_ssc"])
    assert "What this run shows of the paper" in table
    assert all(r["claim"] in table for r in saved["readings"])
    # one seed: the mean is that seed's figure and the spread is zero; the table prints the same number
    for tag in ("ssc", "no_ssc"):
        one = saved["per_seed"][tag][0]["summary"]["A+B+D official"]["mIoU"]
        assert saved["stats"][tag]["A+B+D official"]["mIoU"] == {"mean": pytest.approx(one), "std": 0.0}
        assert f"{one:.1f}" in table
    assert saved["seconds"] == metrics["seconds"]


def test_per_class_figure_shows_percent():
    from ebseg_lite.toyworld.report import per_class_figure
    w = ToyWorld()
    iou = {m: [float(i) for i in range(len(w.class_names))] for m in ("A", "B", "D", "A+B+D official")}
    iou["A"][0] = None
    fig = per_class_figure(iou, w)
    import numpy as np
    data = np.ma.filled(fig.axes[0].images[0].get_array().astype(float), np.nan)  # (modes, K), seen classes first
    assert np.nanmax(data) == len(w.class_names) - 1  # percent as given, not scaled again
    assert np.isnan(data[0, 0])                          # "red solid" (seen, first) for A: no ground truth
    assert fig.axes[0].get_title() == "per-class IoU % (* = new class)"


def test_demo_command_and_ship(tmp_path, monkeypatch, capsys):
    """`ebseg-lite toyworld demo` at a reduced size; --ship puts the seed-0 models where toy_model finds them."""
    import shutil
    from ebseg_lite.cli.main import main
    from ebseg_lite.toyworld.presets import toy_weights_dir
    weights = tmp_path / "weights"
    weights.mkdir()
    for name in ("toy_clip.safetensors", "toy_sam.safetensors"):
        shutil.copyfile(toy_weights_dir() / name, weights / name)
    monkeypatch.setenv("EBSEG_TOY_WEIGHTS", str(weights))
    monkeypatch.setenv("EBSEG_CACHE", str(tmp_path / "cache"))
    rc = main(["toyworld", "demo", "--out", str(tmp_path / "report"), "--steps", "2", "--batch-size", "2",
               "--train-scenes", "4", "--test-scenes", "2", "--workers", "1", "--ship", "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "A+B+D official" in out and "chance" in out and "shipped" in out
    run = ToyRun(steps=2, batch_size=2, train_scenes=4, test_scenes=2)
    assert (weights / f"{pipeline.run_name(True, 0, run)}.safetensors").is_file()
    monkeypatch.setattr(pipeline, "train_toy_model", lambda **kw: (_ for _ in ()).throw(AssertionError("retrained")))
    pipeline.toy_model(ssc=False, run=run, progress=False)  # found among the shipped files: no training


def test_demo_learning_rate_reaches_the_trainer_and_the_run_name(tmp_path, stand_in):
    """`toyworld demo --lr` trains at that rate, and a non-default rate gets its own file stem, so
    `--ship` at another rate cannot overwrite the default run's shipped decoders."""
    from ebseg_lite.cli import toyworld as cli
    from ebseg_lite.cli.main import main
    seen = stand_in(cli, "run_demo")   # records what the command asked for, trains nothing
    with pytest.raises(stand_in.reached):
        main(["toyworld", "demo", "--out", str(tmp_path / "r"), "--lr", "0.002", "--steps", "7"])
    assert seen["run"].lr == 0.002 and seen["run"].steps == 7
    default = ToyRun()
    assert pipeline.run_name(True, 0, default) == "ebseg_ssc_seed0_500x8_1000"      # the shipped files' names
    assert pipeline.run_name(True, 0, ToyRun(lr=2e-3)) == "ebseg_ssc_seed0_500x8_1000_lr0.002"
    cfg = pipeline.toy_train_config(ssc=True, seed=0, run=ToyRun(lr=2e-3), out_dir=tmp_path)
    assert cfg.lr == 2e-3


def test_demo_first_seed_picks_fresh_seeds_and_ship_needs_seed_0(tmp_path, stand_in):
    """`toyworld demo --first-seed 3 --seeds 2` trains seeds 3 and 4 (fresh ones, to check the figures on);
    `--ship` copies the seed-0 models, so it refuses a run without seed 0 before training anything."""
    from ebseg_lite.cli import toyworld as cli
    from ebseg_lite.cli.main import main
    seen = stand_in(cli, "run_demo")
    with pytest.raises(stand_in.reached):
        main(["toyworld", "demo", "--out", str(tmp_path / "r"), "--first-seed", "3", "--seeds", "2"])
    assert seen["seeds"] == (3, 4)
    seen.clear()
    with pytest.raises(SystemExit, match="--ship"):
        main(["toyworld", "demo", "--out", str(tmp_path / "r"), "--first-seed", "3", "--ship"])
    assert not seen                               # refused before any training
    with pytest.raises(stand_in.reached):
        main(["toyworld", "demo", "--out", str(tmp_path / "r")])
    assert seen["seeds"] == (0, 1, 2)             # the default: the shipped models' seeds


def test_demo_sam_feature_scale_reaches_run_demo_and_ship_refuses_it(tmp_path, stand_in):
    """`toyworld demo --sam-feature-scale S` trains and evaluates with SAM's features times S before the
    fusion; the default asks for no change; --ship (the preset's models) and S <= 0 are refused first."""
    from ebseg_lite.cli import toyworld as cli
    from ebseg_lite.cli.main import main
    seen = stand_in(cli, "run_demo")
    with pytest.raises(stand_in.reached):
        main(["toyworld", "demo", "--out", str(tmp_path / "r"), "--sam-feature-scale", "0.05"])
    assert seen["model_overrides"] == {"sam": {"feature_scale": 0.05}}
    seen.clear()
    with pytest.raises(stand_in.reached):
        main(["toyworld", "demo", "--out", str(tmp_path / "r")])
    assert seen["model_overrides"] is None
    seen.clear()
    with pytest.raises(stand_in.reached):   # the official code's scale is a change from the toy preset's
        main(["toyworld", "demo", "--out", str(tmp_path / "r"), "--sam-feature-scale", "1"])
    assert seen["model_overrides"] == {"sam": {"feature_scale": 1.0}}
    seen.clear()
    for bad, match in ((["--sam-feature-scale", "0.05", "--ship"], "--ship"), (["--sam-feature-scale", "0"], "positive")):
        with pytest.raises(SystemExit, match=match):
            main(["toyworld", "demo", "--out", str(tmp_path / "r")] + bad)
        assert not seen


def test_run_demo_model_overrides_train_and_evaluate_the_changed_model(tmp_path, monkeypatch):
    from ebseg_lite.builder import build_model
    monkeypatch.setenv("EBSEG_CACHE", str(tmp_path / "cache"))
    run = ToyRun(steps=2, batch_size=2, train_scenes=4, test_scenes=2)
    mo = {"sam": {"feature_scale": 0.25}}
    metrics = run_demo(tmp_path / "r", seeds=(0,), run=run, ssc_options=(True,), progress=False, figures=False,
                       workers=1, model_overrides=mo)
    assert metrics["model_overrides"] == mo
    saved = json.loads((tmp_path / "r" / "runs" / "ssc_seed0" / "config.json").read_text())
    assert saved["model"]["sam"]["feature_scale"] == 0.25 and saved["train"]["model_overrides"] == mo
    ckpt = str(tmp_path / "r" / "runs" / "ssc_seed0" / "model.safetensors")
    got = metrics["per_seed"]["ssc"][0]["summary"]
    scaled = pipeline.summary(evaluate_modes(build_model("toy", checkpoint=ckpt, **mo), held_out_scenes(2), progress=False))
    assert json.dumps(got, sort_keys=True) == json.dumps(scaled, sort_keys=True)   # evaluated with its own scale
    # the weights bring their scale (their saved config); another scale, asked for, is refused
    assert build_model("toy", checkpoint=ckpt).model.fusion.sam_scale == 0.25
    from ebseg_lite.io.files import CheckpointError
    with pytest.raises(CheckpointError, match="feature_scale"):
        build_model("toy", checkpoint=ckpt, sam={"feature_scale": 1.0})


@pytest.mark.parametrize("holds", [False, True])
def test_demo_points_to_the_length_curve_when_a_does_not_lead(tmp_path, monkeypatch, capsys, holds):
    from ebseg_lite.cli import toyworld as cli
    from ebseg_lite.cli.main import main

    def fake_demo(out, **kw):   # the report of a finished run, with the premise's reading as given
        out = tmp_path / "r"
        out.mkdir(exist_ok=True)
        (out / "table.txt").write_text("table\n")
        return {"toy_clip_zero_shot": {"things": 1.0, "stuff": 2.0}, "sam_proposal_recall": 3.0, "seconds": 4.0,
                "encoder_digest": {"toy_clip": "c" * 16, "toy_sam": "5" * 16},
                "readings": [{"claim": "A is the best single embedding on seen classes", "holds": holds}]}

    monkeypatch.setattr(cli, "run_demo", fake_demo)
    assert main(["toyworld", "demo", "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert ("toyworld length" in out) is not holds and ("toyworld fusion-scale" in out) is not holds
    assert f"SHA-256 toy_clip {'c' * 16}, toy_sam {'5' * 16}" in out


def test_side_by_side_evaluation_equals_the_serial_one():
    # the two shipped decoders, evaluated in two worker processes and in this one: the same numbers,
    # each under its own key (a swap of results between models would show: SSC and no-SSC differ)
    from ebseg_lite.toyworld.experiments import evaluate_runs
    from ebseg_lite.toyworld.presets import toy_weights_dir
    files = {tag: (toy_weights_dir() / f"ebseg_{tag}_seed0_500x8_1000.safetensors", None) for tag in ("ssc", "nossc")}
    run = ToyRun(test_scenes=3)
    serial = evaluate_runs(files, run, workers=1, progress=False)
    parallel = evaluate_runs(files, run, workers=2, progress=False)
    assert list(parallel) == ["ssc", "nossc"]
    for tag in files:
        assert set(parallel[tag]) == set(MODES)
        for m in MODES:
            assert parallel[tag][m]["mIoU"] == serial[tag][m]["mIoU"]
            assert np.array_equal(np.asarray(parallel[tag][m]["IoU"]), np.asarray(serial[tag][m]["IoU"]), equal_nan=True)
    model = pipeline.build_model("toy", checkpoint=str(files["ssc"][0]))
    direct = evaluate_modes(model, held_out_scenes(3), progress=False)
    assert direct["A+B+D official"]["mIoU"] == serial["ssc"]["A+B+D official"]["mIoU"]
    assert serial["ssc"]["A"]["mIoU"] != serial["nossc"]["A"]["mIoU"]
