"""SimSeg's crop geometry, crop classification and ensemble, checked by hand."""
import math

import pytest
import torch
import torch.nn.functional as F

from ebseg_lite.baselines.simseg import (crop_embeddings, crop_probs, crop_with_mask, ensemble_probs, expand_box, mask_box,
                                         masked_crops, scatter_valid)
from ebseg_lite.baselines.simseg_pipeline import sam_proposal_logits, semantic_labels
from ebseg_lite.modeling.balance import semantic_inference

MEAN, STD = (0.5, 0.25, 0.0), (0.25, 0.5, 1.0)


def test_mask_box_is_right_bottom_exclusive():
    m = torch.zeros(6, 8, dtype=torch.bool)
    m[2:4, 3:7] = True  # rows 2-3, columns 3-6
    assert mask_box(m) == (3, 2, 7, 4)
    assert mask_box(torch.zeros(4, 4, dtype=torch.bool)) is None


def test_expand_box_scales_about_the_centre_and_truncates():
    assert expand_box((3, 2, 7, 4), 1.0) == (3, 2, 7, 4)
    # centre (5, 3), size 4 x 2 -> 8 x 4: (1, 1, 9, 5)
    assert expand_box((3, 2, 7, 4), 2.0) == (1, 1, 9, 5)
    # centre (1.5, 1.5), size 3 x 3 -> 4.5: corners -0.75 -> int() = 0 (towards zero), 3.75 -> 3
    assert expand_box((0, 0, 3, 3), 1.5) == (0, 0, 3, 3)


def test_crop_with_mask_fills_outside_and_clips_to_the_image():
    img = torch.arange(3 * 4, dtype=torch.float32).view(1, 3, 4).repeat(3, 1, 1)  # (3, 3, 4)
    mask = torch.zeros(3, 4, dtype=torch.bool)
    mask[1, 1] = mask[2, 2] = True
    out = crop_with_mask(img, mask, (1, 1, 9, 9), fill=(10.0, 20.0, 30.0))  # clipped to x 1..4, y 1..3
    assert out.shape == (3, 2, 3)
    assert out[0, 0, 0] == img[0, 1, 1] and out[0, 1, 1] == img[0, 2, 2]
    assert out[0, 0, 1] == 10.0 and out[1, 1, 0] == 20.0 and out[2, 0, 2] == 30.0


def test_masked_crops_threshold_fill_normalise_resize():
    img = torch.full((3, 8, 8), 200, dtype=torch.uint8)
    probs = torch.zeros(3, 8, 8)
    probs[0, 0:4, 0:2] = 0.9            # a 4 x 2 box, all inside
    probs[1, 2:6, 2:6] = 0.5            # exactly the threshold: empty (mask > 0.5)
    probs[2, 4:8, 4:8] = 0.7
    probs[2, 4, 4] = 0.2                # one box pixel outside the mask -> filled
    crops, valid, boxes = masked_crops(img, probs, size=4, mean=MEAN, std=STD)
    assert valid.tolist() == [True, False, True] and boxes == [(0, 0, 2, 4), None, (4, 4, 8, 8)]
    assert crops.shape == (2, 3, 4, 4)
    want = torch.tensor([(200 - 255 * m) / (255 * s) for m, s in zip(MEAN, STD)])
    torch.testing.assert_close(crops[0], want.view(3, 1, 1).expand(3, 4, 4))  # resized constant stays constant
    assert crops[1, :, 0, 0].abs().max() < crops[1, :, 3, 3].abs().max()     # mean fill -> 0 after normalising
    img_crop = torch.full((3, 4, 4), 200.0)
    img_crop[:, 0, 0] = torch.tensor([255 * m for m in MEAN])
    norm = (img_crop - torch.tensor(MEAN).view(3, 1, 1) * 255) / (torch.tensor(STD).view(3, 1, 1) * 255)
    torch.testing.assert_close(crops[1], F.interpolate(norm[None], size=(4, 4), mode="bicubic")[0])
    zero, _, _ = masked_crops(img, probs, size=4, mean=MEAN, std=STD, fill="zero")
    zero_fill = torch.tensor([-m / s for m, s in zip(MEAN, STD)])
    img_crop[:, 0, 0] = 0.0
    norm = (img_crop - torch.tensor(MEAN).view(3, 1, 1) * 255) / (torch.tensor(STD).view(3, 1, 1) * 255)
    torch.testing.assert_close(norm[:, 0, 0], zero_fill)
    torch.testing.assert_close(zero[1], F.interpolate(norm[None], size=(4, 4), mode="bicubic")[0])
    with pytest.raises(ValueError, match="fill"):
        masked_crops(img, probs, size=4, mean=MEAN, std=STD, fill="blur")


