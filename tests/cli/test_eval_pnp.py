"""``ebseg-lite eval --method pnp-ovss`` on toy scenes written as a folder dataset (shipped toy BLIP)."""
import json

import numpy as np
import pytest
from PIL import Image

from ebseg_lite.baselines.pnp_ovss.evaluate import evaluate_pnp
from ebseg_lite.cli.main import main
from ebseg_lite.data.datasets import FolderDataset
from ebseg_lite.toyworld import ToyWorld
from ebseg_lite.toyworld.toy_pnp import toy_pnp_ovss


def write_toy_folder(root, n=2):
    world = ToyWorld()
    ds = world.dataset(n, seed=99, split="test", size=64)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(n):
        Image.fromarray(ds[i]["image"].permute(1, 2, 0).numpy()).save(root / "images" / f"s{i}.png")
        Image.fromarray(ds[i]["label"].numpy().astype(np.uint8)).save(root / "labels" / f"s{i}.png")
    (root / "classes.txt").write_text("\n".join(world.class_names) + "\n")
    return world


def test_eval_pnp_ovss_reports_the_evaluators_numbers(tmp_path, capsys):
    world = write_toy_folder(tmp_path / "toy")
    out = tmp_path / "res.json"
    rc = main(["eval", "--dataset", f"folder:{tmp_path / 'toy'}", "--preset", "toy", "--method", "pnp-ovss",
               "--class-source", "gt", "--device", "cpu", "--out", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["method"] == "pnp-ovss" and res["class_source"] == "gt" and res["images"] == 2
    assert "image-level classes from: gt" in capsys.readouterr().out
    # the same segmenter run directly on the same files gives the same figures
    direct = evaluate_pnp(toy_pnp_ovss(), FolderDataset(tmp_path / "toy"), source="gt", progress=False,
                          seen=np.asarray(world.seen))
    assert res["mIoU"] == pytest.approx(direct["mIoU"]) and res["IoU"] == pytest.approx(direct["IoU"], nan_ok=True)
    assert res["mIoU_seen"] == pytest.approx(direct["mIoU_seen"], nan_ok=True)
