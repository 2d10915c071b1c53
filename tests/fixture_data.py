"""Helpers shared by test folders: small image / label files written on the fly, and a quiet model
builder. (Importing from ``conftest`` is ambiguous: tests/browser has a conftest of its own.)"""
import warnings

import numpy as np
from PIL import Image


def quiet_build(*args, **kw):
    """``ebseg_lite.build_model`` without its random-weights warning."""
    import ebseg_lite
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ebseg_lite.build_model(*args, **kw)


class ClosedTokenizer:
    """A tokenizer that behaves as ``inner`` but says it cannot spell the words in ``unknown`` (the
    ``unknown_words`` method that :func:`ebseg_lite.vocabulary.unknown_word_warning` reads)."""

    def __init__(self, inner, unknown):
        self.inner, self.unknown = inner, set(unknown)

    def __call__(self, texts, context_length=None):
        return self.inner(texts)

    def unknown_words(self, text):
        return [w for w in text.replace(",", " ").split() if w in self.unknown]


def write_image(path, h, w, seed=0, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, format=fmt)
    return arr


def write_label(path, arr):
    """uint8 arrays go to 8-bit PNG, uint16 arrays to 16-bit TIFF (mode I;16)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def label_array(h, w, k, ignore, seed=0):
    dtype = np.uint16 if ignore == 65535 else np.uint8
    arr = np.random.default_rng(seed).integers(0, k, (h, w)).astype(dtype)
    arr[0, 0] = ignore
    return arr


def make_folder(root, n=2, h=5, w=7, classes=("cat", "sofa, couch", "floor")):
    arrays = []
    for i in range(n):
        arrays.append(write_image(root / "images" / f"p{i}.png", h, w, seed=i))
        write_label(root / "labels" / f"p{i}.png", label_array(h, w, len(classes), 255, seed=i))
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    return arrays
