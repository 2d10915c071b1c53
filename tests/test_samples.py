"""The synthetic sample scene: deterministic, right shape and dtype, and the stored PNG is reproducible."""
import pathlib

import numpy as np
import pytest
from PIL import Image

from ebseg_lite.samples import make_sample_scene

SCENE_PNG = pathlib.Path(__file__).resolve().parents[1] / "data_samples" / "scene.png"


def test_shape_dtype_and_determinism():
    a = make_sample_scene(seed=0)
    assert a.shape == (480, 640, 3) and a.dtype == np.uint8
    assert np.array_equal(a, make_sample_scene(seed=0))
    assert not np.array_equal(a, make_sample_scene(seed=1))


def test_custom_and_tiny_sizes():
    for size in ((100, 37), (16, 16), (33, 250)):
        b = make_sample_scene(seed=3, size=size)
        assert b.shape == (*size, 3) and b.dtype == np.uint8
    with pytest.raises(ValueError, match="at least"):
        make_sample_scene(size=(8, 100))


def test_scene_has_its_objects():
    a = make_sample_scene(seed=0).astype(int)
    red = (a[..., 0] > 190) & (a[..., 1] < 60) & (a[..., 2] < 60)  # the ball
    green = (a[..., 1] > a[..., 0] + 30) & (a[..., 1] > a[..., 2] + 30)  # grass and tree
    blue = (a[..., 2] > a[..., 0] + 40)  # sky
    assert 2000 < red.sum() < 20000
    assert green.mean() > 0.3 and blue.mean() > 0.3


def test_stored_png_matches_the_function():
    assert SCENE_PNG.stat().st_size < 300_000
    stored = np.asarray(Image.open(SCENE_PNG).convert("RGB"))
    assert np.array_equal(stored, make_sample_scene(seed=0, size=(480, 640)))