def test_crop_scores_are_softmax_of_scaled_cosines():
    class FirstTwoPixels(torch.nn.Module):  # a "CLIP" whose embedding is the first two pixel values
        proj = torch.zeros(1, 2)

        def forward(self, x):
            return x.flatten(1)[:, :2]

    crops = torch.zeros(1, 3, 2, 2)
    crops[0, 0, 0, :2] = torch.tensor([3.0, 4.0])  # embedding (3, 4) -> unit (0.6, 0.8)
    emb = crop_embeddings(FirstTwoPixels(), crops)
    torch.testing.assert_close(emb, torch.tensor([[0.6, 0.8]]))
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    e0, e1 = math.exp(6.0), math.exp(8.0)
    torch.testing.assert_close(crop_probs(emb, text, logit_scale=10.0), torch.tensor([[e0 / (e0 + e1), e1 / (e0 + e1)]]))
    assert crop_embeddings(FirstTwoPixels(), crops[:0]).shape == (0, 2)


def test_scatter_valid_gives_ones_to_empty_proposals():
    out = scatter_valid(torch.tensor([[0.2, 0.8]]), torch.tensor([False, True, False]))
    torch.testing.assert_close(out, torch.tensor([[1.0, 1.0], [0.2, 0.8], [1.0, 1.0]]))


def test_ensemble_seen_and_new_by_hand():
    pt = torch.tensor([[0.6, 0.3, 0.1]])
    pc = torch.tensor([[0.2, 0.2, 0.6]])
    seen = torch.tensor([True, False, True])
    raw = [0.6 ** 0.8 * 0.2 ** 0.2, 0.3 ** 0.2 * 0.2 ** 0.8, 0.1 ** 0.8 * 0.6 ** 0.2]
    torch.testing.assert_close(ensemble_probs(pt, pc, seen, renormalize=False), torch.tensor([raw]))
    torch.testing.assert_close(ensemble_probs(pt, pc, seen), torch.tensor([[r / sum(raw) for r in raw]]))
    half = [math.sqrt(a * b) for a, b in zip([0.6, 0.3, 0.1], [0.2, 0.2, 0.6])]
    torch.testing.assert_close(ensemble_probs(pt, pc, seen, w=0.5, renormalize=False), torch.tensor([half]))


def test_sam_records_become_logits_plus_the_uncovered_rest():
    a = torch.zeros(3, 4, dtype=torch.bool)
    a[0] = True
    logits = sam_proposal_logits([{"segmentation": a.numpy()}], (3, 4))
    assert logits.shape == (2, 3, 4)
    assert (logits[0] > 0).equal(a) and (logits[1] > 0).equal(~a)
    assert (sam_proposal_logits([], (3, 4)) > 0).all()


def test_semantic_labels_is_argmax_of_eq14_in_row_chunks():
    torch.manual_seed(0)
    probs, masks = torch.rand(5, 4).softmax(-1), torch.randn(5, 9, 7)
    want = semantic_inference(probs[None], masks[None])[0].argmax(0)
    assert semantic_labels(probs, masks, rows=2).equal(want)
