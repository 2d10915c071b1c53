"""Own data end to end on the command line: one preset name for train, segment and eval; folder:DIR;
--on-error skip; the hint for a bare folder; the loud word about random encoders."""
import json

import numpy as np
import pytest
from PIL import Image

from ebseg_lite.cli.main import main
from ebseg_lite.cli.own_data import random_encoders, resolve_preset


def make_folder(root, n=2, h=32, w=32, classes=("cat", "sofa, couch", "floor")):
    """root/images/p{i}.png, root/labels/p{i}.png (ids 0..2, a 255 corner) and root/classes.txt."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(n):
        rng = np.random.default_rng(i)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "images" / f"p{i}.png")
        lab = np.zeros((h, w), np.uint8)
        lab[h // 2:] = 1
        lab[:, w // 2:] = 2
        lab[0, 0] = 255
        Image.fromarray(lab).save(root / "labels" / f"p{i}.png")
    (root / "classes.txt").write_text("\n".join(classes) + "\n")

TRAIN_ARGS = ["--max-iters", "2", "--set", "crop_size=64", "--set", "num_points=64", "--no-progress"]


def test_a_training_preset_stands_for_its_model():
    assert resolve_preset("cpu_tiny")[0] == "tiny"
    assert resolve_preset("paper_b")[0] == "vit_b" and resolve_preset("paper_b")[1].clip_pretrained == "openai"
    assert resolve_preset("toy")[0] == "toy"            # both a model and a training preset
    assert resolve_preset("vit_b") == ("vit_b", None)
    with pytest.raises(ValueError, match="training presets"):
        resolve_preset("nope")
    assert random_encoders("tiny", None, None) == ["CLIP", "SAM"]
    assert random_encoders("toy", None, None) == []     # the toy preset loads its pretrained toy encoders
    assert random_encoders("vit_b", "openai", "/w/sam.pth") == []
    assert random_encoders("vit_b", None, "/w/sam.pth") == ["CLIP"]


def test_train_segment_eval_on_own_folder(tmp_path, capsys):
    make_folder(tmp_path / "data", n=3, h=64, w=64)
    run = tmp_path / "run"
    rc = main(["train", "--preset", "cpu_tiny", "--dataset", f"folder:{tmp_path / 'data'}", "--out", str(run),
               *TRAIN_ARGS])
    cap = capsys.readouterr()
    assert rc == 0 and "trained to step 2" in cap.out
    assert "RANDOM CLIP and SAM" in cap.err and "--preset toy" in cap.err
    ckpt = str(run / "model.safetensors")

    out = tmp_path / "seg" / "p0.png"
    rc = main(["segment", str(tmp_path / "data" / "images" / "p0.png"), "--preset", "cpu_tiny", "--checkpoint", ckpt,
               "--classes-file", str(tmp_path / "data" / "classes.txt"), "--out", str(out), "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads(out.with_suffix(".json").read_text())
    assert [c["seen"] for c in summary["classes"]] == [True, True, True]  # the folder's classes trained the model
    with Image.open(out) as im:   # 64 px upscaled x6 to 384, blend + label map side by side, legend, title
        assert im.width > 2 * 384 and im.height >= 384
    with Image.open(out.with_name("p0_labels.png")) as im:
        assert im.size == (64, 64)

    res_path = tmp_path / "res.json"
    rc = main(["eval", "--dataset", f"folder:{tmp_path / 'data'}", "--preset", "cpu_tiny", "--checkpoint", ckpt,
               "--device", "cpu", "--out", str(res_path)])
    text = capsys.readouterr().out
    assert rc == 0 and "mIoU" in text
    res = json.loads(res_path.read_text())
    assert res["num_images"] == 3 and res["num_classes"] == 3 and res["num_skipped"] == 0
    assert res["num_seen"] == 3 and res["num_new"] == 0
    assert 0.0 <= res["mIoU"] <= 100.0 and res["mIoU_seen"] == pytest.approx(res["mIoU"])


def test_bad_items_skip_and_bare_folder_hint(tmp_path, capsys):
    make_folder(tmp_path / "data", n=3, h=32, w=32)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "data" / "labels" / "p1.png")  # size mismatch
    args = ["eval", "--preset", "tiny", "--checkpoint", "none", "--device", "cpu", "--out", str(tmp_path / "r.json")]
    assert main(args + ["--dataset", f"folder:{tmp_path / 'data'}"]) == 2
    assert "p1.png" in capsys.readouterr().err                     # raise: the bad file is named
    assert main(args + ["--dataset", f"folder:{tmp_path / 'data'}", "--on-error", "skip"]) == 0
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["num_skipped"] == 1
    assert main(args + ["--dataset", str(tmp_path / "data")]) == 2
    assert f"--dataset folder:{tmp_path / 'data'}" in capsys.readouterr().err
    assert main(["train", "--preset", "cpu_tiny", "--dataset", str(tmp_path / "data"), "--out", str(tmp_path / "x")]) == 2
    assert "folder:" in capsys.readouterr().err
    assert main(["train", "--preset", "cpu_tiny", "--out", str(tmp_path / "x")]) == 2
    assert "--dataset folder:DIR" in capsys.readouterr().err
