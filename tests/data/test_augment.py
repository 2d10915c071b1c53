"""The training augmentation: determinism, sizes, padding, colour jitter and image/label alignment."""
import colorsys

import numpy as np
import pytest
import torch
from PIL import Image

from ebseg_lite.data import augment as A


def gen(seed):
    return torch.Generator().manual_seed(seed)


def sample(h=90, w=120, seed=0):
    g = gen(1000 + seed)
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
    label = torch.randint(0, 5, (h, w), generator=g)
    return image, label


def test_short_side_choices_and_rule():
    assert A.TRAIN_SHORT_SIDES == tuple(range(320, 961, 64))
    assert A.shortest_edge_size(480, 640, 320, 2560) == (320, 427)
    assert A.shortest_edge_size(640, 480, 960, 2560) == (1280, 960)
    assert A.shortest_edge_size(100, 2000, 960, 2560) == (128, 2560)  # long side capped


def test_short_sides_from_the_config_ends():
    assert A.short_side_choices(320, 960) == A.TRAIN_SHORT_SIDES  # official MIN_SIZE_TRAIN, 11 values
    assert A.short_side_choices(64, 192) == (64, 76, 89, 102, 115, 128, 140, 153, 166, 179, 192)
    assert A.short_side_choices(500, 500) == (500,)
    with pytest.raises(ValueError, match="min_short"):
        A.short_side_choices(960, 320)
    image, label = sample(90, 120)
    for s in range(4):  # one allowed short side: the crop window always lies inside a 100 x 133 resize
        out, lab = A.train_augment(image, label, gen(s), crop=128, short_sides=(100,))
        assert (lab != 255).sum().item() == 100 * 128 and (lab[100:] == 255).all()


def test_resize_matches_detectron2_resize_transform():
    # detectron2 ResizeTransform: a uint8 image goes through PIL bilinear; the label, read as float64
    # by the official mapper, through torch's nearest (align_corners unset)
    image, label = sample(90, 120, seed=3)
    img, lab = A.resize_pair(image, label, (200, 267))
    pil = Image.fromarray(image.permute(1, 2, 0).numpy()).resize((267, 200), Image.BILINEAR)
    assert torch.equal(img, torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1))
    rows = (torch.arange(200) * (90 / 200)).floor().long()  # nearest: source index floor(i * in / out)
    cols = (torch.arange(267) * (120 / 267)).floor().long()
    assert torch.equal(lab, label[rows][:, cols])


