"""Toy scenes as a dataset: items shaped like :class:`ebseg_lite.data.datasets.SemSegDataset`'s, so the
trainer, the evaluator and every notebook read toy scenes as they read a benchmark."""
from __future__ import annotations

from typing import Dict, Optional

import torch

from ebseg_lite.toyworld.scene import IGNORE, Scene


class ToyDataset(torch.utils.data.Dataset):
    """``n`` toy scenes as items shaped like :class:`ebseg_lite.data.datasets.SemSegDataset`'s.
    Item i is ``world.scene(seed * 1_000_003 + i)``. ``keep=True`` keeps each rendered scene in memory
    (64 KiB per 128 px scene), for a training that reads every scene once per epoch."""

    def __init__(self, world: "ToyWorld", n: int, *, seed: int = 0, split: str = "train", size: int = 128,
                 keep: bool = False):
        self.world, self.n, self.seed, self.split, self.size = world, n, seed, split, size
        self.class_names = list(world.class_names)
        self.ignore_value = IGNORE
        self._kept: Optional[Dict[int, Scene]] = {} if keep else None

    def __len__(self) -> int:
        return self.n

    def scene(self, i: int) -> Scene:
        if not -self.n <= i < self.n:
            raise IndexError(f"index {i} out of range for a dataset of {self.n} items")
        i %= self.n
        if self._kept is not None and i in self._kept:
            return self._kept[i]
        s = self.world.scene(self.seed * 1_000_003 + i, size=self.size, split=self.split)
        if self._kept is not None:
            self._kept[i] = s
        return s

    def __getitem__(self, i: int) -> dict:
        s = self.scene(i)
        return {"image": torch.from_numpy(s.image).permute(2, 0, 1).contiguous(),  # (3, H, W) uint8
                "label": torch.from_numpy(s.label.copy()), "class_names": self.class_names,
                "ignore_value": IGNORE, "file_name": f"toy-{self.split}-{i % self.n}"}
