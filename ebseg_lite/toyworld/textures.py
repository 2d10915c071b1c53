"""Procedural "stuff" textures and "thing" shapes of the toy world, numpy only.

Each texture is a function ``(rng, H, W) -> (H, W, 3) float32`` in 0..255; each shape a function of
rotated, size-normalised coordinates ``(u, v)`` (the shape's radius is 1) returning a bool mask.
Textures are chosen to differ in colour *and* structure (stripes, waves, a grid, speckle, grain,
blobs) so a tiny CLIP can tell them apart from 64-pixel thumbnails.
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


# Shapes on unit-radius coordinates (u, v), both (h, w) float arrays.
def circle(u, v):
    return u * u + v * v <= 1.0


def square(u, v):
    return (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8)


def triangle(u, v):
    # equilateral, inscribed in the unit circle, pointing up (v grows downwards)
    s3 = np.sqrt(3.0)
    return (v <= 0.5) & (s3 * u - v <= 1.0) & (-s3 * u - v <= 1.0)


def ring(u, v):
    d = u * u + v * v
    return (d <= 1.0) & (d >= 0.36)


def cross(u, v):
    au, av = np.abs(u), np.abs(v)
    return ((au <= 0.3) & (av <= 0.95)) | ((av <= 0.3) & (au <= 0.95))


SHAPES: Dict[str, Callable] = {"circle": circle, "square": square, "triangle": triangle,
                               "ring": ring, "cross": cross}

COLOURS: Dict[str, tuple] = {"red": (220, 35, 35), "green": (40, 200, 50), "blue": (40, 80, 235),
                             "yellow": (245, 220, 30), "white": (245, 245, 245), "purple": (150, 40, 200)}
