"""Prefix sharing in the text tower (a KV cache of each template's prefix) against open_clip's own
``encode_text``: exact within float tolerance on small random towers, multi-token names, templates
whose name is not at the end, names first, duplicates; the pure pieces on hand-made cases; and the
fall-back for towers it does not cover."""
import open_clip
import pytest
import torch
import torch.nn.functional as F
from open_clip.model import CLIP

from ebseg_lite.modeling import text as text_mod
from ebseg_lite.modeling.text import (_buckets, encode_class_names, encode_text_shared, plan_prefixes,
                                      prefix_attention, prefix_mask, shares_prefixes)

NAMES = ["cat", "sofa, couch", "traffic light", "chest of drawers, chest, bureau, dresser", "cat", "a"]
TEMPLATES = ("a photo of a {}.", "There is a small {} in the scene.", "{} on a table", "a photo of the {}",
             "This is a photo of a large {}")


def _tower(**text_cfg):
    torch.manual_seed(0)
    cfg = {"context_length": 77, "vocab_size": 49408, "width": 48, "heads": 4, "layers": 3, **text_cfg}
    vision = {"image_size": 32, "patch_size": 16, "width": 32, "layers": 1, "head_width": 16}
    return CLIP(embed_dim=24, vision_cfg=vision, text_cfg=cfg).eval()


@pytest.fixture(scope="module")
def tok():
    return open_clip.get_tokenizer("ViT-B-16")


def _forbid(monkeypatch, clip):
    def forbidden(*args, **kwargs):
        raise AssertionError("the shared path must not fall back on a plain open_clip text tower")
    monkeypatch.setattr(clip, "encode_text", forbidden)
    monkeypatch.setattr(text_mod, "encode_text_trimmed", forbidden)


@pytest.mark.parametrize("cfg", [{}, {"ls_init_value": 0.5, "layers": 2}, {"layers": 1, "heads": 2}])
def test_shared_prefixes_equal_encode_text(tok, monkeypatch, cfg):
    clip = _tower(**cfg)
    prompts = [t.format(c) for c in NAMES for t in TEMPLATES]
    tokens = tok(prompts)
    groups = torch.arange(len(prompts)) % len(TEMPLATES)
    with torch.no_grad():
        ref = clip.encode_text(tokens, normalize=True)
        assert shares_prefixes(clip)
        _forbid(monkeypatch, clip)
        by_template = encode_text_shared(clip, tokens, groups)
        one_group = encode_text_shared(clip, tokens)                  # common prefix: <sot> only
        odd_groups = encode_text_shared(clip, tokens, torch.arange(len(prompts)) % 3)   # any grouping is exact
    for got in (by_template, one_group, odd_groups):
        assert got.shape == ref.shape
        assert (got - ref).abs().max() <= 1e-5


def test_encode_class_names_shared_equals_padded_path(tok, monkeypatch):
    clip = _tower()
    padded = encode_class_names(clip, tok, NAMES, TEMPLATES, batch_size=4, shared_prefixes=False)
    calls = []
    real = text_mod.encode_text_shared
    monkeypatch.setattr(text_mod, "encode_text_shared", lambda *a: calls.append(len(a[1])) or real(*a))
    shared = encode_class_names(clip, tok, NAMES, TEMPLATES, prefix_batch=12)   # 2 names per call
    assert calls == [10, 10, 10]
    assert (shared - padded).abs().max() <= 1e-5


def test_plan_computes_each_prefix_once(tok):
    prompts = [t.format(c) for c in ["cat", "traffic light"] for t in TEMPLATES[:2]]
    tokens = tok(prompts)
    plan = plan_prefixes(tokens, torch.tensor([0, 1, 0, 1]), bucket_cost=0)
    # "<sot> a photo of a" (5 tokens) and "<sot> there is a small" (5): one copy each
    assert plan.n_prefix == 10
    assert torch.equal(plan.token[:5], tokens[0, :5]) and torch.equal(plan.token[5:10], tokens[1, :5])
    eot = tokens.argmax(-1)
    assert len(plan.token) == 10 + int((eot + 1 - 5).sum())          # suffixes only after that (no padding)
    assert torch.equal(plan.token[plan.end], tokens[torch.arange(4), eot])    # the end rows hold end-of-text
    assert torch.equal(plan.pos[plan.end], eot)


def test_buckets_trade_padding_for_calls():
    lengths = torch.tensor([2, 2, 2, 3, 9])
    assert _buckets(lengths, 0) == [2, 3, 9]                         # no cost per bucket: no padding
    assert _buckets(lengths, 100) == [9]                             # expensive buckets: one
    assert _buckets(lengths, 4) == [3, 9]       # padding three 2s to 3 (3 rows) is cheaper than a bucket (4)


def test_prefix_mask_by_hand():
    ctx = torch.tensor([[True, True, False]])                        # 2 prefix rows of 3 seen
    m = prefix_mask(ctx, torch.tensor([[0, 1]]))                     # own positions 0 and 1 of L = 2
    seen = torch.isfinite(m[0])
    assert seen.tolist() == [[True, True, False, True, False], [True, True, False, True, True]]


def test_prefix_attention_equals_causal_attention_on_the_whole_sequence():
    g = torch.Generator().manual_seed(0)
    nh, hd, lp, ls, n = 2, 4, 3, 4, 2
    pre = torch.randn(3, nh, lp, hd, generator=g)                    # shared prefix q, k, v
    own = torch.randn(3, nh, n, ls, hd, generator=g)                 # n suffixes
    junk = torch.randn(nh, 2, hd, generator=g)                       # an unseen prefix row (another group)
    kp, vp = torch.cat([pre[1], junk], 1), torch.cat([pre[2], junk], 1)
    ctx = torch.tensor([[True] * lp + [False, False]] * n)
    got = prefix_attention(own[0], kp, vp, own[1], own[2], prefix_mask(ctx, torch.arange(ls).expand(n, -1)))
    for i in range(n):
        q, k, v = (torch.cat([pre[j], own[j][:, i]], 1) for j in range(3))   # (nh, Lp+Ls, hd)
        ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)[:, lp:]
        torch.testing.assert_close(got[:, i], ref, atol=1e-6, rtol=1e-5)


def test_uncovered_towers_fall_back(tok):
    clip = _tower(qk_norm=True)                                       # open_clip's custom blocks
    assert not shares_prefixes(clip)
    tokens = tok([t.format(c) for c in NAMES[:3] for t in TEMPLATES])
    with torch.no_grad():
        ref = clip.encode_text(tokens, normalize=True)
        got = encode_text_shared(clip, tokens)
    assert (got - ref).abs().max() <= 1e-5
