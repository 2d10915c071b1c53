"""Evaluation under torch.distributed (two gloo processes) equals a one-process run."""
import json
import os
import socket

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image

from ebseg_lite.builder import build_model
from ebseg_lite.cli.main import main
from ebseg_lite.data.datasets import BENCHMARKS, build_dataset
from ebseg_lite.eval.loop import evaluate

H, W, N_IMAGES = 40, 50, 3  # odd count: rank 0 takes images 0 and 2, rank 1 image 1


def make_ade(root):
    """Three ADE20K-150 items whose label layouts differ, so a lost or doubled image changes the IoUs."""
    spec = BENCHMARKS["ade20k_150"]
    (root / spec.image_dir).mkdir(parents=True)
    (root / spec.label_dir).mkdir(parents=True)
    for i in range(N_IMAGES):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (H, W, 3), dtype=np.uint8)).save(
            root / spec.image_dir / f"a{i}.jpg")
        lab = np.full((H, W), 2, np.uint8)
        lab[: H * (i + 1) // 4] = 0
        lab[:, : 5 * i] = 1 + 2 * i  # classes 1 (none), 3, 5
        lab[0, 0] = 255
        Image.fromarray(lab).save(root / spec.label_dir / f"a{i}.png")


class Recording:
    """A dataset wrapper that remembers which items were read."""

    def __init__(self, ds):
        self.ds, self.read = ds, []

    def __getattr__(self, name):
        return getattr(self.ds, name)

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        self.read.append(i)
        return self.ds[i]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_args(root, out):
    return ["eval", "--dataset", "ade20k_150", "--data-root", str(root), "--preset", "tiny", "--checkpoint", "none",
            "--device", "cpu", "--sliding", "--window", "64", "--out", str(out)]


def _worker(rank, root, ports, outdir):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(ports[0]), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    # 1. evaluate() inside a process group started by the caller
    dist.init_process_group("gloo", rank=rank, world_size=2)
    ds = Recording(build_dataset("ade20k_150", root))
    res = evaluate(build_model("tiny", seed=0), ds, progress=False)
    dist.destroy_process_group()
    (outdir / f"direct{rank}.json").write_text(json.dumps({"res": res, "read": ds.read}))
    # 2. the command as torchrun starts it: it starts and ends the group itself; only rank 0 writes
    os.environ["MASTER_PORT"] = str(ports[1])
    rc = main(cli_args(root, outdir / f"cli{rank}.json"))
    assert rc == 0 and not dist.is_initialized()


def same_numbers(a, b):
    for key in ("mIoU", "mIoU_seen", "mIoU_new", "fwIoU", "pAcc", "mAcc", "IoU"):
        np.testing.assert_array_equal(np.asarray(a[key], float), np.asarray(b[key], float), err_msg=key)
    assert a["num_images"] == b["num_images"] == N_IMAGES and a["seen"] == b["seen"]


def test_two_gloo_processes_match_one_process(tmp_path, tiny_model, monkeypatch):
    root, outdir = tmp_path / "data", tmp_path / "out"
    outdir.mkdir()
    make_ade(root)
    mp.spawn(_worker, args=(root, (free_port(), free_port()), outdir), nprocs=2)

    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    torch.set_num_threads(1)
    ds = Recording(build_dataset("ade20k_150", root))
    want = evaluate(tiny_model, ds, progress=False)
    assert ds.read == [0, 1, 2]
    assert [i for i, v in enumerate(want["IoU"]) if v == v] == [0, 2, 3, 5]  # classes with ground truth

    direct = [json.loads((outdir / f"direct{r}.json").read_text()) for r in range(2)]
    assert direct[0]["read"] == [0, 2] and direct[1]["read"] == [1]  # rank r takes r, r + 2, ...
    for d in direct:  # every rank gets the all-reduced result
        same_numbers(d["res"], want)

    assert main(cli_args(root, outdir / "one.json")) == 0
    one = json.loads((outdir / "one.json").read_text())
    two = json.loads((outdir / "cli0.json").read_text())
    assert not (outdir / "cli1.json").exists()  # rank 1 neither prints nor writes
    assert two["inference"] == one["inference"] == "sliding" and two["window"] == 64 and two["stride"] == 43
    same_numbers(two, one)
