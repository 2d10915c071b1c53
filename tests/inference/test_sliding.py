"""Sliding-window inference: the tiling by hand, coverage, and agreement with whole-image predict."""
import pytest
import torch
import torch.nn.functional as F

from ebseg_lite.inference.sliding import (resize_argmax, sliding_window_predict, sliding_windows, window_and_stride,
                                window_starts)

NAMES = ["sky", "grass", "house", "tree", "ball"]


def test_window_starts_by_hand():
    assert window_starts(10, 4, 3) == [0, 3, 6]        # 6 + 4 = 10 ends exactly at the border
    assert window_starts(11, 4, 3) == [0, 3, 6, 7]     # the last window is moved back to end at 11
    assert window_starts(5, 8, 3) == [0]               # window longer than the axis: one crop
    assert window_and_stride(640) == (640, 427)        # the defaults: short side, 2/3 rounded up
    assert window_and_stride(640, 300, 100) == (300, 100)


@pytest.mark.parametrize("size,window,stride", [((128, 160), 128, 86), ((90, 250), 64, 40),
                                                ((250, 90), 96, 96), ((33, 47), 10, 7), ((20, 20), 64, 10)])
def test_windows_cover_every_pixel(size, window, stride):
    count = torch.zeros(size)
    for y0, y1, x0, x1 in sliding_windows(size, window, stride):
        assert 0 <= y0 < y1 <= size[0] and 0 <= x0 < x1 <= size[1]
        assert (y1 - y0, x1 - x0) == (min(window, size[0]), min(window, size[1]))
        count[y0:y1, x0:x1] += 1
    assert count.min() >= 1


def test_stride_longer_than_window_is_refused():
    with pytest.raises(ValueError, match="stride <= window"):
        sliding_windows((100, 100), 32, 40)


def test_resize_argmax_in_chunks_equals_whole():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(7, 12, 15, generator=g)  # (K, h, w)
    big = F.interpolate(scores[None], size=(20, 31), mode="bilinear", align_corners=False)[0]
    labels, best = resize_argmax(scores, (20, 31), max_elems=20 * 31 * 2)  # two classes per chunk
    assert torch.equal(labels, big.argmax(0)) and torch.allclose(best, big.max(0).values)


def test_one_window_over_a_test_size_image_is_whole_image_predict(tiny_model, rgb_image):
    # rgb_image is 128 x 160, already at the tiny preset's test short side (128): no resize
    whole = tiny_model.predict(rgb_image, NAMES)
    slid = sliding_window_predict(tiny_model, rgb_image, NAMES, window=160)
    assert slid.windows == [(0, 128, 0, 160)]
    assert torch.equal(slid.labels, whole.labels) and torch.equal(slid.score, whole.score)
    assert torch.allclose(slid.scores, whole.sem_seg)


def test_overlaps_are_averaged(tiny_model, rgb_image):
    slid = sliding_window_predict(tiny_model, rgb_image, NAMES, window=128, stride=32)
    assert slid.windows == [(0, 128, 0, 128), (0, 128, 32, 160)]
    left = tiny_model.predict(rgb_image[:, :, :128], NAMES, resize=False).sem_seg   # (K, 128, 128)
    right = tiny_model.predict(rgb_image[:, :, 32:], NAMES, resize=False).sem_seg   # (K, 128, 128)
    assert torch.equal(slid.count[0], torch.tensor([1.0] * 32 + [2.0] * 96 + [1.0] * 32))
    assert torch.allclose(slid.scores[:, :, :32], left[:, :, :32])
    assert torch.allclose(slid.scores[:, :, 32:128], (left[:, :, 32:] + right[:, :, :96]) / 2)
    assert torch.allclose(slid.scores[:, :, 128:], right[:, :, 96:])
    assert torch.equal(slid.labels, slid.scores.argmax(0))  # at the test size no resize before the argmax


@pytest.mark.parametrize("h,w", [(90, 250), (250, 90)])
def test_non_square_images_come_back_at_their_own_size(tiny_model, h, w):
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    whole = tiny_model.predict(image, NAMES)
    one = sliding_window_predict(tiny_model, image, NAMES, window=10_000)
    assert one.input_size == ((128, 356) if h < w else (356, 128))
    assert one.labels.shape == (h, w) and one.score.shape == (h, w)
    # the only difference to predict: sigmoid before (here) or after (predict) the final resize
    assert (one.labels == whole.labels).float().mean() > 0.99
    assert (one.score - whole.score).abs().max() < 1e-2
    tiled = sliding_window_predict(tiny_model, image, NAMES, window=96)  # stride 64
    assert len(tiled.windows) == 2 * 6  # short side 0, 32; long side 0, 64, ..., 256 and 260
    assert tiled.labels.shape == (h, w) and tiled.scores.shape == (len(NAMES),) + tiled.input_size
    assert tiled.count.min() >= 1
    assert tiled.count.sum() == sum((y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in tiled.windows)
    assert int(tiled.labels.max()) < len(NAMES)
