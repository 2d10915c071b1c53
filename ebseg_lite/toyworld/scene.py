"""One toy scene: the image, its label map and instances, its caption (:class:`Scene`), and the
ignore value of toy label maps. Drawn by :class:`~ebseg_lite.toyworld.world.ToyWorld`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

import numpy as np

IGNORE = 255


@dataclass
class Scene:
    """One toy scene. ``instances`` are disjoint visible masks (stuff regions first, then objects
    bottom to top); ``label`` is their union painted with class ids."""
    image: np.ndarray            # (H, W, 3) uint8
    label: np.ndarray            # (H, W) int64 class ids, 255 = ignore
    instances: np.ndarray        # (M, H, W) bool
    instance_labels: np.ndarray  # (M,) int64
    caption: str
    seed: int = 0

    @property
    def classes(self) -> List[int]:
        """Sorted unique class ids present."""
        return sorted(set(int(c) for c in self.instance_labels))
