"""Official training-mode quirks, each against a hand-written reading of the official code, and their alternatives.

Official sources (slonetime/EBSeg f61977d): ``train_net.py: build_optimizer`` and ``ebseg/config.py``
(weight decay), ``msdeformattn.py: MSDeformAttnTransformerEncoderOnly._reset_parameters`` (encoder
init), ``EBSeg.py: get_ssc_loss`` (SSC of an image without matched segments), ``Base-coco-stuff-164K-171.yaml``
(``SOLVER.AMP.ENABLED``: fp16 autocast + GradScaler).
"""
import dataclasses
import math
import re

import pytest
import torch

from ebseg_lite.config import get_preset
from ebseg_lite.modeling.pixel_decoder import PixelDecoder
from ebseg_lite.train.config import get_train_preset
from ebseg_lite.train.optim import no_decay_names, param_groups
from ebseg_lite.train.step import ssc_term

# The official decision per parameter, written from the official module types, keyed by ebseg_lite's
# name for the same parameter: True = weight decay 0.05, False = 0.
OFFICIAL_DECAY = [
    (r"bg_embed", True),                                           # ov_classifier.bg_embed, a plain Parameter
    (r"clip\.visual\.positional_embedding", False),                # "positional_embedding" in the embed group
    (r"sam\.pos_embed", False),                                    # "pos_embed"
    (r"fusion\.layers\.\d\.0\.(weight|bias)", True),               # the official custom LayerNorm: no norm type
    (r"fusion\.layers\.\d\.1\.(weight|bias)", True),               # Conv2d
    (r"pixel_decoder\.input_proj\.\d\.0\.(weight|bias)", True),    # Conv2d
    (r"pixel_decoder\.input_proj\.\d\.1\.(weight|bias)", False),   # GroupNorm
    (r"pixel_decoder\.level_embed", True),                         # encoder's plain Parameter "level_embed"
    (r"pixel_decoder\.layers\.\d+\.norm[12]\.(weight|bias)", False),   # nn.LayerNorm
    (r"pixel_decoder\.layers\.\d+\.(linear[12]|self_attn\.\w+)\.(weight|bias)", True),
    (r"pixel_decoder\.(lateral|output)\.0\.weight", True),         # detectron2 Conv2d (adapter_1 / layer_1)
    (r"pixel_decoder\.(lateral|output)\.1\.(weight|bias)", False),  # its GroupNorm ("norm")
    (r"pixel_decoder\.mask_features\.(weight|bias)", True),
    (r"decoder\.(query_feat|query_embed|level_embed)\.weight", False),  # nn.Embedding
    (r"decoder\.layers\.\d+\.norm[123]\.(weight|bias)", False),    # nn.LayerNorm
    (r"decoder\.layers\.\d+\.(self_attn|cross_attn)\.(in_proj_\w+|out_proj\.\w+)", True),  # MultiheadAttention
    (r"decoder\.layers\.\d+\.linear[12]\.(weight|bias)", True),
    (r"decoder\.head\.norm\.(weight|bias)", False),                # decoder_norm, nn.LayerNorm
    (r"decoder\.head\.pool_proj\.0\.(weight|bias)", False),        # nn.LayerNorm
    (r"decoder\.head\.pool_proj\.1\.(weight|bias)", True),
    (r"decoder\.head\.(mask_embed|embed_proj|attn_proj)\.layers\.\d\.(weight|bias)", True),   # MLPs
    (r"decoder\.head\.bias_scaling\.(weight|bias)", True),         # Linear(1, 1)
    (r"decoder\.head\.logit_scale", True),                         # the scale s of A
]


def official_decayed(name: str) -> bool:
    hits = [d for pat, d in OFFICIAL_DECAY if re.fullmatch(pat, name)]
    assert len(hits) == 1, f"{name}: {len(hits)} table rows match; extend OFFICIAL_DECAY"
    return hits[0]


def test_weight_decay_follows_the_official_rule(tiny_model):
    model = tiny_model.model
    groups = param_groups(model, 0.05)
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
    decayed = {id(p) for p in groups[0]["params"]}
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(trainable)
    wrong = [n for n, p in trainable if (id(p) in decayed) != official_decayed(n)]
    assert wrong == []
    assert id(model.fusion.layers[0][0].weight) in decayed  # the headline quirk


