"""The eval command end to end on a fixture ADE20K-150 folder (tiny preset, random weights)."""
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from ebseg_lite.inference.predictor import EBSegPredictor

from ebseg_lite.cli.main import main
from ebseg_lite.data.datasets import BENCHMARKS


def make_ade(root, n=2, h=40, w=50):
    spec = BENCHMARKS["ade20k_150"]
    for i in range(n):
        (root / spec.image_dir).mkdir(parents=True, exist_ok=True)
        (root / spec.label_dir).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            root / spec.image_dir / f"a{i}.jpg")
        lab = np.full((h, w), 2, np.uint8)
        lab[: h // 2] = 0
        lab[0, 0] = 255
        Image.fromarray(lab).save(root / spec.label_dir / f"a{i}.png")


def test_eval_command_reports_miou_seen_new(tmp_path, capsys):
    make_ade(tmp_path)
    out = tmp_path / "res.json"
    rc = main(["eval", "--dataset", "ade20k_150", "--data-root", str(tmp_path), "--preset", "tiny",
               "--checkpoint", "none", "--device", "cpu", "--out", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["num_images"] == 2 and res["num_classes"] == 150
    iou = res["IoU"]
    present = [i for i, v in enumerate(iou) if v == v]     # non-NaN: classes with ground truth
    assert present == [0, 2]                               # only classes 0 and 2 have pixels
    assert "mIoU" in capsys.readouterr().out


def test_eval_command_figures_from_a_known_prediction(tmp_path, monkeypatch):
    # every pixel called "wall" (class 0): per image 999 wall pixels (one is ignored) and 1000 sky pixels
    make_ade(tmp_path)

    def wall_everywhere(self, encoded, class_names, **kwargs):
        return SimpleNamespace(labels=torch.zeros(encoded.orig_size, dtype=torch.long))

    monkeypatch.setattr(EBSegPredictor, "classify", wall_everywhere)
    out = tmp_path / "res.json"
    assert main(["eval", "--dataset", "ade20k_150", "--data-root", str(tmp_path), "--preset", "tiny",
                 "--checkpoint", "none", "--device", "cpu", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    iou_wall = 100 * 1998 / (1998 + 2000)          # intersection / union over both images
    assert res["IoU"][0] == pytest.approx(iou_wall) and res["IoU"][2] == 0.0
    assert res["mIoU"] == pytest.approx(iou_wall / 2)  # wall and sky, the two classes with ground truth
    assert res["mIoU_seen"] == pytest.approx(iou_wall / 2)  # both are seen (COCO-Stuff has wall and sky)
    assert math.isnan(res["mIoU_new"])
    assert res["pAcc"] == pytest.approx(100 * 1998 / 3998)


def test_eval_command_missing_dataset_is_one_line(tmp_path, capsys):
    rc = main(["eval", "--dataset", "ade20k_150", "--data-root", str(tmp_path), "--preset", "tiny",
               "--checkpoint", "none", "--device", "cpu"])
    assert rc == 2 and "ADEChallengeData2016" in capsys.readouterr().err
