"""show_segmentations: panels at the image's size, one legend in the drawn colours, seen/new in titles."""
import io

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgb

from ebseg_lite.viz.palette import class_colors
from ebseg_lite.viz.segmentation import show_segmentations

NAMES = ["sky", "grass", "house"]


@pytest.fixture
def scene():
    img = torch.full((3, 40, 60), 100, dtype=torch.uint8)
    truth = torch.zeros(40, 60, dtype=torch.long)
    truth[20:] = 1                      # sky 50 %, grass 50 %
    pred = truth.clone()
    pred[5:15, 10:30] = 2               # a house of 200 px = 8.3 % of 2400
    return img, truth, pred


def test_one_image_panels_legend_and_titles(scene):
    img, truth, pred = scene
    fig = show_segmentations(img, {"ground truth": truth, "prediction": pred}, NAMES, seen=[True, True, False])
    assert len(fig.axes) == 3
    for ax in fig.axes:   # every panel shows an image of the image's own size
        assert ax.get_images()[0].get_array().shape[:2] == (40, 60)
    assert fig.axes[1].get_title() == "ground truth\n2 classes, 0 new"
    assert fig.axes[2].get_title() == "prediction\n3 classes, 1 new"
    legend = fig.legends[0]
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts == ["sky (seen)  50 | 42", "grass (seen)  50 | 50", "house (new)  - | 8"]
    assert "ground truth | prediction" in legend.get_title().get_text()
    cols = class_colors(NAMES) / 255.0
    for patch, k in zip(legend.get_patches(), (0, 1, 2)):
        assert np.allclose(to_rgb(patch.get_facecolor()), cols[k])
    drawn = fig.axes[2].get_images()[0].get_array()
    assert np.allclose(np.asarray(drawn[5, 20]) / 255.0, cols[2])   # the house outline is the swatch colour
    fig.savefig(io.BytesIO(), format="png")


def test_rows_and_per_column_vocabularies(scene):
    img, truth, pred = scene
    mine = (pred == 2).long()           # a 2-class vocabulary: 0 = "lawn", 1 = "house"
    fig = show_segmentations([img, img], [{"all": pred, "mine": mine}, {"all": truth, "mine": mine}],
                             {"all": NAMES, "mine": ["lawn", "house"]}, image_titles=["a", "b"])
    assert len(fig.axes) == 6
    assert [fig.axes[i].get_title() for i in (0, 3)] == ["a", "b"]
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert sorted(texts) == ["grass", "house", "lawn", "sky"]       # no shares for several images, no tags
    house = [p for p, t in zip(fig.legends[0].get_patches(), texts) if t == "house"][0]
    assert np.allclose(to_rgb(house.get_facecolor()), class_colors(["house"])[0] / 255.0)
    with pytest.raises(ValueError, match="rows"):
        show_segmentations([img], [{"a": pred}, {"a": pred}], NAMES)
    with pytest.raises(ValueError, match="same"):
        show_segmentations([img, img], [{"a": pred}, {"b": pred}], NAMES)
    with pytest.raises(ValueError, match="no entry"):
        show_segmentations(img, {"a": pred}, {"b": NAMES})
