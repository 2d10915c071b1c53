"""The mask oracle: each query gets the ground-truth class covering most of its mask, so perfect
masks give 100 mIoU, and a mask split over two classes is credited to the larger one only."""
import types

import pytest
import torch

from ebseg_lite.toyworld.probe import mask_oracle_miou, oracle_class_probs


def test_oracle_class_is_the_majority_under_the_mask():
    label = torch.tensor([[0, 0, 1, 1],
                          [0, 0, 1, 1],
                          [2, 2, 2, 255],
                          [2, 2, 2, 255]])
    on, off = 5.0, -5.0
    m = torch.full((3, 4, 4), off)
    m[0, :2, :3] = on           # 4 pixels of class 0, 2 of class 1 -> class 0
    m[1, 2:, 3] = on            # only ignored pixels -> no class (zero row)
    m[2, 1:, 1:] = on           # class 0: 1, class 1: 1, class 2: 4 (+ 2 ignored) -> class 2
    probs = oracle_class_probs(m, label, 3)
    assert torch.equal(probs, torch.tensor([[1., 0, 0], [0, 0, 0], [0, 0, 1]]))


class _PerfectMasks:
    """A stand-in predictor whose masks are the ground-truth regions (as logits) of the item asked for."""

    def __init__(self, dataset, extra_query: bool):
        self.dataset, self.extra = dataset, extra_query

    def encode(self, image, keep_intermediates=False):
        label = next(it["label"] for it in (self.dataset[i] for i in range(len(self.dataset)))
                     if torch.equal(it["image"], image))
        ids = [c for c in label.unique().tolist() if c != 255]
        masks = torch.stack([(label == c).float() * 20 - 10 for c in ids])
        if self.extra:                                   # a query over everything: credited to the largest class
            masks = torch.cat([masks, torch.full((1, *label.shape), 10.0)])
        h, w = label.shape
        return types.SimpleNamespace(masks=masks, padded_size=(h, w), input_size=(h, w), orig_size=(h, w))


class _Data:
    class_names = ["a", "b", "c", "d"]
    ignore_value = 255

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.items = []
        for i in range(3):
            label = torch.zeros(8, 8, dtype=torch.long)
            label[:, 4:] = 1 + i % 3                     # classes 0 and 1..3 present
            self.items.append({"image": torch.randint(0, 255, (3, 8, 8), generator=g, dtype=torch.uint8), "label": label})

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_perfect_masks_reach_100_and_a_spilling_query_costs():
    data = _Data()
    seen = torch.tensor([True, True, False, False])
    res = mask_oracle_miou(_PerfectMasks(data, extra_query=False), data, seen=seen)
    assert res == {"mIoU": 100.0, "mIoU_seen": 100.0, "mIoU_new": 100.0}
    worse = mask_oracle_miou(_PerfectMasks(data, extra_query=True), data, seen=seen)
    # the whole-image query goes to class 0 (4 columns of 8, ties broken to the first), adding its
    # sigmoid(10) on the other half: class 0 then wins everywhere, so classes 1..3 get IoU 0
    assert worse["mIoU"] == pytest.approx(100 * (0.5 + 0 + 0 + 0) / 4)
