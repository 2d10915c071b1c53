"""Benchmark datasets in the detectron2 folder layouts, and a plain folder dataset for own data.

One data root holds every benchmark (the detectron2 convention); it comes from an argument, else
``$EBSEG_DATA``, else ``$DETECTRON2_DATASETS``. Labels keep their raw ids (0..K-1) and the
dataset's ignore value (255, or 65535 for the 16-bit TIFF labels of ADE20K-847 and PC-459).

Bad data (a missing folder is always an error):
  * an image without a label (or, where images live in a shared folder as for VOC, a label without
    an image), found when the dataset is built;
  * an unreadable file, a label id outside the vocabulary that is not the ignore value, and an
    image/label size mismatch, found when an item is read (or for every item up front when the
    dataset is built with ``scan=True``).
With ``on_error="raise"`` these raise ``ValueError`` naming the file; with ``on_error="skip"``
they warn, are counted in ``num_skipped`` (reasons in ``skipped``) and the item is left out
(when found on read, the next good item is returned instead). Counts made inside DataLoader
worker processes stay in those processes: use ``scan=True`` to count everything up front.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ebseg_lite.io.images import read_image
from ebseg_lite.data.layouts import BENCHMARKS, resolve_data_root
from ebseg_lite.data.vocabularies import load_class_names, read_class_file

PathLike = Union[str, Path]
IMAGE_EXTS = (".jpg", ".jpeg", ".png")


def read_label(path: PathLike) -> torch.Tensor:
    """(H, W) int64 tensor of raw label ids (8-bit PNG or 16-bit TIFF, palette indices kept)."""
    with Image.open(path) as im:
        if im.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
            raise ValueError(f"label {path} has mode {im.mode}; expected one channel of ids (L, P or 16-bit)")
        arr = np.asarray(im)
    return torch.from_numpy(arr.astype(np.int64))


class SemSegDataset(Dataset):
    """Pairs of images and label maps matched by file stem.

    Items are dicts: ``image`` (3, H, W) uint8, ``label`` (H, W) int64 (raw ids, ignore value
    kept), ``file_name`` and ``label_file`` (str), ``ignore_value`` (int), ``class_names`` (K str).
    """

    def __init__(self, image_dir: PathLike, label_dir: PathLike, class_names: Sequence[str], *,
                 ignore_value: int = 255, label_ext: str = ".png", image_exts: Sequence[str] = IMAGE_EXTS,
                 index_by: str = "images", on_error: str = "raise", scan: bool = False):
        if on_error not in ("raise", "skip"):
            raise ValueError(f'on_error must be "raise" or "skip", got {on_error!r}')
        if index_by not in ("images", "labels"):
            raise ValueError(f'index_by must be "images" or "labels", got {index_by!r}')
        self.image_dir, self.label_dir = Path(image_dir), Path(label_dir)
        self.class_names = list(class_names)
        self.ignore_value, self.on_error = int(ignore_value), on_error
        self.skipped: List[Tuple[str, str]] = []  # (file, reason)
        for kind, d in (("image", self.image_dir), ("label", self.label_dir)):
            if not d.is_dir():
                raise FileNotFoundError(f"{kind} folder {d} does not exist; check the data root and layout")
        self.items = self._pair(label_ext, tuple(e.lower() for e in image_exts), index_by)
        self._bad: set = set()
        if scan:
            self.items = [it for it in self.items if self._load(it) is not None]
        if not self.items:
            warnings.warn(f"no usable image/label pairs in {self.image_dir} and {self.label_dir}")

    @property
    def num_skipped(self) -> int:
        """How many files were left out as bad data (only in ``on_error="skip"`` mode)."""
        return len(self.skipped)

    def _problem(self, file: PathLike, reason: str) -> None:
        msg = f"{file}: {reason}"
        if self.on_error == "raise":
            raise ValueError(msg + ' (fix the file, or pass on_error="skip" to leave it out)')
        warnings.warn("skipping " + msg)
        self.skipped.append((str(file), reason))

    def _pair(self, label_ext: str, image_exts: Tuple[str, ...], index_by: str) -> List[Tuple[Path, Path]]:
        images = {p.stem: p for p in sorted(self.image_dir.iterdir()) if p.suffix.lower() in image_exts}
        labels = {p.stem: p for p in sorted(self.label_dir.iterdir()) if p.suffix.lower() == label_ext}
        items = []
        if index_by == "images":
            for stem, img in sorted(images.items()):
                if stem in labels:
                    items.append((img, labels[stem]))
                else:
                    self._problem(img, f"no label {stem}{label_ext} in {self.label_dir}")
        else:
            for stem, lab in sorted(labels.items()):
                if stem in images:
                    items.append((images[stem], lab))
                else:
                    self._problem(lab, f"no image {stem}{'/'.join(image_exts)} in {self.image_dir}")
        return items

    def _load(self, item: Tuple[Path, Path]) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """(image, label) of a good pair; None (after raising or warning) for bad data."""
        try:
            image, label = read_image(item[0]), read_label(item[1])
        except (OSError, ValueError) as e:  # truncated files, RGB labels, ...
            self._problem(item[0], f"cannot read it or its label {item[1].name}: {e}")
            return None
        return (image, label) if self._check(item, image, label) is None else None

    def _check(self, item, image: torch.Tensor, label: torch.Tensor) -> Optional[str]:
        """None when the pair is good; otherwise reports the problem (raise, or warn and count)."""
        if tuple(image.shape[1:]) != tuple(label.shape):
            reason = f"image is {tuple(image.shape[1:])} (H, W) but its label {item[1].name} is {tuple(label.shape)}"
            self._problem(item[0], reason)
            return reason
        ids = torch.unique(label)
        bad = ids[(ids != self.ignore_value) & ((ids < 0) | (ids >= len(self.class_names)))]
        if len(bad):
            reason = (f"label ids {bad.tolist()[:10]} are outside the vocabulary 0..{len(self.class_names) - 1} "
                      f"and are not the ignore value {self.ignore_value}")
            self._problem(item[1], reason)
            return reason
        return None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        if not -len(self.items) <= index < len(self.items):
            raise IndexError(f"index {index} out of range for a dataset of {len(self.items)} items")
        index %= len(self.items)
        for k in range(len(self.items)):
            i = (index + k) % len(self.items)
            if i in self._bad:
                continue
            pair = self._load(self.items[i])
            if pair is not None:
                image, label = pair
                return {"image": image, "label": label, "file_name": str(self.items[i][0]),
                        "label_file": str(self.items[i][1]), "ignore_value": self.ignore_value,
                        "class_names": self.class_names}
            self._bad.add(i)
        raise ValueError(f"every item of the dataset in {self.image_dir} is bad data; see the warnings")


class FolderDataset(SemSegDataset):
    """A user's own data: ``root/images/*.{jpg,jpeg,png}``, ``root/labels/*.png`` (same stem,
    one 8-bit id per pixel, ``ignore_value`` for unlabelled) and ``root/classes.txt``
    (one class per line in id order, synonyms separated by ", ")."""

    def __init__(self, root: PathLike, *, ignore_value: int = 255, on_error: str = "raise", scan: bool = False):
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"dataset folder {root} does not exist")
        classes = root / "classes.txt"
        if not classes.is_file():
            raise FileNotFoundError(f"{classes} is missing: write one class name per line, line i naming label id i")
        super().__init__(root / "images", root / "labels", read_class_file(classes), ignore_value=ignore_value,
                         label_ext=".png", on_error=on_error, scan=scan)


def build_dataset(name: str, root: Optional[PathLike] = None, *, on_error: str = "raise",
                  scan: bool = False) -> SemSegDataset:
    """A benchmark split by name (see ``BENCHMARKS``), under the data root."""
    if name not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {name!r}; known: {sorted(BENCHMARKS)}")
    spec, data_root = BENCHMARKS[name], resolve_data_root(root)
    if not (data_root / spec.folder).is_dir():
        raise FileNotFoundError(
            f"{name}: folder {data_root / spec.folder} does not exist; expected images in "
            f"{spec.image_dir} and labels in {spec.label_dir} under the data root {data_root}"
        )
    return SemSegDataset(
        data_root / spec.image_dir, data_root / spec.label_dir, load_class_names(spec.vocabulary),
        ignore_value=spec.ignore_value, label_ext=spec.label_ext,
        index_by="labels" if spec.shared_image_dir else "images", on_error=on_error, scan=scan,
    )
