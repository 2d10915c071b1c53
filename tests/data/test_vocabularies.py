"""Vocabularies by name, users' class files, and the two seen rules (official mask vs synonym rule)."""
import json

import pytest
import torch

from ebseg_lite.data.benchmarks import benchmark_vocabulary
from ebseg_lite.data.vocabularies import (load_class_names, official_benchmark, read_class_file, seen_for,
                                          seen_split, training_synonyms)

# (K, seen) of the official evaluation (EBSeg.py's overlap maps; paper tables 4 and 6)
OFFICIAL = {"voc_20": (20, 20), "pcontext_59": (59, 51), "pcontext_459": (459, 94), "ade20k_150": (150, 67),
            "ade20k_847": (847, 115), "coco_stuff_171": (171, 171)}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_benchmarks_load_the_official_prompts_and_mask(name):
    names = load_class_names(name)
    k, n_seen = OFFICIAL[name]
    assert len(names) == k and names == list(benchmark_vocabulary(name).names)
    seen, num_seen, num_new = seen_split(names)
    assert (num_seen, num_new) == (n_seen, k - n_seen)
    assert torch.equal(seen, benchmark_vocabulary(name).seen)
    assert official_benchmark(names) == name


def test_large_benchmarks_need_no_file_in_the_dataset_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("EBSEG_DATA", str(tmp_path))  # an empty data root: nothing to read there
    assert load_class_names("ade20k_847")[3] == "tree"
    assert load_class_names("pcontext_459")[1] == "aeroplane"


def test_order_matches_detectron2_ids():
    coco = load_class_names("coco_stuff_171")
    assert coco[0] == "person" and coco[2] == "car" and coco[79] == "toothbrush"
    assert coco[80] == "banner" and coco[84] == "building-other" and coco[157] == "tree"
    assert coco[161] == "wall-other" and coco[170] == "wood"  # stuff id i -> 80 + i - 92: 173, 182
    ade = load_class_names("ade20k_150")
    assert ade[:4] == ["wall", "building", "sky", "floor"] and ade[12] == "person" and ade[149] == "flag"
    pc = load_class_names("pcontext_59")
    assert pc[0] == "aeroplane" and pc[36] == "person" and pc[58] == "wood"
    voc = load_class_names("voc_20")
    assert voc[14] == "person" and voc[19] == "tv" and voc[10] == "diningtable"


def test_official_masks_where_the_synonym_rule_would_disagree():
    ade = load_class_names("ade20k_150")
    seen = seen_for(ade)
    # official (FC-CLIP's lists): house -> "house exterior" (new), ship (new), palm tree (seen), pot (seen)
    assert [bool(seen[ade.index(n)]) for n in ("house", "ship", "palm, palm tree", "pot", "light")] == \
        [False, False, True, True, False]
    # the same strings treated as a user's own list go through the synonym rule instead
    own = seen_for(list(ade[:-1]))  # one class fewer: no longer the official vocabulary
    assert bool(own[ade.index("house")]) is True  # "house" is one of FC-CLIP's COCO training synonyms


def test_a_users_list_keeps_the_synonym_rule():
    # FC-CLIP's COCO-Stuff lists: "kitty" is a synonym of cat, "sofa" of couch; no "kitten", no "television"
    seen, n_seen, n_new = seen_split(["cat, kitty", "kitten", "sofa, lounge", "television", "lamp", "road, route"])
    assert seen.tolist() == [True, False, True, False, False, True] and (n_seen, n_new) == (3, 3)
    train = training_synonyms(load_class_names("coco_stuff_171"))
    assert {"person", "people", "kitty", "sofa", "wall wood"} <= train and " wall wood" not in train


def test_seen_split_with_own_training_vocabulary():
    seen, n_seen, n_new = seen_split(["cat, kitty", "sofa", "lamp"], train_names=["kitty", "couch, sofa"])
    assert seen.tolist() == [True, True, False] and (n_seen, n_new) == (2, 1)
    # an official benchmark against another training vocabulary: the synonym rule, not the mask
    seen = seen_for(load_class_names("voc_20"), ["person", "dog"])
    assert seen.nonzero().flatten().tolist() == [11, 14]


def test_read_class_file_formats(tmp_path):
    txt = tmp_path / "a.txt"
    txt.write_text("# comment\n1:wall,walls\n\nroad, route\n")
    assert read_class_file(txt) == ["wall,walls", "road, route"]
    js = tmp_path / "b.json"
    js.write_text(json.dumps([{"name": "b", "trainId": 1}, {"name": "a", "trainId": 0}]))
    assert read_class_file(js) == ["a", "b"]
    dup = tmp_path / "c.txt"
    dup.write_text("cat\ncat\n")
    with pytest.raises(ValueError, match="c.txt.*duplicate"):
        read_class_file(dup)
    with pytest.raises(FileNotFoundError, match="d.txt"):
        read_class_file(tmp_path / "d.txt")


def test_unknown_vocabulary_lists_the_known_ones():
    with pytest.raises(KeyError, match="ade20k_847.*voc_20"):
        load_class_names("cityscapes_19")
