"""Benchmark layouts, the folder dataset and bad-data handling, on tiny datasets built in tmp_path."""
import numpy as np
import pytest
import torch
from PIL import Image

from fixture_data import label_array, make_folder, write_image, write_label

from ebseg_lite.data.benchmarks import benchmark_vocabulary
from ebseg_lite.data.datasets import BENCHMARKS, FolderDataset, build_dataset, resolve_data_root

K_OF = {"coco_stuff_171": 171, "ade20k_150": 150, "ade20k_847": 847, "pcontext_59": 59,
        "pcontext_459": 459, "voc_20": 20}


def make_benchmark(root, name, n=2, h=6, w=8):
    spec = BENCHMARKS[name]
    k = K_OF[spec.vocabulary]  # no class file: every benchmark's names ship with the package
    labels = []
    for i in range(n):
        write_image(root / spec.image_dir / f"img{i}.jpg", h, w, seed=i)
        lab = label_array(h, w, k, spec.ignore_value, seed=i)
        lab[1, 1] = k - 1  # the highest valid id must survive reading
        write_label(root / spec.label_dir / f"img{i}{spec.label_ext}", lab)
        labels.append(lab)
    return spec, labels


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_layout_reads(tmp_path, name):
    spec, labels = make_benchmark(tmp_path, name)
    if spec.shared_image_dir:  # VOC's JPEGImages also holds images of other splits: not an error
        write_image(tmp_path / spec.image_dir / "other_split.jpg", 4, 4)
    ds = build_dataset(name, root=tmp_path)
    assert len(ds) == 2 and ds.num_skipped == 0
    item = ds[1]
    assert item["image"].shape == (3, 6, 8) and item["image"].dtype == torch.uint8
    assert item["label"].shape == (6, 8) and item["label"].dtype == torch.int64
    assert torch.equal(item["label"], torch.from_numpy(labels[1].astype(np.int64)))
    assert item["label"][0, 0] == spec.ignore_value == item["ignore_value"]
    assert ds.class_names == list(benchmark_vocabulary(spec.vocabulary).names)  # the official prompts
    assert item["label"][1, 1] == K_OF[spec.vocabulary] - 1
    assert item["file_name"].endswith("img1.jpg") and len(item["class_names"]) == K_OF[spec.vocabulary]


def test_tif_labels_keep_16_bit_ids(tmp_path):
    make_benchmark(tmp_path, "ade20k_847")
    lab = build_dataset("ade20k_847", root=tmp_path)[0]["label"]
    assert lab.max() == 65535 and lab[1, 1] == 846  # neither fits in 8 bits


def test_data_root_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("EBSEG_DATA", raising=False)
    monkeypatch.delenv("DETECTRON2_DATASETS", raising=False)
    with pytest.raises(RuntimeError, match="EBSEG_DATA"):
        resolve_data_root()
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "d2"))
    assert resolve_data_root() == tmp_path / "d2"
    monkeypatch.setenv("EBSEG_DATA", str(tmp_path / "eb"))
    assert resolve_data_root() == tmp_path / "eb"
    assert resolve_data_root(tmp_path / "arg") == tmp_path / "arg"
    make_benchmark(tmp_path / "eb", "pcontext_59")
    assert len(build_dataset("pcontext_59")) == 2


def test_folder_dataset(tmp_path):
    arrays = make_folder(tmp_path)
    ds = FolderDataset(tmp_path)
    assert len(ds) == 2 and ds.class_names == ["cat", "sofa, couch", "floor"]
    item = ds[0]
    assert torch.equal(item["image"], torch.from_numpy(arrays[0]).permute(2, 0, 1))  # PNG is lossless
    assert [it["file_name"][-6:] for it in ds] == ["p0.png", "p1.png"]  # iteration stops at the end
    assert ds[-1]["file_name"].endswith("p1.png")
    with pytest.raises(IndexError):
        ds[2]
    assert item["label"][0, 0] == 255 and set(item["label"].unique().tolist()) <= {0, 1, 2, 255}


def test_palette_label_keeps_indices(tmp_path):
    make_folder(tmp_path, n=1)
    lab = Image.fromarray(np.array([[0, 1, 2, 255, 0, 1, 2]] * 5, dtype=np.uint8), mode="P")
    lab.putpalette([200, 10, 10] * 256)
    lab.save(tmp_path / "labels" / "p0.png")
    assert FolderDataset(tmp_path)[0]["label"][0].tolist() == [0, 1, 2, 255, 0, 1, 2]


