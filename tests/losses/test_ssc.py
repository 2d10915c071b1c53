"""Tests of ssc (pure stage functions) against small cases worked out by hand.

Expected numbers are written out in the tests (tiny tensors, Python arithmetic), never obtained by
calling the function under test another way. The CLIP-block tests use the random-initialised
``tiny`` preset, built once per module.
"""
import math

import pytest
import torch

from ebseg_lite.losses.ssc import ssc_loss


def t(x):
    return torch.tensor(x, dtype=torch.float32)


# ---------------------------------------------------------------- stage 5: SSC loss (eq. 4-7)
def test_ssc_k2_hand_case_both_forms():
    img = t([[1, 0], [1, 1]])   # cosine matrix [[1, 1/sqrt2], [1/sqrt2, 1]]
    txt = t([[1, 0], [0, 1]])   # identity
    off = 1 / math.sqrt(2)
    assert ssc_loss(img, txt).item() == pytest.approx(2 * off ** 2 / 4, abs=1e-6)               # 0.25
    assert ssc_loss(img, txt, form="paper").item() == pytest.approx(2 * off / 4, abs=1e-6)


def test_ssc_k3_hand_case_both_forms():
    img = t([[1, 0, 0], [0, 1, 0], [3, 4, 0]])   # cos(e1,e3) = 0.6, cos(e2,e3) = 0.8, cos(e1,e2) = 0
    txt = t([[2, 0, 0], [0, 5, 0], [0, 0, 1]])   # identity cosine matrix
    assert ssc_loss(img, txt).item() == pytest.approx(2 * (0.6 ** 2 + 0.8 ** 2) / 9, abs=1e-6)
    assert ssc_loss(img, txt, form="paper").item() == pytest.approx(2 * (0.6 + 0.8) / 9, abs=1e-6)


def test_ssc_diagonal_counts_with_raw_dot_products():
    # normalize=False: A A^T with |A| = s = 2 puts s^2 = 4 on the diagonal; text diagonal is 1.
    img = t([[2, 0], [0, 2]])
    txt = t([[1, 0], [0, 1]])
    assert ssc_loss(img, txt, normalize=False).item() == pytest.approx(2 * 3 ** 2 / 4)        # 4.5
    assert ssc_loss(img, txt, normalize=False, form="paper").item() == pytest.approx(2 * 3 / 4)
    assert ssc_loss(img, txt).item() == pytest.approx(0.0, abs=1e-7)   # cosine: diagonal 1 = 1
    # raw dot products off the diagonal too: (1,1).(1,-1)=0, |(1,1)|^2 = 2
    img2 = t([[1, 1], [1, 0]])   # A A^T = [[2, 1], [1, 1]]
    assert ssc_loss(img2, txt, normalize=False).item() == pytest.approx((1 + 1 + 1 + 0) / 4)


def test_ssc_is_scale_invariant():
    torch.manual_seed(0)
    img, txt = torch.randn(4, 8), torch.randn(4, 8)
    ref = ssc_loss(img, txt)
    scaled = ssc_loss(img * t([[0.1], [3.0], [7.0], [0.5]]), txt * t([[2.0], [0.2], [1.0], [9.0]]))
    torch.testing.assert_close(scaled, ref)
    assert ref.item() > 0.01  # a real, non-trivial loss


def test_ssc_k0_is_zero_and_differentiable():
    img = torch.zeros(0, 8, requires_grad=True)
    loss = ssc_loss(img, torch.zeros(0, 8))
    assert loss.item() == 0.0 and not torch.isnan(loss)
    loss.backward()
    assert img.grad is not None and img.grad.shape == (0, 8)


def test_ssc_text_side_gets_no_gradient():
    torch.manual_seed(0)
    img = torch.randn(3, 8, requires_grad=True)
    txt = torch.randn(3, 8, requires_grad=True)
    ssc_loss(img, txt).backward()
    assert txt.grad is None
    assert img.grad is not None and img.grad.abs().sum() > 0


def test_ssc_rejects_unknown_form():
    with pytest.raises(ValueError, match="form"):
        ssc_loss(torch.ones(2, 2), torch.ones(2, 2), form="l2")
