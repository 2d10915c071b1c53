"""A small synthetic picture to try the pipeline on, drawn with numpy and PIL only.

``make_sample_scene`` paints a sky gradient with a sun and clouds, a grass field with a noise texture,
a house, a tree and a red ball. It is our own picture (no photo, no licence to track), deterministic
from its seed, and stands in for a real photograph in ``make demo`` and the early notebooks until the
toy world replaces it. ``data_samples/scene.png`` is ``make_sample_scene(seed=0)``.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
from PIL import Image, ImageDraw


def _box(x0: float, y0: float, x1: float, y1: float, w: int, h: int) -> Tuple[int, int, int, int]:
    """Fractions of the image size -> integer pixel box (left, top, right, bottom)."""
    return round(x0 * w), round(y0 * h), round(x1 * w), round(y1 * h)


def make_sample_scene(seed: int = 0, size: Tuple[int, int] = (480, 640)) -> np.ndarray:
    """Draw the sample scene.

    Args:
        seed: moves the objects a little, changes clouds and grass texture; same seed, same picture.
        size: (H, W), each at least 16.
    Returns:
        (H, W, 3) uint8 RGB array.
    """
    h, w = (int(s) for s in size)
    if h < 16 or w < 16:
        raise ValueError(f"size must be at least (16, 16), got {size}")
    rng = np.random.default_rng(seed)
    horizon = int(h * rng.uniform(0.5, 0.6))

    # sky: vertical gradient from deep blue (top) to pale blue (horizon)
    t = np.linspace(0.0, 1.0, horizon)[:, None, None]  # (horizon, 1, 1)
    sky = (1 - t) * np.array([70, 130, 220]) + t * np.array([185, 215, 245])  # (horizon, 1, 3)
    # grass: green, darker towards the bottom, with a smooth low-frequency noise texture
    g = h - horizon
    t = np.linspace(0.0, 1.0, g)[:, None, None]  # (g, 1, 1)
    grass = (1 - t) * np.array([110, 175, 70]) + t * np.array([55, 125, 40])  # (g, 1, 3)
    coarse = rng.normal(0.0, 1.0, (max(2, g // 8), max(2, w // 8))).astype(np.float32)
    noise = np.asarray(Image.fromarray(coarse, "F").resize((w, g), Image.Resampling.BILINEAR))  # (g, W)
    grass = grass + 12.0 * noise[..., None]  # (g, W, 3)
    pixels = np.concatenate([np.broadcast_to(sky, (horizon, w, 3)), grass], axis=0)  # (H, W, 3)
    img = Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    hz = horizon / h  # horizon as a fraction of the height

    # sun and clouds
    sx, sy, sr = rng.uniform(0.75, 0.9), rng.uniform(0.08, 0.18), 0.06
    draw.ellipse(_box(sx - sr * h / w, sy - sr, sx + sr * h / w, sy + sr, w, h), fill=(255, 220, 80))
    for _ in range(int(rng.integers(2, 4))):
        cx, cy = rng.uniform(0.05, 0.65), rng.uniform(0.06, hz - 0.2)
        for dx, dy, r in ((0.0, 0.0, 0.035), (0.04, -0.02, 0.045), (0.085, 0.0, 0.035)):
            draw.ellipse(_box(cx + dx - r * 1.6, cy + dy - r, cx + dx + r * 1.6, cy + dy + r, w, h),
                         fill=(250, 250, 252))

    # house: wall, roof, door, window (standing on the horizon line)
    hx = rng.uniform(0.1, 0.2)
    wall = _box(hx, hz - 0.2, hx + 0.28, hz + 0.08, w, h)
    draw.rectangle(wall, fill=(215, 185, 140), outline=(120, 95, 70))
    draw.polygon([(wall[0] - 0.02 * w, wall[1]), (wall[2] + 0.02 * w, wall[1]),
                  ((wall[0] + wall[2]) / 2, wall[1] - 0.14 * h)], fill=(160, 55, 45))
    draw.rectangle(_box(hx + 0.04, hz - 0.07, hx + 0.1, hz + 0.08, w, h), fill=(110, 70, 40))
    win = _box(hx + 0.15, hz - 0.14, hx + 0.24, hz - 0.04, w, h)
    draw.rectangle(win, fill=(175, 215, 240), outline=(255, 255, 255), width=max(1, w // 200))
    draw.line([((win[0] + win[2]) / 2, win[1]), ((win[0] + win[2]) / 2, win[3])], fill="white",
              width=max(1, w // 300))
    draw.line([(win[0], (win[1] + win[3]) / 2), (win[2], (win[1] + win[3]) / 2)], fill="white",
              width=max(1, w // 300))

    # tree: trunk and a crown of overlapping circles
    tx = rng.uniform(0.6, 0.72)
    draw.rectangle(_box(tx - 0.015, hz - 0.12, tx + 0.015, hz + 0.1, w, h), fill=(105, 70, 40))
    for dx, dy, r in ((0.0, -0.2, 0.09), (-0.045, -0.14, 0.075), (0.045, -0.14, 0.075)):
        draw.ellipse(_box(tx + dx - r * h / w, hz + dy - r, tx + dx + r * h / w, hz + dy + r, w, h),
                     fill=(40, 110, 45))

    # red ball on the grass, with a highlight
    bx, by, br = rng.uniform(0.4, 0.55), rng.uniform(hz + 0.18, 0.85), 0.06
    draw.ellipse(_box(bx - br * h / w, by - br, bx + br * h / w, by + br, w, h), fill=(215, 30, 35))
    hl = br * 0.3
    draw.ellipse(_box(bx - 0.4 * br * h / w - hl * h / w, by - 0.4 * br - hl,
                      bx - 0.4 * br * h / w + hl * h / w, by - 0.4 * br + hl, w, h), fill=(245, 140, 140))
    return np.asarray(img).copy()  # (H, W, 3) uint8