@pytest.mark.parametrize("mode", ["raise", "skip"])
def test_missing_folders_always_raise(tmp_path, mode):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        FolderDataset(tmp_path / "nowhere", on_error=mode)
    make_folder(tmp_path)
    (tmp_path / "classes.txt").unlink()
    with pytest.raises(FileNotFoundError, match="classes.txt"):
        FolderDataset(tmp_path, on_error=mode)
    with pytest.raises(FileNotFoundError, match="ADEChallengeData2016"):
        build_dataset("ade20k_150", root=tmp_path, on_error=mode)


def test_missing_label_folder_named(tmp_path):
    make_folder(tmp_path)
    for p in (tmp_path / "labels").iterdir():
        p.unlink()
    (tmp_path / "labels").rmdir()
    with pytest.raises(FileNotFoundError, match="label folder .*labels"):
        FolderDataset(tmp_path)


def test_image_without_label(tmp_path):
    make_folder(tmp_path, n=3)
    (tmp_path / "labels" / "p1.png").unlink()
    with pytest.raises(ValueError, match=r"p1\.png: no label"):
        FolderDataset(tmp_path)
    with pytest.warns(UserWarning, match="p1"):
        ds = FolderDataset(tmp_path, on_error="skip")
    assert len(ds) == 2 and ds.num_skipped == 1 and "p1.png" in ds.skipped[0][0]


def test_voc_label_without_image(tmp_path):
    spec, _ = make_benchmark(tmp_path, "voc_20", n=3)
    (tmp_path / spec.image_dir / "img2.jpg").unlink()
    with pytest.raises(ValueError, match=r"img2\.png: no image"):
        build_dataset("voc_20", root=tmp_path)
    with pytest.warns(UserWarning):
        ds = build_dataset("voc_20", root=tmp_path, on_error="skip")
    assert len(ds) == 2 and ds.num_skipped == 1


def _corrupt(tmp_path, case):
    """Break p1 of a 3-item folder dataset in one of three ways."""
    make_folder(tmp_path, n=3)
    if case == "unreadable":
        (tmp_path / "images" / "p1.png").write_bytes(b"not a png")
        return r"p1\.png: cannot read it"
    if case == "id":
        lab = label_array(5, 7, 3, 255, seed=1)
        lab[2, 3] = 7  # the vocabulary has 3 classes
        write_label(tmp_path / "labels" / "p1.png", lab)
        return r"p1\.png.*\[7\] are outside the vocabulary 0\.\.2"
    write_label(tmp_path / "labels" / "p1.png", label_array(4, 7, 3, 255))
    return r"p1\.png: image is \(5, 7\).*\(4, 7\)"


@pytest.mark.parametrize("case", ["id", "size", "unreadable"])
def test_bad_content_raise(tmp_path, case):
    pattern = _corrupt(tmp_path, case)
    ds = FolderDataset(tmp_path)  # contents are checked when read ...
    ds[0]
    with pytest.raises(ValueError, match=pattern):
        ds[1]
    with pytest.raises(ValueError, match=pattern):  # ... or all at once with scan=True
        FolderDataset(tmp_path, scan=True)


@pytest.mark.parametrize("case", ["id", "size", "unreadable"])
def test_bad_content_skip(tmp_path, case):
    _corrupt(tmp_path, case)
    with pytest.warns(UserWarning, match="p1"):
        ds = FolderDataset(tmp_path, on_error="skip", scan=True)
    assert len(ds) == 2 and ds.num_skipped == 1
    assert [ds[i]["file_name"][-6:] for i in range(2)] == ["p0.png", "p2.png"]
    lazy = FolderDataset(tmp_path, on_error="skip")
    assert len(lazy) == 3 and lazy.num_skipped == 0
    with pytest.warns(UserWarning, match="p1"):
        item = lazy[1]
    assert item["file_name"].endswith("p2.png") and lazy.num_skipped == 1


def test_on_error_value_checked(tmp_path):
    make_folder(tmp_path)
    with pytest.raises(ValueError, match="on_error"):
        FolderDataset(tmp_path, on_error="ignore")
