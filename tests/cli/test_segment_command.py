"""The ebseg-lite command and ebseg_lite.segment on the tiny preset."""
import json

import numpy as np
import pytest
from PIL import Image

import ebseg_lite
from ebseg_lite.cli.main import main


@pytest.fixture
def image_path(tmp_path):
    arr = (np.random.RandomState(1).rand(60, 80, 3) * 255).astype(np.uint8)
    p = tmp_path / "img.jpg"
    Image.fromarray(arr).save(p)
    return p


def test_segment_command_writes_overlay_labels_json(image_path, tmp_path, capsys):
    out = tmp_path / "res" / "out.png"
    rc = main(["segment", str(image_path), "--classes", "cat,sofa,road", "--preset", "tiny",
               "--checkpoint", "none", "--device", "cpu", "--out", str(out)])
    assert rc == 0
    overlay = Image.open(out)
    assert overlay.size[0] >= 80 and overlay.size[1] >= 60       # legend panel may widen it
    labels = np.array(Image.open(out.with_name("out_labels.png")))
    assert labels.shape == (60, 80) and labels.max() < 3
    summary = json.loads(out.with_suffix(".json").read_text())
    assert [c["name"] for c in summary["classes"]] == ["cat", "sofa", "road"]
    assert abs(sum(c["pixel_fraction"] for c in summary["classes"]) - 1) < 1e-4
    assert "wrote" in capsys.readouterr().out


def test_segment_command_synonyms_and_classes_file(image_path, tmp_path):
    f = tmp_path / "classes.txt"
    f.write_text("road, route\nsofa, couch\npurple unicorn\n")
    out = tmp_path / "o.png"
    assert main(["segment", str(image_path), "--classes-file", str(f), "--preset", "tiny", "--checkpoint", "none",
                 "--device", "cpu", "--out", str(out)]) == 0
    summary = json.loads(out.with_suffix(".json").read_text())
    assert [c["seen"] for c in summary["classes"]] == [True, True, False]


def test_segment_command_errors_are_one_line(tmp_path, capsys):
    rc = main(["segment", str(tmp_path / "missing.png"), "--classes", "a", "--preset", "tiny", "--checkpoint", "none"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "missing.png" in err and "Traceback" not in err
    rc = main(["segment", str(tmp_path / "missing.png"), "--preset", "tiny", "--checkpoint", "none"])
    assert rc == 2 and "--classes" in capsys.readouterr().err



def test_segment_function(image_path):
    pred = ebseg_lite.segment(image_path, ["cat", "sofa"], preset="tiny", checkpoint=None, device="cpu")
    assert pred.labels.shape == (60, 80)
    again = ebseg_lite.segment(image_path, ["cat", "sofa"], preset="tiny", checkpoint=None, device="cpu")
    assert np.array_equal(pred.labels.numpy(), again.labels.numpy())
