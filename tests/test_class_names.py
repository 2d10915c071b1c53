"""Shipped vocabularies, user vocabularies from the dataset folder, and the seen/new split."""
import json

import pytest
import torch

from ebseg_lite.data.vocabularies import load_class_names, read_class_file, seen_split
from ebseg_lite.vocabulary import synonyms


@pytest.mark.parametrize("name,k", [("coco_stuff_171", 171), ("ade20k_150", 150), ("pcontext_59", 59), ("voc_20", 20)])
def test_builtin_sizes_and_unique(name, k):
    names = load_class_names(name)
    assert len(names) == k
    assert len(set(names)) == k
    assert all(n == n.strip() and synonyms(n) for n in names)


def test_coco_order_matches_detectron2_ids():
    names = [synonyms(n)[0] for n in load_class_names("coco_stuff_171")]
    # things 0..79 in COCO order, then the 91 stuff classes in COCO-Stuff order
    assert names[0] == "person" and names[2] == "car" and names[79] == "toothbrush"
    assert names[80] == "banner" and names[84] == "building" and names[157] == "tree"
    assert names[161] == "wall" and names[170] == "wood"


def test_benchmark_order_spot_checks():
    ade = [synonyms(n)[0] for n in load_class_names("ade20k_150")]
    assert ade[:4] == ["wall", "building", "sky", "floor"] and ade[12] == "person" and ade[149] == "flag"
    pc = [synonyms(n)[0] for n in load_class_names("pcontext_59")]
    assert pc[0] == "aeroplane" and pc[36] == "person" and pc[58] == "wood"
    voc = [synonyms(n)[0] for n in load_class_names("voc_20")]
    assert voc[14] == "person" and voc[19] == "tv monitor"


def test_seen_split_counts_and_mask():
    seen, n_seen, n_new = seen_split(load_class_names("voc_20"))
    assert seen.dtype == torch.bool and seen.shape == (20,)
    assert (n_seen, n_new) == (20, 0)
    ade = load_class_names("ade20k_150")
    seen, n_seen, n_new = seen_split(ade)
    assert n_seen + n_new == 150 and n_seen == int(seen.sum())
    assert 60 <= n_seen <= 75  # the official split has 67; synonyms chosen here give a close count
    assert seen[0] and seen[1]  # wall, building are COCO classes
    assert not seen[ade.index("arcade machine")]
    _, pc_seen, _ = seen_split(load_class_names("pcontext_59"))
    assert 48 <= pc_seen <= 56  # official 51


def test_seen_split_with_own_training_vocabulary():
    seen, n_seen, n_new = seen_split(["cat, kitty", "sofa", "lamp"], train_names=["kitty", "couch, sofa"])
    assert seen.tolist() == [True, True, False] and (n_seen, n_new) == (2, 1)


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


def test_user_vocabulary_from_dataset_folder(tmp_path):
    folder = tmp_path / "pcontext459-d2"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match="classes.txt"):
        load_class_names("pcontext_459", data_root=tmp_path)
    (folder / "classes.txt").write_text("".join(f"class {i}\n" for i in range(459)))
    names = load_class_names("pcontext_459", data_root=tmp_path)
    assert len(names) == 459 and names[458] == "class 458"
    (folder / "classes.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match="2 classes but pcontext_459 has 459"):
        load_class_names("pcontext_459", data_root=tmp_path)


def test_user_vocabulary_json_and_env_root(tmp_path, monkeypatch):
    folder = tmp_path / "ADE20K_2021_17_01"
    folder.mkdir()
    (folder / "classes.json").write_text(json.dumps([f"c{i}" for i in range(847)]))
    monkeypatch.setenv("EBSEG_DATA", str(tmp_path))
    assert load_class_names("ade20k_847")[5] == "c5"


def test_unknown_vocabulary():
    with pytest.raises(KeyError, match="known"):
        load_class_names("cityscapes_19")
