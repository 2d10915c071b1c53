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


def test_best_query_is_the_highest_iou_not_the_largest_overlap():
    from ebseg_lite.toyworld.probe import best_queries
    inst = torch.zeros(2, 4, 4, dtype=torch.bool)
    inst[0, :2, :2] = True                     # 4 pixels
    inst[1, 2:, :] = True                      # 8 pixels
    m = torch.full((3, 4, 4), -5.0)
    m[0] = 5.0                                 # covers everything: overlap 4 with instance 0 but IoU 4/16
    m[1, :2, :2] = 5.0                         # exactly instance 0
    m[2, 2:, :3] = 5.0                         # 6 of instance 1's 8 pixels: IoU 0.75 (query 0: 0.5)
    assert best_queries(m, inst).tolist() == [1, 2]


def test_majority_label_counts_pixels_and_void_can_win():
    from ebseg_lite.toyworld.probe import majority_labels
    labels = torch.tensor([[0, 0, 1, 1],
                           [2, 2, 2, 1],
                           [3, 3, 3, 3],
                           [3, 3, 0, 0]])      # 3 = void for a 3-class vocabulary
    inst = torch.zeros(3, 4, 4, dtype=torch.bool)
    inst[0, :2] = True                         # 0: 2 px, 1: 3 px, 2: 3 px -> ties broken towards the first max
    inst[1, 1:3, :3] = True                    # 2: 3 px, void: 3 px
    inst[2, 3, 2:] = True                      # 0: 2 px
    inst[0, 1, 0] = False                      # now 0: 2, 1: 3, 2: 2 -> 1
    inst[1, 2, 2] = False                      # 2: 3, void: 2 -> 2
    assert majority_labels(labels, inst, 3).tolist() == [1, 2, 0]
    inst[1, 1, :] = False                      # only void left under instance 1
    assert majority_labels(labels, inst, 3)[1].item() == 3


def test_query_vs_map_scores_the_right_query_and_the_map_separately(monkeypatch):
    """A stand-in predictor whose masks are the ground-truth instances plus one duplicate of the
    first thing carrying a wrong class: the query-level accuracy is perfect, the map loses exactly
    the duplicated instance (the duplicate is more confident), and restricting to seen names keeps
    the seen instances right."""
    from ebseg_lite.modeling.balance import semantic_inference
    from ebseg_lite.toyworld import ToyWorld
    from ebseg_lite.toyworld.probe import query_vs_map
    w = ToyWorld()
    data = w.dataset(3, seed=98, split="test", size=128)
    scenes = [data.scene(i) for i in range(3)]
    k = len(w.class_names)

    class Stand:
        def encode(self, image, keep_intermediates=False):
            s = next(s for s in scenes if torch.equal(torch.from_numpy(s.image).permute(2, 0, 1), image))
            gt = torch.from_numpy(s.instances).float() * 20 - 10
            lab = torch.from_numpy(s.instance_labels)
            dup = len(lab) - 1                                   # the top object, duplicated
            masks = torch.cat([gt, gt[dup:dup + 1]])
            probs = torch.nn.functional.one_hot(lab, k).float() * 0.6
            wrong = torch.zeros(1, k)
            wrong[0, (int(lab[dup]) + 1) % k] = 0.9
            return types.SimpleNamespace(masks=masks, probs=torch.cat([probs, wrong]), padded_size=(128, 128),
                                         input_size=(128, 128), orig_size=(128, 128))

        def classify(self, enc, names, seen=None, **kw):
            cp = torch.cat([enc.probs, 1 - enc.probs.sum(-1, keepdim=True)], -1)
            labels = semantic_inference(enc.probs, enc.masks).argmax(0)
            return types.SimpleNamespace(class_probs=cp, labels=labels)

    r = query_vs_map(Stand(), {"X": {}}, n_scenes=3)["X"]
    seen = [[bool(w.seen[int(c)]) for c in s.instance_labels] for s in scenes]
    n_seen = sum(sum(x) for x in seen)
    n_new = sum(len(x) - sum(x) for x in seen)
    dup_seen = sum(x[-1] for x in seen)                          # duplicated instances that are seen
    assert r["query_seen"] == 100 and r["query_new"] == 100 and r["query_seen_names"] == 100
    assert r["map_seen"] == pytest.approx(100 * (n_seen - dup_seen) / n_seen)
    assert r["map_new"] == pytest.approx(100 * (n_new - (3 - dup_seen)) / n_new)
