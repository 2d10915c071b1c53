"""Text-embedding caches: an in-memory LRU (the widgets re-classify on every change) and a
persistent one on disk, so a vocabulary seen before costs a file read in a new process too.

Disk cache: one safetensors file per entry under ``$EBSEG_CACHE_DIR`` (default
``$XDG_CACHE_HOME/ebseg_lite``, i.e. ``~/.cache/ebseg_lite``), in ``text/<key>.safetensors``.
The key is a SHA-256 of the text tower's weights (every parameter and buffer outside ``visual.``),
the tokenizer (its class, context length and the token ids of every prompt), the template set and
the class names; the file's metadata repeats these, and an entry whose metadata, shape or values
do not match (a foreign, truncated or corrupt file) is recomputed and rewritten. Writes go through
:func:`ebseg_lite.io.files.atomic_write`: one file per key and an atomic rename, so two processes
filling the cache at once lose nothing (the same key gets the same bytes twice).
``EBSEG_CACHE_DIR=off`` turns the disk cache off.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Hashable, Optional, Sequence

import torch
from torch import nn

from ebseg_lite.io.files import atomic_write

FORMAT = "ebseg_lite.text_embeddings.v1"


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


def cache_dir() -> Optional[Path]:
    """The persistent cache folder, or None when ``EBSEG_CACHE_DIR`` is ``off``."""
    env = os.environ.get("EBSEG_CACHE_DIR")
    if env:
        return None if env.lower() in ("off", "none", "0") else Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ebseg_lite"


def text_tower_digest(clip_model: nn.Module) -> str:
    """SHA-256 of every parameter and buffer of the CLIP model outside ``visual.`` (names, shapes,
    dtypes and bytes): whatever the text embeddings can depend on."""
    h = hashlib.sha256()
    tensors = dict(clip_model.named_parameters())
    tensors.update(clip_model.named_buffers())
    for name in sorted(tensors):
        if name.startswith("visual."):
            continue
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def tokenizer_digest(tokenizer: Callable, prompts: Sequence[str]) -> str:
    """Class, context length and SHA-256 of the token ids the tokenizer gives these prompts."""
    ids = tokenizer(list(prompts)).to(torch.int64).contiguous()
    kind = f"{type(tokenizer).__module__}.{type(tokenizer).__qualname__}|{getattr(tokenizer, 'context_length', '')}"
    return kind + "|" + hashlib.sha256(ids.numpy().tobytes()).hexdigest()


class DiskTextCache:
    """Persistent (K, C) text embeddings, one safetensors file per (weights, tokenizer, templates, names)."""

    def __init__(self, root: Optional[Path] = None):
        self.root = root
        self.hits = self.misses = self.rejected = 0

    def _folder(self) -> Optional[Path]:
        root = self.root if self.root is not None else cache_dir()
        return None if root is None else Path(root) / "text"

    def get(self, *, weights: str, tokenizer, names: Sequence[str], templates: Sequence[str],
            make: Callable[[], torch.Tensor]) -> torch.Tensor:
        folder = self._folder()
        if folder is None:
            return make()
        tok = tokenizer_digest(tokenizer, [t.format(c) for c in names for t in templates])
        meta = {"format": FORMAT, "weights": weights, "tokenizer": tok,
                "templates": json.dumps(list(templates)), "names": json.dumps(list(names))}
        key = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()
        path = folder / f"{key}.safetensors"
        found = self._read(path, meta, len(names))
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        value = make()
        from safetensors.torch import save_file
        emb = value.detach().float().cpu().contiguous()
        try:
            atomic_write(path, lambda tmp: save_file({"embeddings": emb}, tmp, metadata=meta))
        except OSError:
            pass  # a read-only or full disk costs a recompute next time, never a failure
        return value

    def _read(self, path: Path, meta: dict, k: int) -> Optional[torch.Tensor]:
        if not path.is_file():
            return None
        try:
            from safetensors import safe_open
            with safe_open(str(path), framework="pt") as f:
                stored = f.metadata() or {}
                emb = f.get_tensor("embeddings")
        except Exception:  # truncated or not a safetensors file
            self.rejected += 1
            return None
        if stored != meta or emb.dim() != 2 or emb.shape[0] != k or not torch.isfinite(emb).all():
            self.rejected += 1  # another entry under this name, or damaged values
            return None
        return emb
