"""Cache of the frozen encoders' outputs for short decoder-only runs.

CLIP and SAM are frozen in EBSeg except their positional embeddings. With those frozen too
(``train_pos_embed=False``) and no random augmentation, ``model.frozen_features(image)`` is the same at
every visit of an image, so it is computed once per image and kept in memory; each later step runs
only fusion, the decoders and the mask-attention head. ``ebseg-lite benchmark``-style figures for the
speed-up are in the README ("Training").
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch

from ebseg_lite.modeling.clip_dense import ClipDense


def split_frozen(frozen: Dict, n: int) -> List[Dict]:
    """Batch features -> n per-sample dicts (batch axis kept, size 1), on the CPU."""
    dense: ClipDense = frozen["dense"]
    items = []
    for i in range(n):
        items.append({
            "dense": ClipDense(grid=dense.grid, feats={k: v[i:i + 1].detach().cpu() for k, v in dense.feats.items()},
                               tokens=dense.tokens[i:i + 1].detach().cpu(), surgery=None),
            "sam": {k: v[i:i + 1].detach().cpu() for k, v in frozen["sam"].items()},
            "padded_size": frozen["padded_size"],
        })
    return items


def stack_frozen(items: Sequence[Dict], device) -> Dict:
    """Per-sample dicts -> one batch on ``device``."""
    d0 = items[0]["dense"]
    dense = ClipDense(grid=d0.grid,
                      feats={k: torch.cat([it["dense"].feats[k] for it in items]).to(device) for k in d0.feats},
                      tokens=torch.cat([it["dense"].tokens for it in items]).to(device), surgery=None)
    sam = {k: torch.cat([it["sam"][k] for it in items]).to(device) for k in items[0]["sam"]}
    return {"dense": dense, "sam": sam, "padded_size": items[0]["padded_size"]}


class FeatureCache:
    """Frozen features by dataset index, filled on first use."""

    def __init__(self):
        self._items: Dict[int, Dict] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    @torch.no_grad()
    def batch(self, model, indices: Sequence[int], images: torch.Tensor) -> Dict:
        """Frozen features of a batch; runs the encoders only on images not cached yet.

        Args:
            indices: B dataset indices.  images: (B, 3, H, W) uint8, the same images.
        """
        missing = [j for j, i in enumerate(indices) if int(i) not in self._items]
        self.misses += len(missing)
        self.hits += len(indices) - len(missing)
        if missing:
            fresh = model.frozen_features(images[missing], inference=False)
            for j, item in zip(missing, split_frozen(fresh, len(missing))):
                self._items[int(indices[j])] = item
        return stack_frozen([self._items[int(i)] for i in indices], model.device)
