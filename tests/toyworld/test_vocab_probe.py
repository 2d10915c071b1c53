"""What the open vocabulary costs: the four settings score what they say (the training vocabulary on
seen-only scenes, then the new names added, then new classes in the scenes too, at the benchmark's share
and at equal draws), and the error kinds put each wrong instance under the kind of the name it took."""
import types

import numpy as np
import pytest
import torch

from ebseg_lite.eval.metrics import SemSegEvaluator
from ebseg_lite.toyworld import ToyWorld
from ebseg_lite.toyworld.vocab_probe import KINDS, SETTINGS, class_kinds, error_kinds, open_vocabulary_cost

W = ToyWorld()


def test_class_kinds_follow_the_split():
    kinds = class_kinds(W)
    idx = W.class_names.index
    assert [KINDS[int(kinds[idx(n)])] for n in ("red dotted", "grass", "purple dotted", "red striped", "wood")] == \
        ["seen thing", "seen stuff", "new thing", "new thing", "new stuff"]
    assert torch.bincount(kinds, minlength=5).tolist() == [0, 16, 4, 14, 2]


class RuleModel:
    """A stand-in predictor that labels each pixel by a rule on its true class: a new class's pixels
    get ``new_to`` (a seen name); ``seen_to`` = (a seen class, the new name it takes when that name is in
    the vocabulary). Images are looked up among the scenes it was given."""

    def __init__(self, datasets, *, new_to: str, seen_to):
        self.truth = {}
        for data in datasets:
            for i in range(len(data)):
                s = data.scene(i)
                self.truth[s.image.tobytes()] = (torch.from_numpy(s.label.copy()), s)
        self.new_to, self.seen_to = new_to, seen_to

    def resolve_seen(self, names, seen=None):
        return torch.as_tensor(seen, dtype=torch.bool)

    def encode(self, image, keep_intermediates=False):
        label, scene = self.truth[image.permute(1, 2, 0).contiguous().numpy().tobytes()]
        return types.SimpleNamespace(label=label, scene=scene)

    def names_of(self, label, names):
        """(H, W) world ids -> ids in ``names`` under the rule."""
        lut = []
        for c, n in enumerate(W.class_names):
            if not W.seen[c]:
                n = self.new_to
            elif n == self.seen_to[0] and self.seen_to[1] in names:
                n = self.seen_to[1]
            lut.append(names.index(n))
        return torch.tensor(lut)[label]

    def classify(self, enc, names, seen=None, **kw):
        return types.SimpleNamespace(labels=self.names_of(enc.label, list(names)))


def test_open_vocabulary_cost_adds_the_new_names_then_the_new_regions():
    n, seed = 4, 99
    seen_scenes = W.dataset(n, seed=seed, split="train", size=128)
    test_scenes = W.dataset(n, seed=seed, split="benchmark", size=128)
    equal_scenes = W.dataset(n, seed=seed, split="test", size=128)
    present = [W.class_names[c] for i in range(n) for c in np.unique(seen_scenes.scene(i).label)]
    victim = next(c for c in present if c.split()[0] in ("red", "green", "blue", "yellow", "cyan") and len(c.split()) == 2)
    taker = f"purple {victim.split()[1]}"                    # a new name one word from it
    in_test = [W.class_names[c] for i in range(n) for c in np.unique(equal_scenes.scene(i).label)]
    new_to = next(c for c in in_test if W.seen[W.class_names.index(c)])   # a seen class the test scenes show
    model = RuleModel([seen_scenes, test_scenes, equal_scenes], new_to=new_to, seen_to=(victim, taker))
    r = open_vocabulary_cost(model, {"rule": {}}, n_scenes=n, seed=seed)["rule"]
    assert list(r) == list(SETTINGS)
    assert r["seen names, seen scenes"] == 100.0             # the rule is right among the seen names
    n_present = len(set(present))
    assert r["all names, seen scenes"] == pytest.approx(100 * (n_present - 1) / n_present)  # the victim's IoU is 0
    for setting, data in (("all names, benchmark scenes", test_scenes), ("all names, equal draws", equal_scenes)):
        ev = SemSegEvaluator(len(W.class_names), seen=np.array(W.seen))
        for i in range(n):
            label = torch.from_numpy(data.scene(i).label.copy())
            ev.update(model.names_of(label, W.class_names), label)
        assert r[setting] == pytest.approx(ev.compute()["mIoU_seen"])
    assert r["all names, equal draws"] < 100                 # the new regions are false positives of new_to


def test_error_kinds_put_each_instance_under_the_kind_of_its_name():
    n = 3
    data = W.dataset(n, seed=98, split="test", size=128)
    scenes = [data.scene(i) for i in range(n)]
    k = len(W.class_names)
    wood = W.class_names.index("wood")

    class Stand:
        """Masks = the ground-truth instances; mode "right" names each one right, mode "wood" calls
        everything wood."""
        def encode(self, image, keep_intermediates=False):
            s = next(s for s in scenes if torch.equal(torch.from_numpy(s.image).permute(2, 0, 1), image))
            return types.SimpleNamespace(masks=torch.from_numpy(s.instances).float() * 20 - 10, labels=s.instance_labels,
                                         padded_size=(128, 128), input_size=(128, 128), orig_size=(128, 128))

        def classify(self, enc, names, seen=None, mode=None):
            lab = torch.from_numpy(enc.labels) if mode == "right" else torch.full((len(enc.labels),), wood)
            probs = torch.nn.functional.one_hot(lab, k + 1).float()
            return types.SimpleNamespace(class_probs=probs)

    r = error_kinds(Stand(), {"right": {"mode": "right"}, "wood": {"mode": "wood"}}, n_scenes=n)
    assert r["right"]["seen -> right"] == 100 and r["right"]["new -> right"] == 100
    labels = [int(c) for s in scenes for c in s.instance_labels]
    new = [c for c in labels if not W.seen[c]]
    assert r["wood"]["seen -> new stuff"] == 100
    assert r["wood"]["new -> right"] == pytest.approx(100 * new.count(wood) / len(new))
    assert r["wood"]["new -> new stuff"] == pytest.approx(100 - r["wood"]["new -> right"])
    for mode in r.values():                                  # each group of five sums to 100
        for grp in ("seen", "new"):
            assert sum(mode[f"{grp} -> {kind}"] for kind in KINDS) == pytest.approx(100)


def test_seen_sharing_a_word_counts_synonyms_and_hyphens():
    from ebseg_lite.toyworld.vocab_probe import seen_sharing_a_word
    names = ["chair", "swivel chair", "car, auto", "auto-rickshaw", "sky", "sea"]
    seen = [True, False, True, False, True, False]
    assert seen_sharing_a_word(names, seen) == ["chair", "car, auto"]
    toy = seen_sharing_a_word(W.class_names, W.seen)
    assert len(toy) == 16 and all(W.class_names.index(n) < W.num_things for n in toy)
