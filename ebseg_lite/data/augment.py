"""The official training augmentation (Mask2Former's semantic mapper, as EBSeg configures it).

Order, as in the official config: resize so the short side is one of 320, 384, ..., 960 (long
side capped at 2560; the image with PIL bilinear, the label -- read as float64 by the official
mapper -- with torch's nearest, both as detectron2's ``ResizeTransform`` does) -> random 640x640
crop -> SSD-style colour jitter -> horizontal flip (p = 0.5) -> pad bottom/right to 640x640 with
image value 128 and the label's ignore value. The training config's ``min_short`` / ``max_short``
set the ends of the 11 short sides (:func:`short_side_choices`).

Every function is pure: it takes an explicit ``torch.Generator`` and returns new tensors, so the
same seed gives the same sample. Images are (3, H, W) uint8 RGB, labels (H, W) int64.
The official crop is ``RandomCrop_CategoryAreaConstraint`` with a single-category area limit of
1.0, which never rejects a crop, so a plain uniform crop is the same thing.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ebseg_lite.io.images import shortest_edge_size

Pair = Tuple[torch.Tensor, torch.Tensor]  # image (3, H, W) uint8, label (H, W) int64

#: Short sides sampled in training: [int(x * 0.1 * 640) for x in range(5, 16)] = 320..960.
TRAIN_SHORT_SIDES = tuple(int(x * 0.1 * 640) for x in range(5, 16))
TRAIN_MAX_SIZE = 2560
CROP_SIZE = 640


def _randint(n: int, gen: torch.Generator) -> int:
    """Uniform integer in [0, n)."""
    return int(torch.randint(n, (1,), generator=gen).item())


def _uniform(lo: float, hi: float, gen: torch.Generator) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def _coin(gen: torch.Generator) -> bool:
    return _randint(2, gen) == 1


def short_side_choices(min_short: int = 320, max_short: int = 960, n: int = 11) -> Tuple[int, ...]:
    """``n`` evenly spaced short sides from ``min_short`` to ``max_short`` (320..960: 320, 384, ..., 960,
    the official ``MIN_SIZE_TRAIN``)."""
    if not 0 < min_short <= max_short or n < 1:
        raise ValueError(f"need 0 < min_short <= max_short and n >= 1, got {min_short}, {max_short}, {n}")
    if n == 1 or min_short == max_short:
        return (min_short,)
    return tuple(min_short + (max_short - min_short) * i // (n - 1) for i in range(n))


def resize_pair(image: torch.Tensor, label: torch.Tensor, size: Tuple[int, int]) -> Pair:
    """Resize to ``size`` = (h, w): the uint8 image with PIL bilinear, the label by torch's nearest
    on float64 (detectron2's ``ResizeTransform`` on the official mapper's uint8 image / double label)."""
    pil = Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())
    img = np.asarray(pil.resize((size[1], size[0]), Image.BILINEAR))  # (h, w, 3)
    img = torch.from_numpy(img.copy()).permute(2, 0, 1).contiguous()  # (3, h, w) uint8
    lab = F.interpolate(label[None, None].double(), size=size, mode="nearest")[0, 0]  # (h, w)
    return img, lab.long()


def random_resize(image: torch.Tensor, label: torch.Tensor, gen: torch.Generator, *,
                  short_sides: Sequence[int] = TRAIN_SHORT_SIDES, max_size: int = TRAIN_MAX_SIZE) -> Pair:
    """Resize to a short side drawn uniformly from ``short_sides``."""
    short = short_sides[_randint(len(short_sides), gen)]
    return resize_pair(image, label, shortest_edge_size(image.shape[1], image.shape[2], short, max_size))


def random_crop(image: torch.Tensor, label: torch.Tensor, gen: torch.Generator, size: int = CROP_SIZE) -> Pair:
    """A uniform ``size`` x ``size`` window (smaller where the image is smaller)."""
    h, w = label.shape
    ch, cw = min(size, h), min(size, w)
    y0, x0 = _randint(h - ch + 1, gen), _randint(w - cw + 1, gen)
    return image[:, y0:y0 + ch, x0:x0 + cw], label[y0:y0 + ch, x0:x0 + cw]


def random_hflip(image: torch.Tensor, label: torch.Tensor, gen: torch.Generator, p: float = 0.5) -> Pair:
    """Mirror left-right with probability ``p``."""
    if float(torch.rand((), generator=gen)) < p:
        return image.flip(-1), label.flip(-1)
    return image, label


def pad_to(image: torch.Tensor, label: torch.Tensor, size: int = CROP_SIZE, *,
           image_value: int = 128, ignore_value: int = 255) -> Pair:
    """Pad bottom and right to ``size`` x ``size`` (image with ``image_value``, label with ignore)."""
    ph, pw = size - label.shape[0], size - label.shape[1]
    if ph < 0 or pw < 0:
        raise ValueError(f"cannot pad a {tuple(label.shape)} map to {size}x{size}; crop it first")
    return (F.pad(image, (0, pw, 0, ph), value=image_value),
            F.pad(label, (0, pw, 0, ph), value=ignore_value))


# --- SSD colour jitter (detectron2's ColorAugSSDTransform, rewritten on torch tensors) ------------
# Each step applies with probability 1/2 and works on uint8 values, truncating like numpy's
# astype(uint8); hue and saturation go through 8-bit HSV as OpenCV stores it (H in 0..179).

def _affine(x: torch.Tensor, alpha: float = 1.0, beta: float = 0.0) -> torch.Tensor:
    return (x.float() * alpha + beta).clamp(0, 255).to(torch.uint8)


def rgb_to_hsv8(image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) uint8 RGB -> (3, H, W) uint8 HSV with H in 0..179 (half degrees), S, V in 0..255."""
    rgb = image.float()
    v, _ = rgb.max(0)
    mn, _ = rgb.min(0)
    d = v - mn
    safe_d, safe_v = d.clamp(min=1e-6), v.clamp(min=1e-6)
    r, g, b = rgb
    hue = torch.where(v == r, 60 * (g - b) / safe_d,
                      torch.where(v == g, 120 + 60 * (b - r) / safe_d, 240 + 60 * (r - g) / safe_d))
    hue = torch.where(d == 0, torch.zeros_like(hue), hue) % 360
    s = torch.where(v == 0, torch.zeros_like(v), 255 * d / safe_v)
    h8 = (hue / 2).round() % 180
    return torch.stack([h8, s.round(), v]).to(torch.uint8)


