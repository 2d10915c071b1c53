"""A compact tokenizer for the toy CLIP: open_clip's BPE with the ids the toy corpus uses
remapped to 0..V-1, so the token table has V = 256 rows instead of 49408.

Layout: 0 = padding (open_clip pads with 0 too), 1 = unknown word piece, 2 = start of text,
3.. = the kept BPE ids in increasing order, V - 1 = end of text. The end-of-text id must be the
highest id because open_clip's text tower finds it by ``argmax`` over the ids.
"""
from __future__ import annotations

import re
from typing import Iterable, List, Optional, Sequence, Union

import open_clip
import torch

from ebseg_lite.toyworld.prompts import TOY_TEMPLATES
from ebseg_lite.toyworld.world import CAPTION_TEMPLATES, ToyWorld

PAD, UNK, SOT = 0, 1, 2
VOCAB_SIZE = 256
CONTEXT_LENGTH = 32


def corpus_strings(world=None) -> List[str]:
    """Every word the toy CLIP can meet: class names, caption templates and the "toy" prompts."""
    world = world or ToyWorld()
    out = list(world.class_names) + ["a , and ."]
    out += [t.replace("{things}", "").replace("{stuff}", "") for t in CAPTION_TEMPLATES]
    out += [t.replace("{}", "") for t in TOY_TEMPLATES]
    return out


class ToyTokenizer:
    """Callable like open_clip tokenizers: ``tok(list_of_str) -> (n, context_length) LongTensor``."""

    def __init__(self, kept_ids: Sequence[int], context_length: int = CONTEXT_LENGTH,
                 vocab_size: int = VOCAB_SIZE):
        self.bpe = open_clip.SimpleTokenizer(context_length=context_length)
        self.kept_ids = sorted(int(i) for i in kept_ids)
        if len(self.kept_ids) > vocab_size - 4:
            raise ValueError(f"{len(self.kept_ids)} word pieces do not fit a vocabulary of {vocab_size}")
        self.context_length = context_length
        self.vocab_size = vocab_size
        self.eot = vocab_size - 1
        self.map = {b: SOT + 1 + i for i, b in enumerate(self.kept_ids)}

    @classmethod
    def from_corpus(cls, strings: Iterable[str], **kw) -> "ToyTokenizer":
        bpe = open_clip.SimpleTokenizer()
        ids = sorted({i for s in strings for i in bpe.encode(s)})
        return cls(ids, **kw)

    @classmethod
    def from_world(cls, world=None, **kw) -> "ToyTokenizer":
        return cls.from_corpus(corpus_strings(world), **kw)

    def encode(self, text: str) -> List[int]:
        """Toy ids of one text, without start/end tokens."""
        return [self.map.get(i, UNK) for i in self.bpe.encode(text)]

    def unknown_words(self, text: str) -> List[str]:
        """The words of ``text`` with a word piece the toy corpus never used (each encodes as the one
        unknown id, so "dog" and "orange" give the same prompt). Read by
        :func:`ebseg_lite.vocabulary.unknown_word_warning`."""
        return [w for w in dict.fromkeys(re.findall(r"[^\W_]+", text.lower())) if UNK in self.encode(w)]

    @property
    def vocabulary_note(self) -> str:
        """What :func:`ebseg_lite.vocabulary.unknown_word_warning` tells a user whose names it cannot spell."""
        words = dict.fromkeys(w for n in ToyWorld().class_names for w in n.split())
        return f"the toy CLIP knows only the toy world's words ({', '.join(words)})"

    def __call__(self, texts: Union[str, Sequence[str]], context_length: Optional[int] = None) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        n = context_length or self.context_length
        out = torch.zeros(len(texts), n, dtype=torch.long)   # (n_texts, context_length)
        for r, t in enumerate(texts):
            ids = [SOT] + self.encode(t)[: n - 2] + [self.eot]  # cut like open_clip: EOT always kept
            out[r, : len(ids)] = torch.tensor(ids)
        return out


def tokenizer_metadata(tok: ToyTokenizer) -> dict:
    """What a weights file stores so the tokenizer can be rebuilt (safetensors metadata is str -> str)."""
    import json
    return {"tokenizer": "toy", "tokenizer_kept_ids": json.dumps(tok.kept_ids),
            "context_length": str(tok.context_length), "vocab_size": str(tok.vocab_size)}


def tokenizer_from_checkpoint(path) -> ToyTokenizer:
    """Rebuild the :class:`ToyTokenizer` stored in a toy CLIP safetensors file's metadata."""
    import json
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "tokenizer_kept_ids" not in meta:
        raise ValueError(f"{path} carries no toy tokenizer (metadata key 'tokenizer_kept_ids'); "
                         "was it written by `ebseg-lite toyworld pretrain-clip`?")
    return ToyTokenizer(json.loads(meta["tokenizer_kept_ids"]), context_length=int(meta["context_length"]),
                        vocab_size=int(meta["vocab_size"]))
