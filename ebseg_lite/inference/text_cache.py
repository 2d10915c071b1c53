"""An in-memory LRU cache of vocabularies -> (K, C) text embeddings: the text tower never runs
twice for a vocabulary seen before (the widgets re-classify on every change)."""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Hashable

import torch


class TextCache:
    """A small LRU cache of vocabularies -> (K, C) embeddings; encoders are never re-run for a
    vocabulary seen before (the widgets re-classify on every change)."""

    def __init__(self, capacity: int = 16):
        self.capacity = capacity
        self._store: "OrderedDict[Hashable, torch.Tensor]" = OrderedDict()
        self.misses = 0

    def get(self, key: Hashable, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        if key in self._store:
            self._store.move_to_end(key)
            return self._store[key]
        self.misses += 1
        value = make()
        self._store[key] = value
        if len(self._store) > self.capacity:
            self._store.popitem(last=False)
        return value

    def clear(self):
        self._store.clear()
