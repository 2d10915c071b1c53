"""What a training step costs: seconds per step and peak memory, on synthetic data at any preset.

    ebseg-lite benchmark --train --preset vit_b --batch 8 --precision bf16 --device cuda   # one GPU's share
    ebseg-lite benchmark --train --preset toy --batch 8 --cache-features                   # the cache's speed-up

Random weights and random label maps (a few classes per image) cost the same as real ones. Not a
test: nothing is asserted; the figures go to the README and the closing notes.
"""
from __future__ import annotations

import dataclasses
import resource
import sys
import tempfile
from typing import Dict

import torch

from ebseg_lite.train.config import TrainConfig


class SyntheticSegmentation(torch.utils.data.Dataset):
    """Random images with 2-5 rectangular segments of a K-class vocabulary."""

    def __init__(self, n: int, size: int, num_classes: int = 171, seed: int = 0):
        self.n, self.size, self.seed = n, size, seed
        self.class_names = [f"class {i}" for i in range(num_classes)]
        self.ignore_value = 255

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(self.seed * 7919 + i)
        s = self.size
        label = torch.full((s, s), int(torch.randint(len(self.class_names), (1,), generator=g)), dtype=torch.int64)
        for _ in range(int(torch.randint(1, 5, (1,), generator=g))):
            y, x = torch.randint(0, s // 2, (2,), generator=g).tolist()
            label[y:y + s // 2, x:x + s // 2] = int(torch.randint(len(self.class_names), (1,), generator=g))
        image = torch.randint(0, 256, (3, s, s), dtype=torch.uint8, generator=g)
        return {"image": image, "label": label, "class_names": self.class_names, "ignore_value": 255}


def _peak_rss_gb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux, bytes on macOS
    return kb / (1024 ** 3 if sys.platform == "darwin" else 1024 ** 2)


def train_step_cost(preset: str = "vit_b", *, batch: int = 2, size: int = 640, steps: int = 3, device: str = "auto",
                    precision: str = "fp32", cache_features: bool = False, num_classes: int = 171,
                    num_points: int = 12544) -> Dict[str, float]:
    """Mean seconds per optimiser step (after one warm-up step) and peak memory."""
    from ebseg_lite.train.trainer import Trainer
    cfg = TrainConfig(preset=preset, clip_pretrained=None, augment="none", crop_size=size, max_iters=steps + 1,
                      batch_size=batch, precision=precision, num_points=num_points, num_workers=0, log_every=1,
                      ckpt_every=10 ** 9, tensorboard=False, device=device, train_pos_embed=not cache_features,
                      cache_features=cache_features)
    data = SyntheticSegmentation(batch if cache_features else batch * (steps + 1), size, num_classes)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(dataclasses.replace(cfg, out_dir=tmp), dataset=data, progress=False)
        if trainer.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(trainer.device)
        rows = trainer.fit()
    res = {"preset": preset, "batch": batch, "size": size, "precision": precision, "device": str(trainer.device),
           "cache_features": cache_features, "threads": torch.get_num_threads(),
           "sec_per_step": sum(r["sec_per_step"] for r in rows[1:]) / max(1, len(rows) - 1),
           "first_step_sec": rows[0]["sec_per_step"], "steps_timed": max(0, len(rows) - 1),
           "peak_process_rss_gb": _peak_rss_gb()}
    if trainer.cache is not None:  # the frozen-feature cache: one miss per image, hits on every later visit
        res["cache_misses"], res["cache_hits"] = trainer.cache.misses, trainer.cache.hits
    if trainer.device.type == "cuda":
        res["peak_cuda_gb"] = torch.cuda.max_memory_allocated(trainer.device) / 1024 ** 3
    return res
