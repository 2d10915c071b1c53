"""The whole test-time size path on non-square images, against an independent reading of detectron2.

Official path (EBSeg at f61977d on detectron2): ``ResizeShortestEdge(640, 2560)`` (PIL bilinear) ->
normalise -> ``ImageList.from_tensors(size_divisibility=32)`` (zero padding at the bottom/right) ->
mask logits (N, Hp/4, Wp/4) bilinear to (Hp, Wp) -> ``sem_seg_postprocess``: crop to the resized
(h', w'), bilinear to the original (H, W) -> sigmoid, eq. 14, argmax. The ``d2_*`` helpers below are
written from detectron2's docstrings and code as read, kept apart from ebseg_lite's implementation.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ebseg_lite.inference.outputs import upsample_masks
from ebseg_lite.io.images import pad_to_multiple, resize_shortest_edge, shortest_edge_size
from ebseg_lite.modeling.balance import semantic_inference

# (H, W) -> (h', w') at short 640, long cap 2560, worked out by hand
SIZES = {
    (375, 500): (640, 853),     # a VOC-like landscape photo: 640 * 500 / 375 = 853.3
    (500, 375): (853, 640),
    (683, 1024): (640, 960),    # 640 * 1024 / 683 = 959.53 -> 960
    (1024, 683): (960, 640),
    (2000, 300): (2560, 384),   # 4266.7 x 640 is capped: x 0.6
    (300, 2000): (384, 2560),
    (640, 640): (640, 640),
}


def d2_output_shape(oldh, oldw, short_edge_length, max_size):
    """detectron2 ResizeShortestEdge.get_output_shape, float arithmetic, round with int(x + 0.5)."""
    size = short_edge_length * 1.0
    scale = size / min(oldh, oldw)
    newh, neww = (size, scale * oldw) if oldh < oldw else (scale * oldh, size)
    if max(newh, neww) > max_size:
        scale = max_size * 1.0 / max(newh, neww)
        newh, neww = newh * scale, neww * scale
    return int(newh + 0.5), int(neww + 0.5)


def d2_resize(img_hwc: np.ndarray, newh: int, neww: int) -> np.ndarray:
    """ResizeTransform.apply_image on uint8: PIL resize to (neww, newh), bilinear (the default interp)."""
    return np.asarray(Image.fromarray(img_hwc).resize((neww, newh), Image.BILINEAR))


def d2_image_list(tensors, size_divisibility=32):
    """ImageList.from_tensors: pad every image to the batch max rounded up to the divisibility, value 0."""
    max_h = max(t.shape[-2] for t in tensors)
    max_w = max(t.shape[-1] for t in tensors)
    max_h = (max_h + size_divisibility - 1) // size_divisibility * size_divisibility
    max_w = (max_w + size_divisibility - 1) // size_divisibility * size_divisibility
    out = torch.zeros(len(tensors), tensors[0].shape[0], max_h, max_w, dtype=tensors[0].dtype)
    for i, t in enumerate(tensors):
        out[i, :, : t.shape[-2], : t.shape[-1]] = t
    return out, [tuple(t.shape[-2:]) for t in tensors]


def d2_sem_seg_postprocess(result, img_size, output_height, output_width):
    """Crop (C, H, W) to img_size, then bilinear (align_corners=False) to the output size."""
    result = result[:, : img_size[0], : img_size[1]][None]
    return F.interpolate(result, size=(output_height, output_width), mode="bilinear", align_corners=False)[0]


@pytest.mark.parametrize("hw", sorted(SIZES))
def test_output_size_matches_detectron2(hw):
    assert d2_output_shape(*hw, 640, 2560) == SIZES[hw]
    assert shortest_edge_size(*hw, 640, 2560) == SIZES[hw]


def test_output_size_over_many_shapes():
    rng = np.random.RandomState(0)
    for h, w in rng.randint(16, 4000, size=(300, 2)).tolist():
        for short, cap in ((640, 2560), (320, 1280), (896, 3584)):
            assert shortest_edge_size(h, w, short, cap) == d2_output_shape(h, w, short, cap), (h, w, short)


@pytest.mark.parametrize("hw", [(375, 500), (683, 1024), (2000, 300)])
def test_resize_pixels_match_detectron2(hw):
    rng = np.random.RandomState(hw[0])
    img = rng.randint(0, 256, size=(*hw, 3), dtype=np.uint8)
    out, size = resize_shortest_edge(torch.from_numpy(img).permute(2, 0, 1).contiguous(), 640, 2560)
    ref = d2_resize(img, *SIZES[hw])
    assert size == SIZES[hw] and tuple(out.shape) == (3, *SIZES[hw]) and out.dtype == torch.uint8
    assert torch.equal(out.permute(1, 2, 0), torch.from_numpy(ref.copy()))


@pytest.mark.parametrize("hw", sorted(SIZES))
def test_padding_matches_image_list(hw):
    h, w = SIZES[hw]
    x = torch.randn(1, 3, h, w)  # an already normalised image
    ours, orig = pad_to_multiple(x, 32)
    ref, sizes = d2_image_list([x[0]], 32)
    assert orig == (h, w) == sizes[0]
    assert ours.shape == ref.shape and torch.equal(ours, ref)
    assert ours.shape[-2] % 32 == 0 and ours.shape[-1] % 32 == 0 and ours.shape[-2] - h < 32


def _official_labels(map_probs, masks, input_size, padded_size, orig_size):
    m = F.interpolate(masks[None], size=padded_size, mode="bilinear", align_corners=False)[0]
    m = d2_sem_seg_postprocess(m, input_size, *orig_size)  # (N, H, W) logits at the original size
    sem = torch.einsum("nk,nhw->khw", map_probs, m.sigmoid())
    top2 = sem.topk(2, dim=0).values
    return sem.argmax(0), top2[0] - top2[1]


@pytest.mark.parametrize("hw", [(375, 500), (683, 1024), (2000, 300)])
def test_whole_path_with_the_tiny_model(tiny_model, monkeypatch, hw):
    # the tiny preset tests at short side 128, cap 512 (the 640 / 2560 ratio): 2000 x 300 is capped too
    inf = tiny_model.cfg.inference
    monkeypatch.setattr(inf, "short_side", 128)
    monkeypatch.setattr(inf, "max_size", 512)
    g = torch.Generator().manual_seed(1)
    image = torch.randint(0, 256, (3, *hw), dtype=torch.uint8, generator=g)
    enc = tiny_model.encode(image, keep_intermediates=False)
    want = d2_output_shape(*hw, 128, 512)
    padded = tuple((s + 31) // 32 * 32 for s in want)
    assert enc.orig_size == hw and enc.input_size == want and enc.padded_size == padded
    assert tuple(enc.masks.shape[-2:]) == (padded[0] // 4, padded[1] // 4)
    resized = d2_resize(image.permute(1, 2, 0).numpy(), *want)
    assert torch.equal(enc.image.permute(1, 2, 0), torch.from_numpy(resized.copy()))
    pred = tiny_model.classify(enc, ["wall", "sky", "tree", "road, route"])
    assert tuple(pred.labels.shape) == hw
    ref, gap = _official_labels(pred.map_probs, enc.masks, want, padded, hw)
    clear = gap > 1e-5  # float noise may reorder near-ties only
    assert clear.float().mean() > 0.99
    assert torch.equal(pred.labels[clear], ref[clear])
    assert torch.allclose(upsample_masks(enc.masks, enc),
                          d2_sem_seg_postprocess(F.interpolate(enc.masks[None], size=padded, mode="bilinear",
                                                               align_corners=False)[0], want, *hw), atol=1e-5)
    sem = semantic_inference(pred.map_probs, upsample_masks(enc.masks, enc))
    assert torch.allclose(sem.max(0).values, pred.score, atol=1e-5)
