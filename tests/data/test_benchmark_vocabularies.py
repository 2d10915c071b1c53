"""The shipped official benchmark vocabularies: exact prompt strings, exact seen masks, provenance.

Expected values were read from slonetime/EBSeg f61977d (register_*.py, class_names/*.txt,
EBSeg.py's overlap rule) and detectron2's builtin_meta.py (ADE20K-150), not from the JSON files.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import ebseg_lite.data.benchmarks as bm
from ebseg_lite.data.benchmarks import BENCHMARK_VOCABULARIES, benchmark_vocabulary

EBSEG_COMMIT = "f61977d89c49d6197aa35a2689eb347919cdad43"
REFERENCE_NPZ = Path(__file__).resolve().parents[3] / "shared" / "reference" / "ebseg_b_public.npz"

# (K, seen) as the official code computes them (paper tables 4 and 6 use these splits)
COUNTS = {"voc_20": (20, 20), "pcontext_59": (59, 51), "pcontext_459": (459, 94),
          "ade20k_150": (150, 67), "ade20k_847": (847, 115), "coco_stuff_171": (171, 171)}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_counts_and_types(name):
    v = benchmark_vocabulary(name)
    k, n_seen = COUNTS[name]
    assert len(v) == k and len(v.display) == k and len(v.synonyms) == k
    assert v.seen.dtype == torch.bool and v.seen.shape == (k,)
    assert (v.num_seen, v.num_new) == (n_seen, k - n_seen)
    assert int(v.seen.sum()) == n_seen
    assert len(set(v.names)) == k  # no duplicated prompt
    assert all(n == n.strip() and n for n in v.names)  # stripped, as get_labelset_from_dataset does


def test_seen_masks_of_named_classes():
    ade = benchmark_vocabulary("ade20k_150")
    # the 12 classes where a rule on hand-made synonyms went wrong, plus a few anchors
    expect = {25: ("house", False), 59: ("stairway, staircase", False), 63: ("blind, screen", False),
              72: ("palm, palm tree", True), 82: ("light", False), 103: ("ship", False),
              116: ("minibike, motorbike", False), 119: ("ball", False), 125: ("pot", True),
              126: ("animal", True), 142: ("plate", True), 147: ("glass, drinking glass", True),
              0: ("wall", True), 78: ("arcade machine", False), 149: ("flag", False)}
    for i, (name, seen) in expect.items():
        assert (ade.names[i], bool(ade.seen[i])) == (name, seen), i
    pc = benchmark_vocabulary("pcontext_59")
    expect = {32: ("light", False), 37: ("plate", True), 40: ("road", False), 44: ("sidewalk", False),
              58: ("wood", False), 3: ("bedclothes", False), 49: ("diningtable", True)}
    for i, (name, seen) in expect.items():
        assert (pc.names[i], bool(pc.seen[i])) == (name, seen), i
    # bag, bedclothes, computer case, lamp, street, sidewalk, sign, wood piece have no COCO synonym
    # (track is seen through "railroad")
    assert [i for i, s in enumerate(pc.seen_flags) if not s] == [1, 3, 18, 32, 40, 44, 45, 58]
    a847 = benchmark_vocabulary("ade20k_847")
    assert [i for i, s in enumerate(a847.seen_flags[:40]) if not s] == [23, 26, 29, 31, 32, 34, 37, 39]
    pc459 = benchmark_vocabulary("pcontext_459")
    assert pc459.seen_flags[:9] == (False, True, False, False, False, False, False, False, False)


def test_prompt_strings_are_the_registered_stuff_classes():
    voc = benchmark_vocabulary("voc_20")
    assert voc.names[10] == "diningtable" and voc.names[15] == "pottedplant" and voc.names[19] == "tv"
    coco = benchmark_vocabulary("coco_stuff_171")
    assert coco.names[0] == "person"  # not a synonym line such as "person, people, man"
    assert coco.names[60] == "dining table" and coco.names[84] == "building-other"
    assert coco.names[170] == "wood"
    ade = benchmark_vocabulary("ade20k_150")
    assert ade.names[:9] == ("wall", "building", "sky", "floor", "tree", "ceiling", "road, route",
                             "bed", "window")  # detectron2 lists "window " with a trailing space
    assert ade.display[6] == "road"
    pc = benchmark_vocabulary("pcontext_59")
    assert pc.names[54] == "tvmonitor" and pc.names[39] == "pottedplant"
    a847 = benchmark_vocabulary("ade20k_847")
    assert a847.names[1] == "building, edifice"
    assert a847.names[846] == "adding machine, totalizer, totaliser"
    pc459 = benchmark_vocabulary("pcontext_459")
    assert pc459.names[0] == "accordion" and pc459.names[458] == "wool"


def test_seen_mask_follows_the_official_rule_on_raw_synonyms():
    # EBSeg.py: per line, line.split(':')[1].split('\n')[0].split(',') -- tokens are not stripped
    coco = benchmark_vocabulary("coco_stuff_171")
    wall_wood = coco.names.index("wall-wood")
    assert coco.synonyms[wall_wood] == ("wall-wood", "wood wall", " wall wood")
    train = {s for syns in coco.synonyms for s in syns}  # train and test files are identical
    for name in BENCHMARK_VOCABULARIES:
        v = benchmark_vocabulary(name)
        rule = tuple(not train.isdisjoint(syns) for syns in v.synonyms)
        assert rule == v.seen_flags, name


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_sources_are_recorded(name):
    v = benchmark_vocabulary(name)
    assert v.sources["seen"]["commit"] == EBSEG_COMMIT
    want = "facebookresearch/detectron2" if name == "ade20k_150" else "slonetime/EBSeg"
    assert v.sources["prompt"]["repo"] == want and len(v.sources["prompt"]["commit"]) == 40


@pytest.mark.skipif(not REFERENCE_NPZ.is_file(), reason="the shared official reference is not here")
def test_agrees_with_what_the_official_model_was_given():
    # ebseg_b_public.npz was produced by running the official code: its class names and seen mask
    # are the ones the official model used on ADE20K-150
    ref = np.load(REFERENCE_NPZ)
    ade = benchmark_vocabulary("ade20k_150")
    assert json.loads(str(ref["class_names"])) == list(ade.names)
    assert ref["seen"].astype(bool).tolist() == list(ade.seen_flags)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(KeyError, match="ade20k_150.*voc_20"):
        benchmark_vocabulary("cityscapes_19")


def test_seen_is_a_fresh_copy():
    v = benchmark_vocabulary("voc_20")
    v.seen[0] = False
    assert bool(benchmark_vocabulary("voc_20").seen[0])


def test_damaged_file_is_refused(tmp_path, monkeypatch):
    doc = json.loads((bm._DIR / "voc_20.json").read_text())
    doc["classes"] = doc["classes"][:19]
    (tmp_path / "voc_20.json").write_text(json.dumps(doc))
    monkeypatch.setattr(bm, "_DIR", tmp_path)
    bm._load.cache_clear()
    try:
        with pytest.raises(ValueError, match="ids 0..19"):
            benchmark_vocabulary("voc_20")
    finally:
        bm._load.cache_clear()


def test_the_predictors_seen_rule_gives_the_official_masks(tiny_model):
    # resolve_seen is what eval.loop, sliding windows, the eval CLI and classify use when seen=None
    for name in ("ade20k_150", "pcontext_59", "ade20k_847"):
        v = benchmark_vocabulary(name)
        assert torch.equal(tiny_model.resolve_seen(list(v.names)), v.seen), name
    # a user's list: the synonym rule against FC-CLIP's COCO-Stuff synonyms
    assert tiny_model.resolve_seen(["house", "kitty", "kitten"]).tolist() == [True, True, False]