def hsv8_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """Inverse of ``rgb_to_hsv8``: (3, H, W) uint8 HSV -> (3, H, W) uint8 RGB."""
    h = hsv[0].float() * 2 / 60  # sector position in [0, 6)
    s, v = hsv[1].float() / 255, hsv[2].float()
    k = lambda n: (n + h) % 6  # noqa: E731  (the standard closed form of HSV -> RGB)
    f = lambda n: v - v * s * (torch.minimum(k(n), 4 - k(n)).clamp(0, 1))  # noqa: E731
    return torch.stack([f(5), f(3), f(1)]).round().clamp(0, 255).to(torch.uint8)


def _saturation(image: torch.Tensor, alpha: float) -> torch.Tensor:
    hsv = rgb_to_hsv8(image)
    hsv[1] = _affine(hsv[1], alpha)
    return hsv8_to_rgb(hsv)


def _hue(image: torch.Tensor, delta: int) -> torch.Tensor:
    hsv = rgb_to_hsv8(image)
    hsv[0] = ((hsv[0].long() + delta) % 180).to(torch.uint8)
    return hsv8_to_rgb(hsv)


def color_jitter_ssd(image: torch.Tensor, gen: torch.Generator, *, brightness_delta: float = 32,
                     contrast: Tuple[float, float] = (0.5, 1.5), saturation: Tuple[float, float] = (0.5, 1.5),
                     hue_delta: int = 18) -> torch.Tensor:
    """SSD photometric distortion: brightness, then contrast before or after saturation and hue.

    Args:
        image: (3, H, W) uint8 RGB.
    Returns:
        (3, H, W) uint8 RGB.
    """
    def bright(x):
        return _affine(x, beta=_uniform(-brightness_delta, brightness_delta, gen)) if _coin(gen) else x

    def contr(x):
        return _affine(x, alpha=_uniform(*contrast, gen)) if _coin(gen) else x

    def sat(x):
        return _saturation(x, _uniform(*saturation, gen)) if _coin(gen) else x

    def hue(x):
        return _hue(x, int(torch.randint(-hue_delta, hue_delta + 1, (1,), generator=gen))) if _coin(gen) else x

    image = bright(image)
    steps = (contr, sat, hue) if _coin(gen) else (sat, hue, contr)
    for step in steps:
        image = step(image)
    return image


def train_augment(image: torch.Tensor, label: torch.Tensor, gen: torch.Generator, *,
                  ignore_value: int = 255, crop: int = CROP_SIZE,
                  short_sides: Sequence[int] = TRAIN_SHORT_SIDES, max_size: int = TRAIN_MAX_SIZE) -> Pair:
    """The whole official training pipeline on one sample.

    Args:
        image: (3, H, W) uint8 RGB.  label: (H, W) int64 raw ids.
        gen: the random stream; the same seed gives the same output.
        short_sides: the short sides drawn from (``short_side_choices(cfg.min_short, cfg.max_short)``).
    Returns:
        image (3, crop, crop) uint8 and label (crop, crop) int64.
    """
    image, label = random_resize(image, label, gen, short_sides=short_sides, max_size=max_size)
    image, label = random_crop(image, label, gen, crop)
    image = color_jitter_ssd(image, gen)
    image, label = random_hflip(image, label, gen)
    return pad_to(image, label, crop, ignore_value=ignore_value)
