"""SemSegEvaluator against hand-computed confusion matrices (detectron2 semantics)."""
import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ebseg_lite.eval.metrics import SemSegEvaluator, confusion_matrix, format_table

# 3 classes; the pixel at (1, 2) is ignored
GT = np.array([[0, 0, 1], [1, 2, 255]])
PRED = np.array([[0, 1, 1], [1, 1, 0]])


def test_confusion_matrix_by_hand():
    conf = confusion_matrix(PRED, GT, 3)
    want = np.zeros((4, 4), dtype=np.int64)  # [pred, gt], last column = ignored gt
    want[0, 0], want[1, 0], want[1, 1], want[1, 2], want[0, 3] = 1, 1, 2, 1, 1
    assert np.array_equal(conf, want)


def test_metrics_by_hand():
    ev = SemSegEvaluator(3)
    ev.update(PRED, GT)
    r = ev.compute()
    # class 0: tp 1, gt 2, pred 1 -> 1/2; class 1: tp 2, gt 2, pred 4 -> 2/4; class 2: 0/1
    assert r["IoU"] == pytest.approx([50.0, 50.0, 0.0])
    assert r["mIoU"] == pytest.approx(100 / 3)
    assert r["pAcc"] == pytest.approx(60.0)  # 3 of 5 labelled pixels
    assert r["fwIoU"] == pytest.approx(40.0)  # (0.5*2 + 0.5*2 + 0*1) / 5
    assert r["mAcc"] == pytest.approx(50.0)  # (1/2 + 2/2 + 0) / 3
    assert math.isnan(r["mIoU_seen"]) and r["num_seen"] == 0


def test_ignore_pixels_do_not_count_whatever_is_predicted():
    pred2 = PRED.copy()
    pred2[1, 2] = 2
    a, b = SemSegEvaluator(3), SemSegEvaluator(3)
    a.update(PRED, GT)
    b.update(pred2, GT)
    assert a.compute()["IoU"] == b.compute()["IoU"]
    gt16 = np.where(GT == 255, 65535, GT)
    c = SemSegEvaluator(3, ignore_index=65535)
    c.update(PRED, gt16)
    assert c.compute()["IoU"] == a.compute()["IoU"]


def test_class_without_ground_truth_left_out_even_if_predicted():
    ev = SemSegEvaluator(3)
    ev.update(np.array([[0, 0, 2, 2]]), np.array([[0, 0, 0, 0]]))
    r = ev.compute()
    assert r["IoU"][0] == pytest.approx(50.0)
    assert math.isnan(r["IoU"][1]) and math.isnan(r["IoU"][2])
    assert r["mIoU"] == pytest.approx(50.0)  # not (50 + 0) / 2


def test_seen_new_split():
    ev = SemSegEvaluator(3, seen=torch.tensor([True, True, False]))
    ev.update(PRED, GT)
    r = ev.compute()
    assert r["mIoU_seen"] == pytest.approx(50.0) and r["mIoU_new"] == pytest.approx(0.0)
    assert (r["num_seen"], r["num_new"]) == (2, 1) and r["seen"] == [True, True, False]
    only_seen_gt = SemSegEvaluator(3, seen=[True, True, False])
    only_seen_gt.update(np.array([[0, 1]]), np.array([[0, 1]]))
    assert math.isnan(only_seen_gt.compute()["mIoU_new"])  # no new class has ground truth
    with pytest.raises(ValueError, match="seen must have shape"):
        SemSegEvaluator(3, seen=[True, False])


def random_maps(seed, k=5, h=7, w=9):
    g = np.random.default_rng(seed)
    gt = g.integers(0, k, (h, w))
    gt[g.random((h, w)) < 0.2] = 255
    return g.integers(0, k, (h, w)), gt


def test_accumulation_equals_one_big_update_and_reset():
    pairs = [random_maps(s) for s in range(4)]
    many = SemSegEvaluator(5)
    for p, g in pairs:
        many.update(torch.from_numpy(p), torch.from_numpy(g))  # torch input too
    one = SemSegEvaluator(5)
    one.update(np.concatenate([p for p, _ in pairs], 1), np.concatenate([g for _, g in pairs], 1))
    assert np.array_equal(many.conf, one.conf)
    assert many.compute()["mIoU"] == pytest.approx(one.compute()["mIoU"])
    # the dataset-level matrix is not the mean of per-image mIoUs
    per_image = []
    for p, g in pairs:
        single = SemSegEvaluator(5)
        single.update(p, g)
        per_image.append(single.compute()["mIoU"])
    assert abs(np.mean(per_image) - many.compute()["mIoU"]) > 0.1
    many.reset()
    assert many.conf.sum() == 0


def test_bad_inputs_are_named():
    ev = SemSegEvaluator(3)
    with pytest.raises(ValueError, match="pred is"):
        ev.update(np.zeros((2, 3), int), np.zeros((3, 2), int))
    with pytest.raises(ValueError, match="pred has ids outside 0..2"):
        ev.update(np.full((2, 2), 3), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match=r"gt has ids \[7\]"):
        ev.update(np.zeros((2, 2), int), np.array([[0, 7], [255, 1]]))
    with pytest.raises(ValueError, match="argmax"):
        ev.update(np.zeros((2, 2), np.float32), np.zeros((2, 2), int))
    assert ev.conf.sum() == 0  # nothing half-added


def test_format_table():
    ev = SemSegEvaluator(3, seen=[True, True, False])
    ev.update(PRED, GT)
    text = format_table(ev.compute(), ["cat", "sofa, couch", "lamp"])
    assert "mIoU  33.33" in text and "(seen 2, new 1)" in text
    assert "sofa    50.00  seen" in text and "lamp     0.00  new" in text
    short = format_table(ev.compute(), ["cat", "sofa", "lamp"], max_rows=1)
    assert "... 2 more classes" in short and "lamp" not in short
    with pytest.raises(ValueError, match="3 per-class IoUs but 2"):
        format_table(ev.compute(), ["cat", "sofa"])


def _worker(rank, init, results):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    ev = SemSegEvaluator(5)
    p, g = random_maps(rank)
    ev.update(p, g)
    first, second = ev.compute(), ev.compute()  # reducing twice must not double-count
    results[rank] = (first["mIoU"], second["mIoU"], int(ev.conf.sum()))
    dist.destroy_process_group()


def test_compute_all_reduces_under_torch_distributed(tmp_path):
    results = mp.get_context("spawn").Manager().dict()
    mp.spawn(_worker, args=(f"file://{tmp_path / 'store'}", results), nprocs=2)
    both = SemSegEvaluator(5)
    for s in range(2):
        both.update(*random_maps(s))
    want = both.compute()["mIoU"]
    for rank in range(2):
        first, second, local = results[rank]
        assert first == pytest.approx(want) and second == pytest.approx(want)
        assert local == random_maps(rank)[0].size  # the local matrix is left untouched
