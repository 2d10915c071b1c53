"""Training data: which samples each step sees, on which process, with which augmentation.

Everything random is a function of (seed, step, global position), never of a running RNG:

* the order of samples is a fixed permutation per epoch (seeded by ``seed + epoch``);
* optimiser step t consumes global positions ``t*G .. t*G + G - 1`` (G = batch x grad_accum); micro-batch m
  of it is split in equal contiguous slices over the processes;
* a sample's augmentation and its loss's random points are seeded by (seed, step, position).

So a resumed run sees exactly what the uninterrupted run would have seen, and two processes with half
the batch each see exactly what one process with the whole batch sees.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Iterator, List, Sequence, Tuple

import torch
from torch.utils.data import Dataset

from ebseg_lite.data.augment import TRAIN_SHORT_SIDES, train_augment


class EpochOrder:
    """Global position -> dataset index (a new permutation every epoch)."""

    def __init__(self, n: int, seed: int):
        if n < 1:
            raise ValueError("the training dataset is empty")
        self.n, self.seed = n, seed
        self._perm = lru_cache(maxsize=4)(self._make)

    def _make(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_033 + epoch)
        return torch.randperm(self.n, generator=g)

    def __call__(self, position: int) -> int:
        return int(self._perm(position // self.n)[position % self.n])


def micro_batch_positions(step: int, micro: int, *, batch_size: int, grad_accum: int, rank: int,
                          world_size: int) -> List[int]:
    """Global positions of one process's share of micro-batch ``micro`` of optimiser step ``step``."""
    if batch_size % world_size:
        raise ValueError(f"batch_size {batch_size} must be divisible by the number of processes {world_size}")
    local = batch_size // world_size
    start = step * batch_size * grad_accum + micro * batch_size + rank * local
    return list(range(start, start + local))


class StepSampler:
    """Yields, per micro-batch, the keys ``(index, step, position)`` of this process's samples."""

    def __init__(self, order: EpochOrder, *, start_step: int, max_iters: int, batch_size: int, grad_accum: int,
                 rank: int = 0, world_size: int = 1):
        self.order, self.start, self.stop = order, start_step, max_iters
        self.kw = dict(batch_size=batch_size, grad_accum=grad_accum, rank=rank, world_size=world_size)

    def __len__(self) -> int:
        return (self.stop - self.start) * self.kw["grad_accum"]

    def __iter__(self) -> Iterator[List[Tuple[int, int, int]]]:
        for step in range(self.start, self.stop):
            for m in range(self.kw["grad_accum"]):
                yield [(self.order(p), step, p) for p in micro_batch_positions(step, m, **self.kw)]


def augment_seed(seed: int, step: int, position: int) -> int:
    return (seed * 2_147_483_629 + step * 65_537 + position * 8_191 + 17) % (2 ** 63 - 1)


class TrainView(Dataset):
    """A dataset read with keys ``(index, step, position)``: the item, augmented deterministically."""

    def __init__(self, dataset, *, augment: str, crop_size: int, seed: int, ignore_value: int = 255,
                 short_sides: Sequence[int] = TRAIN_SHORT_SIDES):
        self.dataset, self.augment, self.crop, self.seed, self.ignore = dataset, augment, crop_size, seed, ignore_value
        self.short_sides = tuple(short_sides)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Tuple[int, int, int]) -> dict:
        index, step, position = key
        item = self.dataset[index]
        image, label = item["image"], item["label"].long()
        ignore = item.get("ignore_value", self.ignore)
        if ignore != self.ignore:  # e.g. 65535 in tif benchmarks -> the trainer's 255
            label = torch.where(label == ignore, torch.full_like(label, self.ignore), label)
        if self.augment == "official":
            g = torch.Generator().manual_seed(augment_seed(self.seed, step, position))
            image, label = train_augment(image, label, g, ignore_value=self.ignore, crop=self.crop,
                                         short_sides=self.short_sides)
        return {"image": image, "label": label, "index": index, "position": position}


def collate(items: Sequence[dict]) -> dict:
    sizes = {tuple(it["image"].shape) for it in items}
    if len(sizes) > 1:
        raise ValueError(f"training images of one batch differ in size {sorted(sizes)}; use augment='official' "
                         "(fixed crops) or a dataset with one image size")
    return {"image": torch.stack([it["image"] for it in items]), "label": torch.stack([it["label"] for it in items]),
            "index": [it["index"] for it in items], "position": [it["position"] for it in items]}