def test_all_norms_alternative_exempts_only_the_fusion_layernorm(tiny_model):
    model = tiny_model.model
    extra = set(no_decay_names(model, "all_norms")) - set(no_decay_names(model))
    assert extra == {f"fusion.layers.{i}.0.{w}" for i in range(3) for w in ("weight", "bias")}
    with pytest.raises(ValueError, match="official"):
        no_decay_names(model, "none")


def _decoder(init: str) -> PixelDecoder:
    cfg = dataclasses.replace(get_preset("tiny").decoder, enc_init=init)
    torch.manual_seed(0)
    return PixelDecoder(32, cfg)


def test_encoder_init_official_is_xavier_then_deform_attn_reset():
    dec = _decoder("official")
    for layer in dec.layers:
        for lin in (layer.linear1, layer.linear2):
            fan_out, fan_in = lin.weight.shape
            bound = math.sqrt(6.0 / (fan_in + fan_out))                 # xavier_uniform_
            w = lin.weight.detach().abs()
            assert w.max() <= bound and w.max() > 0.95 * bound
            assert w.max() > 1.0 / math.sqrt(fan_in)                    # above torch's default bound
        att = layer.self_attn                                           # its own reset ran after
        assert torch.count_nonzero(att.sampling_offsets.weight) == 0
        assert torch.count_nonzero(att.attention_weights.weight) == 0
        assert torch.count_nonzero(att.value_proj.bias) == 0
    assert dec.level_embed.detach().std() > 0.5                        # normal_(level_embed), std 1


def test_encoder_init_torch_alternative_keeps_linear_defaults():
    dec = _decoder("torch")
    for layer in dec.layers:
        for lin in (layer.linear1, layer.linear2):
            assert lin.weight.detach().abs().max() <= 1.0 / math.sqrt(lin.weight.shape[1])  # kaiming(a=sqrt 5)
    with pytest.raises(ValueError, match="enc_init"):
        _decoder("zeros")


def _ssc_case():
    # image 0: two matched segments; image 1: none (all pixels ignored in its crop)
    A = torch.tensor([[[2.0, 0.0], [0.0, 2.0], [5.0, 5.0]], [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]],
                     requires_grad=True)                                 # (B=2, N=3, C=2)
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])                        # (K=2, C) normalised
    targets = [{"labels": torch.tensor([0, 1])}, {"labels": torch.zeros(0, dtype=torch.long)}]
    indices = [(torch.tensor([0, 1]), torch.tensor([0, 1])),
               (torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))]
    return A, targets, indices, text


def test_ssc_of_an_image_without_segments_official_zeroes_the_batch():
    A, targets, indices, text = _ssc_case()
    loss = ssc_term(A, targets, indices, text, form="official", empty="official")
    assert loss.item() == 0.0  # official: that image's MSE is NaN, so the batch's SSC is set to 0
    # image 0 alone: A A^T = [[4, 0], [0, 4]] vs identity -> (9 + 0 + 0 + 9) / 4
    alone = ssc_term(A[:1], targets[:1], indices[:1], text, form="official", empty="official")
    assert alone.item() == pytest.approx(4.5)
    both = ssc_term(torch.cat([A[:1], A[:1]]), targets[:1] * 2, indices[:1] * 2, text, empty="official")
    assert both.item() == pytest.approx(4.5)  # sum over images / B


def test_ssc_of_an_image_without_segments_skip_alternative():
    A, targets, indices, text = _ssc_case()
    loss = ssc_term(A, targets, indices, text, form="official", empty="skip")
    assert loss.item() == pytest.approx(4.5)  # the empty image is left out of the mean
    loss.backward()
    assert A.grad[0, 0, 0].item() == pytest.approx(2 * 3 * 2 * 2 / 4)  # d/dA00 of (A00^2 - 1)^2 / 4
    assert torch.count_nonzero(A.grad[1]) == 0
    none = ssc_term(A[1:], targets[1:], indices[1:], text, empty="skip")
    assert none.item() == 0.0
    with pytest.raises(ValueError, match="empty"):
        ssc_term(A, targets, indices, text, empty="nan")


def test_official_presets_train_in_fp16_with_a_grad_scaler():
    for name in ("paper_b", "paper_l"):
        cfg = get_train_preset(name)
        assert cfg.precision == "fp16"
        assert (cfg.weight_decay_rule, cfg.ssc_empty) == ("official", "official")
