"""The pruned label map equals the full eq. 14 argmax at the original size (same and different
input/original sizes, confident and soft masks), and the lazy Prediction fields read the same."""
import pytest
import torch
import torch.nn.functional as F

from ebseg_lite.inference.outputs import Encoded, Prediction, fast_label_map, label_map, upsample_masks
from ebseg_lite.modeling.balance import semantic_inference


def _enc(masks, inp, orig):
    hm, wm = masks.shape[-2:]
    return Encoded(image=None, orig_size=orig, input_size=inp, padded_size=(hm * 4, wm * 4), clip_grid=(1, 1),
                   A=None, B=None, D=None, masks=masks, F_clip=None, attn_bias=None, A_per_layer=None)


def _case(seed, hm, wm, scale, n=12, k=9, peak=3.0):
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, n, hm // 4 + 1, wm // 4 + 1, generator=g)
    masks = F.interpolate(coarse, size=(hm, wm), mode="bilinear", align_corners=False)[0] * scale
    probs = (torch.randn(n, k, generator=g) * peak).softmax(-1)
    return masks, probs


@pytest.mark.parametrize("hm,wm,inp,orig,scale", [
    (16, 16, (64, 64), (64, 64), 8.0),      # confident masks: mostly decided by the bounds
    (16, 16, (64, 64), (64, 64), 0.5),      # soft masks: mostly summed
    (16, 18, (64, 70), (50, 91), 4.0),      # crop + resize to another original size
    (8, 12, (30, 45), (97, 150), 6.0),      # upscaling in the second stage
])
def test_fast_labels_equal_full_argmax(hm, wm, inp, orig, scale):
    for seed in range(3):
        masks, probs = _case(seed, hm, wm, scale)
        enc = _enc(masks, inp, orig)
        ref = label_map(probs, upsample_masks(masks, enc))[0]
        fast = fast_label_map(probs, masks, enc)
        assert fast.shape == ref.shape == orig
        assert torch.equal(fast, ref)
        assert len(fast.unique()) > 1


def test_prediction_reads_labels_score_and_mask_labels_lazily():
    masks, probs = _case(5, 16, 16, 6.0)
    enc = _enc(masks, (60, 64), (60, 64))
    pred = Prediction(class_names=[str(i) for i in range(9)], seen=torch.zeros(9, dtype=torch.bool),
                      class_probs=None, probs={}, p_void=None, logits={}, text=None, A=None, B=None, D=None,
                      masks=masks, balancing="official", weights={}, encoded=enc, map_probs=probs)
    assert pred._labels is None and pred._score is None
    lab, score = label_map(probs, upsample_masks(masks, enc))
    assert torch.equal(pred.labels, lab) and torch.equal(pred.score, score)
    assert pred.labels is pred.labels                       # computed once
    low = pred.mask_labels                                   # input region 60x64 -> 15x16 of the 16x16 masks
    assert low.shape == (15, 16)
    assert torch.equal(low, semantic_inference(probs, masks[:, :15]).argmax(0))


def _near_uniform(seed, n=12, k=9, spread=0.02):
    """Class probabilities of an untrained model: every class nearly 1/K for every query."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, k, generator=g) * spread).softmax(-1)


@pytest.mark.parametrize("inp,orig", [((64, 64), (64, 64)), ((64, 70), (50, 91))])
def test_fast_labels_equal_full_argmax_for_nearly_equal_classes(inp, orig):
    for seed in range(3):
        masks, _ = _case(seed, 16, 18, 3.0)
        probs = _near_uniform(seed)
        enc = _enc(masks, inp, orig)
        assert torch.equal(fast_label_map(probs, masks, enc), label_map(probs, upsample_masks(masks, enc))[0])


def test_exact_ties_take_the_reference_choice():
    masks, probs = _case(7, 16, 16, 2.0)
    probs = torch.cat([probs, probs[:, :3]], 1)                     # classes 9..11 copy 0..2: ties everywhere
    enc = _enc(masks, (64, 64), (64, 64))
    ref = label_map(probs, upsample_masks(masks, enc))[0]
    assert torch.equal(fast_label_map(probs, masks, enc), ref)
    pred = Prediction(class_names=[str(i) for i in range(12)], seen=torch.zeros(12, dtype=torch.bool),
                      class_probs=None, probs={}, p_void=None, logits={}, text=None, A=None, B=None, D=None,
                      masks=masks, balancing="official", weights={}, encoded=enc, map_probs=probs)
    assert torch.equal(pred.mask_labels, semantic_inference(probs, masks).argmax(0))


@pytest.mark.parametrize("scale,uniform", [(8.0, False), (0.5, False), (3.0, True)])
def test_mask_labels_equal_dense_argmax(scale, uniform):
    for seed in range(3):
        masks, probs = _case(seed, 20, 24, scale)
        probs = _near_uniform(seed) if uniform else probs
        enc = _enc(masks, (77, 90), (77, 90))                       # input region 20 x 23 of the 20 x 24 masks
        pred = Prediction(class_names=[str(i) for i in range(9)], seen=torch.zeros(9, dtype=torch.bool),
                          class_probs=None, probs={}, p_void=None, logits={}, text=None, A=None, B=None, D=None,
                          masks=masks, balancing="official", weights={}, encoded=enc, map_probs=probs)
        assert torch.equal(pred.mask_labels, semantic_inference(probs, masks[:, :20, :23]).argmax(0))


@pytest.mark.parametrize("inp,orig", [((256, 256), (256, 256)), ((256, 240), (201, 313))])
def test_few_undecided_tiles_are_summed_from_the_taps(inp, orig, monkeypatch):
    import ebseg_lite.inference.outputs as outputs
    calls = []
    real = outputs._resized
    monkeypatch.setattr(outputs, "_resized", lambda *a: calls.append(len(a[3])) or real(*a))
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        coarse = torch.randn(1, 6, 3, 3, generator=g)                # large regions: few boundary tiles
        masks = F.interpolate(coarse, size=(64, 64), mode="bilinear", align_corners=False)[0] * 12.0
        probs = (torch.randn(6, 5, generator=g) * 4.0).softmax(-1)
        enc = _enc(masks, inp, orig)
        ref = label_map(probs, upsample_masks(masks, enc))[0]
        assert torch.equal(fast_label_map(probs, masks, enc), ref)
        assert len(ref.unique()) > 1
    assert calls and max(calls) * 4 <= inp[0] * inp[1]               # some pixels summed, never most
