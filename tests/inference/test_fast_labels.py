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
