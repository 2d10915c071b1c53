"""Small in-memory training data for the trainer tests: every image holds exactly two segments
(left / right halves, or top / bottom), each class a flat colour plus noise, so the loss can fall."""
from __future__ import annotations

import torch

COLOURS = torch.tensor([[220, 40, 40], [40, 200, 60], [50, 70, 220], [230, 210, 40]], dtype=torch.float32)
NAMES = ["red paint", "green paint", "blue paint", "yellow paint"]


class HalvesDataset(torch.utils.data.Dataset):
    class_names = NAMES
    ignore_value = 255

    def __init__(self, n: int = 8, size: int = 64, seed: int = 0):
        self.items = []
        g = torch.Generator().manual_seed(seed)
        for i in range(n):
            a, b = torch.randperm(len(NAMES), generator=g)[:2].tolist()
            label = torch.full((size, size), a, dtype=torch.int64)
            cut = int(torch.randint(size // 4, 3 * size // 4, (1,), generator=g))
            if i % 2:
                label[:, cut:] = b
            else:
                label[cut:, :] = b
            noise = torch.randn(3, size, size, generator=g) * 12
            image = (COLOURS[label].permute(2, 0, 1) + noise).clamp(0, 255).to(torch.uint8)
            self.items.append((image, label))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        image, label = self.items[i]
        return {"image": image, "label": label, "class_names": NAMES, "ignore_value": 255, "file_name": f"halves-{i}"}
