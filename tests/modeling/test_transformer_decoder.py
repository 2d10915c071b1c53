"""Tests of transformer decoder (pure stage functions) against small cases worked out by hand.

Expected numbers are written out in the tests (tiny tensors, Python arithmetic), never obtained by
calling the function under test another way. The CLIP-block tests use the random-initialised
``tiny`` preset, built once per module.
"""

import torch

from ebseg_lite.shapes import check_shape
from ebseg_lite.modeling.transformer_decoder import cross_attention_mask


def t(x):
    return torch.tensor(x, dtype=torch.float32)


# ---------------------------------------------------------------- stage 2: masked cross-attention
def test_cross_attention_mask_hand_case_and_cleared_rows():
    masks = t([[[[1, -1], [-1, 0]],         # attend (0,0) and (1,1) (sigmoid(0) = 0.5 is attended)
                [[-2, -3], [-1, -5]]],      # masks everything -> cleared (attend all)
               [[[-1, -1], [-1, 2]],
                [[3, 3], [3, 3]]]])         # (B=2, N=2, 2, 2)
    got = check_shape(cross_attention_mask(masks, (2, 2), nheads=2), (4, 2, 4))
    assert got.dtype == torch.bool
    b0 = torch.tensor([[False, True, True, False], [False, False, False, False]])
    b1 = torch.tensor([[True, True, True, False], [False, False, False, False]])
    for i, exp in enumerate([b0, b0, b1, b1]):   # batch-major, heads repeated
        assert torch.equal(got[i], exp), i
