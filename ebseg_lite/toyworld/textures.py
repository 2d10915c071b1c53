"""Procedural "stuff" textures, "thing" surface patterns and silhouettes of the toy world (v2), numpy only.

Each stuff texture is a function ``(rng, H, W) -> (H, W, 3) float32`` in 0..255. A thing's class is
its colour and its surface *pattern* (``PATTERNS``: ``(rng, H, W) -> (H, W)`` float in [0, 1], 1 =
the full colour, 0 = its dark shade), never its outline: what a class is then shows inside every
8 x 8 patch the toy CLIP sees (a pattern period is about 10 px at 128 px, 5 px at CLIP's 64 px), as
a zebra is known by its stripes in any pose. Silhouettes (``SILHOUETTES``, functions of rotated,
size-normalised coordinates ``(u, v)`` returning a bool mask) vary freely and name nothing.
"""
from __future__ import annotations

from typing import Callable, Dict

import numpy as np


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """(h, w) value noise in [0, 1]: a cells x cells random grid, bilinearly upsampled."""
    g = rng.random((cells + 1, cells + 1)).astype(np.float32)
    y = np.linspace(0, cells, h, endpoint=False, dtype=np.float32)
    x = np.linspace(0, cells, w, endpoint=False, dtype=np.float32)
    y0, x0 = y.astype(int), x.astype(int)
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]
    a, b = g[y0][:, x0], g[y0][:, x0 + 1]
    c, d = g[y0 + 1][:, x0], g[y0 + 1][:, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def _mix(base, other, t):
    """Per-pixel blend of two RGB colours by t in [0, 1]: (H, W, 3)."""
    base, other = np.asarray(base, np.float32), np.asarray(other, np.float32)
    return base + (other - base) * t[..., None]


def grass(rng, h, w):
    """Green with thin vertical blades (column noise) and speckle."""
    cols = rng.random(w).astype(np.float32)
    blades = np.clip(cols[None, :] * 1.3 - 0.15 + 0.25 * rng.random((h, w), dtype=np.float32), 0, 1)
    return _mix((40, 110, 30), (120, 200, 70), blades)


def water(rng, h, w):
    """Blue horizontal waves, gently bent."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    f = rng.uniform(0.35, 0.5) * 128 / h
    t = 0.5 + 0.5 * np.sin(yy * f + 3.0 * np.sin(xx * 0.08 * 128 / w + rng.uniform(0, 6.3)))
    return _mix((20, 60, 140), (90, 170, 230), t ** 2)


def brick(rng, h, w):
    """Red-brown bricks in offset rows with light mortar lines."""
    yy, xx = np.mgrid[0:h, 0:w]
    bh, bw = max(h // 10, 4), max(w // 5, 8)
    row = (yy + rng.integers(bh)) // bh
    xs = xx + (row % 2) * (bw // 2) + rng.integers(bw)
    mortar = ((yy + rng.integers(bh)) % bh < 2) | (xs % bw < 2)
    shade = rng.uniform(0.8, 1.1, size=(row.max() + 2, xs.max() // bw + 2)).astype(np.float32)
    img = np.asarray((160, 60, 40), np.float32) * shade[row, xs // bw][..., None]
    img[mortar] = (200, 195, 185)
    return img


def sand(rng, h, w):
    """Pale beige, fine speckle and faint diagonal ripples."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ripple = 0.5 + 0.5 * np.sin((xx + yy) * 0.25 * 128 / h)
    t = 0.6 * rng.random((h, w), dtype=np.float32) + 0.4 * ripple
    return _mix((200, 175, 120), (240, 220, 170), t)


def wood(rng, h, w):
    """Brown grain: wavy horizontal stripes of varying width (a new word for segmentation)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bend = 6.0 * _smooth_noise(rng, h, w, 3)
    t = 0.5 + 0.5 * np.sin((yy * 0.9 * 128 / h + 4 * bend) * rng.uniform(0.9, 1.1))
    return _mix((90, 50, 20), (170, 110, 60), t ** 3)


def gravel(rng, h, w):
    """Grey blobs of different shades (coarse plus fine noise; a new word for segmentation)."""
    t = 0.7 * (_smooth_noise(rng, h, w, 12) > 0.5) + 0.3 * rng.random((h, w), dtype=np.float32)
    return _mix((80, 80, 85), (175, 175, 170), t)


TEXTURES: Dict[str, Callable] = {"grass": grass, "water": water, "brick": brick, "sand": sand,
                                 "wood": wood, "gravel": gravel}



# Surface patterns: (rng, h, w) -> (h, w) float in [0, 1]: 1 = the thing's colour, 0 = the pattern's
# second tone (``PATTERN_TONES``: "dark", a fifth of the colour, or "light", near white). Patterns differ
# in texture *and* in the share and tone of their second colour, so even a patch's mean colour tells
# them apart (a small ViT learns mean colour in a hundred steps, texture alone far more slowly).
def _coords(rng, h, w, period):
    """Pixel coordinates in units of a jittered pattern period, with a random phase."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    p = period * rng.uniform(0.9, 1.1) * h / 128
    return (yy + rng.uniform(0, p)) / p, (xx + rng.uniform(0, p)) / p


def solid(rng, h, w):
    """The full colour, with faint shading."""
    return np.clip(0.9 + 0.1 * _smooth_noise(rng, h, w, 2), 0, 1)


def striped(rng, h, w):
    """Diagonal bands (down-right) of colour and near-white, half each, period about 10 px at 128 px."""
    y, x = _coords(rng, h, w, 10.0)
    return (((x + y) / np.sqrt(2)) % 1.0 < 0.5).astype(np.float32)


def dotted(rng, h, w):
    """Sparse dark round dots on the colour (a fifth of the area), about 12 px apart."""
    y, x = _coords(rng, h, w, 12.0)
    return ((((y % 1.0) - 0.5) ** 2 + ((x % 1.0) - 0.5) ** 2) >= 0.06).astype(np.float32)


def checked(rng, h, w):
    """A checkerboard of colour and dark squares, 6 px each at 128 px."""
    y, x = _coords(rng, h, w, 12.0)
    return (((y % 1.0 < 0.5) ^ (x % 1.0 < 0.5))).astype(np.float32)


def zigzag(rng, h, w):
    """Thin near-white zigzag lines across the colour (a new word for segmentation)."""
    y, x = _coords(rng, h, w, 10.0)
    tri = np.abs((x % 1.0) - 0.5)
    return (((y + tri) % 1.0) > 0.3).astype(np.float32)


PATTERNS: Dict[str, Callable] = {"solid": solid, "striped": striped, "dotted": dotted, "checked": checked,
                                 "zigzag": zigzag}
PATTERN_TONES: Dict[str, str] = {"solid": "dark", "striped": "light", "dotted": "dark", "checked": "dark",
                                 "zigzag": "light"}


# Silhouettes on unit-radius coordinates (u, v), both (h, w) float arrays: free, unnamed variation.
def disc(u, v):
    return u * u + v * v <= 1.0


def box(u, v):
    return (np.abs(u) <= 0.85) & (np.abs(v) <= 0.85)


def wedge(u, v):
    s3 = np.sqrt(3.0)   # an equilateral triangle's corners rounded by the unit disc
    return (v <= 0.6) & (s3 * u - v <= 1.2) & (-s3 * u - v <= 1.2) & (u * u + v * v <= 1.0)


def oval(u, v):
    return u * u / 1.0 + v * v / 0.45 <= 1.0


SILHOUETTES: Dict[str, Callable] = {"disc": disc, "box": box, "wedge": wedge, "oval": oval}

COLOURS: Dict[str, tuple] = {"red": (220, 35, 35), "green": (40, 200, 50), "blue": (40, 80, 235),
                             "yellow": (245, 220, 30), "cyan": (30, 210, 220), "purple": (150, 40, 200)}
