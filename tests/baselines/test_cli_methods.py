"""``ebseg-lite eval --method`` and ``ebseg-lite toyworld compare`` from the command line."""
import json

import numpy as np
import pytest
from PIL import Image

from ebseg_lite.cli.main import main
from ebseg_lite.data.datasets import BENCHMARKS


def make_ade(root, n=2, h=40, w=50):
    """Two random ADE20K-150 images; labels: class 0 on top, class 2 below, one ignored pixel."""
    spec = BENCHMARKS["ade20k_150"]
    (root / spec.image_dir).mkdir(parents=True)
    (root / spec.label_dir).mkdir(parents=True)
    for i in range(n):
        img = np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / spec.image_dir / f"a{i}.jpg")
        lab = np.full((h, w), 2, np.uint8)
        lab[: h // 2], lab[0, 0] = 0, 255
        Image.fromarray(lab).save(root / spec.label_dir / f"a{i}.png")


@pytest.mark.parametrize("method", ["simseg", "clearclip"])
def test_eval_command_runs_a_baseline(tmp_path, method):
    make_ade(tmp_path)
    out = tmp_path / "res.json"
    rc = main(["eval", "--dataset", "ade20k_150", "--data-root", str(tmp_path), "--preset", "tiny", "--checkpoint",
               "none", "--device", "cpu", "--method", method, "--out", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["method"] == method and res["num_images"] == 2
    assert [i for i, v in enumerate(res["IoU"]) if v == v] == [0, 2]  # the fixture's two labelled classes


def test_eval_command_refuses_what_a_method_cannot_do(tmp_path, capsys, monkeypatch):
    make_ade(tmp_path)
    monkeypatch.delenv("EBSEG_SAM_CHECKPOINT", raising=False)
    base = ["eval", "--dataset", "ade20k_150", "--data-root", str(tmp_path), "--preset", "tiny", "--checkpoint", "none",
            "--device", "cpu"]
    assert main(base + ["--method", "simseg-sam"]) == 2
    assert "--sam-checkpoint" in capsys.readouterr().err
    assert main(base + ["--method", "sclip", "--sliding"]) == 2
    assert "--sliding" in capsys.readouterr().err


def test_toyworld_compare_command(tmp_path, capsys):
    rc = main(["toyworld", "compare", "--out", str(tmp_path), "--scenes", "2", "--methods", "ebseg,sclip",
               "--test-seed", "5", "--no-progress"])
    assert rc == 0
    result = json.loads((tmp_path / "compare.json").read_text())
    assert list(result["rows"]) == ["ebseg", "sclip"] and result["test_seed"] == 5
    assert set(result["rows"]["sclip"]) == {"mIoU", "mIoU_seen", "mIoU_new", "sec_per_image"}
    assert (tmp_path / "methods.png").is_file() and "sclip" in capsys.readouterr().out
