"""The session palette: glasbey colours handed out per class name, first come first served."""
import numpy as np
import pytest

from ebseg_lite.viz.palette import BASE, ClassPalette, boundaries, label_map_rgb


def test_base_is_colorcets_glasbey():
    colorcet = pytest.importorskip("colorcet")
    assert BASE.shape == (256, 3) and BASE.dtype == np.uint8
    assert BASE[0].tolist() == [int(colorcet.glasbey[0][i:i + 2], 16) for i in (1, 3, 5)]
    assert len({tuple(r) for r in BASE.tolist()}) == 256


def test_first_names_get_the_first_colours_and_keep_them():
    pal = ClassPalette()
    a = pal.colors(["grass", "purple circle", "purple cross"])
    assert a.tolist() == BASE[:3].tolist()
    b = pal.colors(["purple cross", "wood", "Grass "])   # known names keep theirs, "wood" gets the 4th
    assert b.tolist() == [BASE[2].tolist(), BASE[3].tolist(), BASE[0].tolist()]
    assert pal.known() == ["grass", "purple circle", "purple cross", "wood"]
    pal.reset()
    assert pal.colors(["wood"]).tolist() == [BASE[0].tolist()]


def test_palette_cycles_after_its_colours():
    pal = ClassPalette(BASE[:2])
    assert pal.colors(["a", "b", "c"]).tolist() == [BASE[0].tolist(), BASE[1].tolist(), BASE[0].tolist()]


def test_label_map_rgb_and_boundaries():
    lab = np.array([[0, 0, 1], [0, 255, 1]])
    cols = np.array([[10, 20, 30], [40, 50, 60]], dtype=np.uint8)
    rgb = label_map_rgb(lab, cols)
    assert rgb[0, 0].tolist() == [10, 20, 30] and rgb[1, 2].tolist() == [40, 50, 60]
    assert rgb[1, 1].tolist() == [255, 255, 255]
    assert boundaries(lab).tolist() == [[False, True, True], [True, True, True]]
    wide = np.zeros((9, 9), int)
    wide[:, 5:] = 1
    assert boundaries(wide, 1)[0].tolist() == [False] * 4 + [True, True] + [False] * 3
    assert boundaries(wide, 4)[0].tolist() == [False] * 2 + [True] * 6 + [False]
