"""Image-level class lists for PnP-OVSS, without a chat model.

PnP-OVSS segments only the classes it is told an image contains. The official code reads them from
GPT-4o's cached answers (``GPT4o_classification/*_noboundary.json``, a class kept above 70%
confidence); that is not open-vocabulary in the strict sense and cannot run offline. Here the list
has one of three sources, and every result says which (:data:`CLASS_SOURCES`):

* ``given``: the user names the classes;
* ``clip``: CLIP zero-shot, multi-label: ``softmax(logit_scale * cos(image, class texts))`` over the
  vocabulary, every class with probability >= a threshold (the top one always) (:func:`clip_classes`);
* ``gt``: the classes present in the ground-truth label map (evaluation only; an upper bound on
  what any image-level classifier gives).

:class:`ClipScorer` also serves the label-free search's reward (:mod:`.search`).

Shapes: N images, K classes, C CLIP width, H x W pixels, S CLIP input side.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ebseg_lite.modeling.text import encode_class_names
from ebseg_lite.vocabulary import warn_unknown_words

CLASS_SOURCES = ("given", "clip", "gt")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def classes_from_label(label: np.ndarray, ignore_index: int = 255) -> List[int]:
    """Sorted class ids present in an (H, W) ground-truth map (the ``gt`` source)."""
    ids = np.unique(np.asarray(label))
    return [int(i) for i in ids if i != ignore_index]


class ClipScorer:
    """Class probabilities of whole images from an open_clip model.

    Args:
        clip_model, tokenizer: an open_clip ``CLIP`` and its tokeniser.
        templates: prompt templates averaged per class ("a photo of a {}.").
        image_size: CLIP's input side S (images are resized to S x S).
    """

    def __init__(self, clip_model, tokenizer, templates: Sequence[str], image_size: int):
        self.model, self.tokenizer = clip_model.eval(), tokenizer
        self.templates, self.size = tuple(templates), image_size
        self._text: dict = {}

    def text(self, class_names: Sequence[str]) -> torch.Tensor:
        """(K, C) normalised class embeddings (cached per name list)."""
        key = tuple(class_names)
        if key not in self._text:
            warn_unknown_words(self.tokenizer, key)
            with torch.no_grad():
                self._text[key] = encode_class_names(self.model, self.tokenizer, list(key), self.templates)
        return self._text[key]

    def pixels(self, images: np.ndarray) -> torch.Tensor:
        """(N, H, W, 3) uint8 -> (N, 3, S, S) CLIP-normalised (bilinear, antialiased)."""
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        return (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)

    @torch.no_grad()
    def probs(self, images: np.ndarray, class_names: Sequence[str]) -> torch.Tensor:
        """(N, K) ``softmax(logit_scale * cos)`` over ``class_names`` for (N, H, W, 3) uint8 images."""
        img = F.normalize(self.model.encode_image(self.pixels(images)).float(), dim=-1)   # (N, C)
        scale = float(self.model.logit_scale.exp())
        return (scale * img @ self.text(class_names).T).softmax(-1)


def clip_classes(scorer: ClipScorer, image: np.ndarray, vocabulary: Sequence[str], *,
                 threshold: float = 0.1) -> Tuple[List[int], torch.Tensor]:
    """The ``clip`` source: indices into ``vocabulary`` with probability >= ``threshold`` (the most
    probable one always kept), in decreasing probability, and the (K,) probabilities."""
    p = scorer.probs(image[None], vocabulary)[0]
    order = torch.argsort(p, descending=True, stable=True)
    keep = [int(i) for i in order if p[i] >= threshold] or [int(order[0])]
    return keep, p