def test_same_seed_same_output_and_seeds_differ():
    image, label = sample()
    a = A.train_augment(image, label, gen(3))
    b = A.train_augment(image, label, gen(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    outs = [A.train_augment(image, label, gen(s))[0] for s in range(4)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])


@pytest.mark.parametrize("hw", [(90, 120), (700, 500), (40, 900)])
def test_output_is_640_square(hw):
    image, label = sample(*hw)
    for s in range(3):
        img, lab = A.train_augment(image, label, gen(s), ignore_value=65535)
        assert img.shape == (3, 640, 640) and img.dtype == torch.uint8
        assert lab.shape == (640, 640) and lab.dtype == torch.int64
        assert set(lab.unique().tolist()) <= {0, 1, 2, 3, 4, 65535}


def test_pipeline_is_the_documented_composition():
    image, label = sample()
    g = gen(7)
    i, l = A.random_resize(image, label, g)
    i, l = A.random_crop(i, l, g)
    i = A.color_jitter_ssd(i, g)
    i, l = A.random_hflip(i, l, g)
    i, l = A.pad_to(i, l)
    ref = A.train_augment(image, label, gen(7))
    assert torch.equal(ref[0], i) and torch.equal(ref[1], l)


def test_pad_values_and_placement():
    image, label = sample(10, 12)
    img, lab = A.pad_to(image, label, 16, ignore_value=255)
    assert torch.equal(img[:, :10, :12], image) and torch.equal(lab[:10, :12], label)
    assert (img[:, 10:, :] == 128).all() and (img[:, :, 12:] == 128).all()
    assert (lab[10:, :] == 255).all() and (lab[:, 12:] == 255).all()
    with pytest.raises(ValueError, match="crop it first"):
        A.pad_to(image, label, 8)


def test_padding_in_full_pipeline_is_grey_and_ignored():
    image, label = sample(100, 100)
    padded = 0
    for s in range(8):
        img, lab = A.train_augment(image, label, gen(s))
        pad = lab == 255
        padded += int(pad.any())
        assert (img[:, pad] == 128).all()
        assert not pad[0, 0]  # padding only on the bottom and right
    assert padded > 0  # a short side below 640 was drawn at least once


def test_crop_window_and_small_images():
    image, _ = sample(700, 800)
    ys, xs = torch.meshgrid(torch.arange(700), torch.arange(800), indexing="ij")
    label = ys * 1000 + xs  # each pixel's id names its position
    offsets = set()
    for s in range(4):
        img, lab = A.random_crop(image, label, gen(s), 640)
        y0, x0 = divmod(int(lab[0, 0]), 1000)
        offsets.add((y0, x0))
        assert img.shape == (3, 640, 640) and 0 <= y0 <= 60 and 0 <= x0 <= 160
        assert torch.equal(img, image[:, y0:y0 + 640, x0:x0 + 640])
        assert torch.equal(lab, label[y0:y0 + 640, x0:x0 + 640])
    assert len(offsets) > 1
    small, slab = sample(30, 40)
    i2, l2 = A.random_crop(small, slab, gen(0), 640)
    assert torch.equal(i2, small) and torch.equal(l2, slab)


def test_hflip_moves_image_and_label_together():
    image = torch.zeros(3, 4, 5, dtype=torch.uint8)
    label = torch.zeros(4, 5, dtype=torch.long)
    image[:, 2, 1], label[2, 1] = 200, 3
    flipped = [A.random_hflip(image, label, gen(s)) for s in range(10)]
    moved = [(i, l) for i, l in flipped if l[2, 3] == 3]
    assert 0 < len(moved) < 10  # p = 0.5 over ten seeds
    for i, l in moved:
        assert (i[:, 2, 3] == 200).all() and l[2, 1] == 0 and (i[:, 2, 1] == 0).all()


def test_geometry_keeps_image_and_label_aligned():
    # left half dark with label 0, right half bright with label 1; jitter keeps the order of two greys
    image = torch.zeros(3, 120, 160, dtype=torch.uint8)
    image[:, :, 80:] = 220
    label = torch.zeros(120, 160, dtype=torch.long)
    label[:, 80:] = 1
    for s in range(6):
        img, lab = A.train_augment(image, label, gen(s))
        grey = img[0].float()
        both = (lab == 0).any() and (lab == 1).any()
        if both:
            assert grey[lab == 1].mean() > grey[lab == 0].mean() + 20
        assert (img[0] == img[1]).all() and (img[1] == img[2]).all()  # greys stay grey


def test_hsv_matches_colorsys():
    image, _ = sample(8, 8)
    hsv = A.rgb_to_hsv8(image)
    for y, x in [(0, 0), (3, 5), (7, 2)]:
        h, s, v = colorsys.rgb_to_hsv(*(image[:, y, x].double() / 255).tolist())
        assert abs(hsv[1, y, x].item() - s * 255) <= 0.5 and hsv[2, y, x].item() == round(v * 255)
        dh = abs(hsv[0, y, x].item() - h * 180)
        assert min(dh, 180 - dh) <= 0.5
    assert (A.hsv8_to_rgb(hsv).int() - image.int()).abs().max() <= 5  # 8-bit HSV quantisation


def test_hue_and_saturation_steps():
    red = torch.zeros(3, 2, 2, dtype=torch.uint8)
    red[0] = 255
    assert A._hue(red, 60)[:, 0, 0].tolist() == [0, 255, 0]  # +120 degrees: red -> green
    assert A._hue(red, -60)[:, 0, 0].tolist() == [0, 0, 255]
    grey = A._saturation(torch.tensor([200, 100, 50], dtype=torch.uint8).view(3, 1, 1), 0.0)
    assert grey.flatten().tolist() == [200, 200, 200]


def test_color_jitter_deterministic_and_bounded():
    image, _ = sample(20, 20)
    a, b = A.color_jitter_ssd(image, gen(5)), A.color_jitter_ssd(image, gen(5))
    assert torch.equal(a, b) and a.dtype == torch.uint8 and a.shape == image.shape
    changed = sum(not torch.equal(A.color_jitter_ssd(image, gen(s)), image) for s in range(10))
    assert changed >= 5  # each step fires with p = 1/2; all four skip with p = 1/16
