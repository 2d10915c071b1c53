"""Tests of mask pool (pure stage functions) against small cases worked out by hand.

Expected numbers are written out in the tests (tiny tensors, Python arithmetic), never obtained by
calling the function under test another way. The CLIP-block tests use the random-initialised
``tiny`` preset, built once per module.
"""
import math

import torch

from ebseg_lite.modeling.mask_pool import mask_pool
from ebseg_lite.shapes import check_shape


def t(x):
    return torch.tensor(x, dtype=torch.float32)


# ---------------------------------------------------------------- stage 4: mask pooling (eq. 3)
FEATS_2x2 = t([[[[1, 2], [3, 4]], [[10, 20], [30, 40]]]])  # (B=1, C=2, 2, 2)


def test_mask_pool_hand_case_on_2x2_grid():
    logits = t([[[[5, -5], [5, -5]],          # left column
                 [[-3, -3], [-3, -3]],        # empty
                 [[0.1, 0.0], [-0.1, 7]]]])   # (0,0) and (1,1); sigmoid(0) = 0.5 is not > 0.5
    got = check_shape(mask_pool(logits, FEATS_2x2), (1, 3, 2))
    torch.testing.assert_close(got[0, 0], t([(1 + 3) / 2, (10 + 30) / 2]))
    torch.testing.assert_close(got[0, 2], t([(1 + 4) / 2, (10 + 40) / 2]))
    assert torch.equal(got[0, 1], torch.zeros(2))  # empty mask: exactly 0, no renormalisation


def test_mask_pool_denominator_has_1e8_and_no_renormalisation():
    feats = t([[[[1.0]], [[1.0]]]])   # (1, 2, 1, 1): one pixel, vector (1, 1)
    got = mask_pool(t([[[[3.0]]]]), feats)[0, 0]
    # 1 / (1 + 1e-8) in float32 is 1; the point: the norm stays sqrt(2), D is not re-normalised
    torch.testing.assert_close(got, t([1 / (1 + 1e-8), 1 / (1 + 1e-8)]))
    assert abs(got.norm().item() - math.sqrt(2)) < 1e-6


def test_mask_pool_resizes_logits_bilinearly_before_thresholding():
    # 4x4 logits -> 2x2: bilinear (align_corners=False) at factor 2 is the mean of each 2x2 block.
    logits = t([[[[3, -1, 4, -4],
                  [-1, 3, -4, -0.5],
                  [-2, -2, 0.5, 0.5],
                  [-2, 5, 0.5, 0.5]]]])
    # block means: TL 1.0 (in), TR -1.125 (out, though it has a positive pixel),
    # BL -0.25 (out, though it has a positive pixel), BR 0.5 (in)
    got = mask_pool(logits, FEATS_2x2)
    torch.testing.assert_close(got[0, 0], t([(1 + 4) / 2, (10 + 40) / 2]))


def test_mask_pool_detaches_masks_but_not_features():
    logits = t([[[[5, -5], [5, -5]], [[0.1, 0.0], [-0.1, 7]]]]).requires_grad_()
    feats = FEATS_2x2.clone().requires_grad_()
    mask_pool(logits, feats).sum().backward()
    assert logits.grad is None
    # d/dF of sum_n mean_n(F) = sum_n m_n / |m_n|: mask 0 = left column (1/2 each), mask 1 = diagonal (1/2 each)
    per_pixel = t([[0.5 + 0.5, 0.0], [0.5, 0.5]])
    torch.testing.assert_close(feats.grad[0], torch.stack([per_pixel, per_pixel]))
