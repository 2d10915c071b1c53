"""``toyworld compare``: every method's row is the evaluator's mIoU for that method on the same scenes."""
import json

import pytest
import torch
from PIL import Image

from ebseg_lite.baselines import build_method
from ebseg_lite.eval.loop import evaluate
from ebseg_lite.toyworld.compare import format_table, run_compare, seed_summary, toy_mask_generator
from ebseg_lite.toyworld.experiments import held_out_scenes, toy_model
from ebseg_lite.toyworld.world import ToyWorld


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    return out, run_compare(out, scenes=2, test_seed=7, methods=("ebseg", "simseg", "simseg-sam", "naclip"),
                            progress=False)


def test_rows_are_the_evaluators_numbers(compared):
    out, result = compared
    rows = result["rows"]
    scenes, seen = held_out_scenes(2, seed=7), ToyWorld().seen
    predictor = toy_model(ssc=True, seed=0, progress=False)
    for m in ("ebseg", "naclip"):
        want = evaluate(build_method(m, predictor), scenes, seen=seen, progress=False)
        for k in ("mIoU", "mIoU_seen", "mIoU_new"):
            assert rows[m][k] == pytest.approx(want[k]), (m, k)
        assert rows[m]["sec_per_image"] > 0
    assert rows["ebseg"]["seeds"] == [0] and rows["simseg"]["per_seed"][0]["mIoU"] == pytest.approx(rows["simseg"]["mIoU"])
    assert json.loads((out / "compare.json").read_text())["rows"].keys() == rows.keys()
    assert result["test_seed"] == 7 and result["scenes"] == 2


def test_simseg_sam_runs_or_says_why(compared):
    _, result = compared
    gen, why = toy_mask_generator()
    row = result["rows"]["simseg-sam"]
    if gen is None:
        assert row == {"skipped": why} and "image encoder only" in why
    else:
        assert {"mIoU", "mIoU_seen", "mIoU_new", "sec_per_image"} <= set(row)


def test_table_and_picture(compared):
    out, result = compared
    table = (out / "table.txt").read_text()
    for m, r in result["rows"].items():
        line = next(ln for ln in table.splitlines() if ln.startswith(m + " "))
        assert ("skipped" in line) if "skipped" in r else f"{r['mIoU']:5.1f}" in line
    drawn = [m for m, r in result["rows"].items() if "skipped" not in r]
    w, h = Image.open(out / "methods.png").size  # show_segmentations: 2-inch panels (image, truth, methods) + legend
    assert w == pytest.approx((2.0 * (2 + len(drawn)) + 3.2) * 110, abs=2) and h == pytest.approx((2.0 * 2 + 0.8) * 110, abs=2)


def test_seed_summary_mean_and_spread():
    per = [{"mIoU": 10.0, "mIoU_seen": 20.0, "mIoU_new": 1.0, "sec_per_image": 0.1},
           {"mIoU": 14.0, "mIoU_seen": 20.0, "mIoU_new": 3.0, "sec_per_image": 0.3}]
    s = seed_summary(per, [0, 1])
    assert s["mIoU"] == 12.0 and s["sec_per_image"] == pytest.approx(0.2)
    assert s["std"]["mIoU"] == pytest.approx(2 ** 0.5 * 2) and s["std"]["mIoU_seen"] == 0.0
    assert "12.0 +-  2.8" in format_table({"ebseg": s}, 2, 99)
    assert "std" not in seed_summary(per[:1], [0])
