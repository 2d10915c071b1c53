"""The fast deformable attention (one weighted gather) equals the grid_sample reference: values,
zero padding outside the map, and the gradients to values, locations and weights."""
import pytest
import torch

from ebseg_lite.modeling.deform_attn import MSDeformAttn, ms_deform_attn, ms_deform_attn_gather

SHAPES = [(3, 5), (6, 4), (7, 9)]  # non-square, odd: a row/column mix-up would show


def _inputs(seed=0, b=2, nh=3, dh=4, npnt=2, spread=1.6):
    g = torch.Generator().manual_seed(seed)
    s = sum(h * w for h, w in SHAPES)
    q = 11
    value = torch.randn(b, s, nh, dh, generator=g, dtype=torch.float64)
    # locations reach outside [0, 1] on every side, so zero padding is exercised
    loc = torch.rand(b, q, nh, len(SHAPES), npnt, 2, generator=g, dtype=torch.float64) * spread - (spread - 1) / 2
    w = torch.rand(b, q, nh, len(SHAPES), npnt, generator=g, dtype=torch.float64)
    return value, loc, w


def test_gather_equals_grid_sample_reference():
    value, loc, w = _inputs()
    ref = ms_deform_attn(value, SHAPES, loc, w)
    fast = ms_deform_attn_gather(value, SHAPES, loc, w)
    assert fast.shape == ref.shape == (2, 11, 12)
    assert torch.allclose(fast, ref, atol=1e-5, rtol=1e-5)
    assert fast.dtype == value.dtype


def test_gather_hand_case_one_point_between_four_pixels():
    """One level 2x2, one head, one point at the centre: the mean of the four values times the weight."""
    value = torch.tensor([[1.0], [2.0], [3.0], [5.0]]).view(1, 4, 1, 1)
    loc = torch.full((1, 1, 1, 1, 1, 2), 0.5)
    w = torch.full((1, 1, 1, 1, 1), 0.5)
    assert torch.allclose(ms_deform_attn_gather(value, [(2, 2)], loc, w), torch.tensor([[[0.5 * 11 / 4]]]))
    # entirely outside the map: zero, as grid_sample's zero padding
    far = torch.full((1, 1, 1, 1, 1, 2), 3.0)
    assert ms_deform_attn_gather(value, [(2, 2)], far, w).abs().max() == 0


def test_gather_gradients_match_reference():
    grads = []
    for fn in (ms_deform_attn, ms_deform_attn_gather):
        value, loc, w = (t.clone().requires_grad_() for t in _inputs(seed=1))
        out = fn(value, SHAPES, loc, w)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        grads.append([value.grad, loc.grad, w.grad])
    for ref, fast in zip(*grads):
        assert torch.allclose(fast, ref, atol=1e-6, rtol=1e-5)


def test_module_uses_the_fast_path_with_the_reference_result():
    torch.manual_seed(0)
    attn = MSDeformAttn(dim=12, n_levels=3, n_heads=3, n_points=2)
    with torch.no_grad():
        attn.sampling_offsets.weight.normal_(0, 0.5)   # make offsets depend on the query
        attn.attention_weights.weight.normal_(0, 0.5)
    s = sum(h * w for h, w in SHAPES)
    query, memory = torch.randn(2, 5, 12), torch.randn(2, s, 12)
    ref_pts = torch.rand(2, 5, 3, 2)
    with torch.no_grad():
        out = attn(query, ref_pts, memory, SHAPES)
    import ebseg_lite.modeling.deform_attn as da
    saved = da.ms_deform_attn_gather
    da.ms_deform_attn_gather = da.ms_deform_attn   # the reference through the same module
    try:
        with torch.no_grad():
            ref = attn(query, ref_pts, memory, SHAPES)
    finally:
        da.ms_deform_attn_gather = saved
    assert torch.allclose(out, ref, atol=1e-5)
    assert not torch.equal(out, torch.zeros_like(out))


def test_module_picks_the_path_by_autograd(monkeypatch):
    """auto: the gather without autograd (inference), grid_sample under autograd (its backward is the
    cheaper one at training sizes); "gather" / "grid_sample" force one; the values agree either way."""
    import ebseg_lite.modeling.deform_attn as da
    calls = []
    for name in ("ms_deform_attn", "ms_deform_attn_gather"):
        fn = getattr(da, name)
        monkeypatch.setattr(da, name, lambda *a, _fn=fn, _n=name, **k: (calls.append(_n), _fn(*a, **k))[1])
    torch.manual_seed(1)
    attn = MSDeformAttn(dim=12, n_levels=3, n_heads=3, n_points=2)
    s = sum(h * w for h, w in SHAPES)
    query, memory, ref_pts = torch.randn(2, 5, 12), torch.randn(2, s, 12), torch.rand(2, 5, 3, 2)
    with torch.no_grad():
        inf = attn(query, ref_pts, memory, SHAPES)
    train = attn(query, ref_pts, memory, SHAPES)
    attn.impl = "gather"
    forced = attn(query, ref_pts, memory, SHAPES)
    assert calls == ["ms_deform_attn_gather", "ms_deform_attn", "ms_deform_attn_gather"]
    assert train.requires_grad and torch.allclose(train, inf, atol=1e-5) and torch.allclose(forced, inf, atol=1e-5)
    with pytest.raises(ValueError, match="impl"):
        MSDeformAttn(dim=12, n_levels=3, n_heads=3, impl="cuda")


def test_softmax_small_equals_softmax_and_stays_finite_for_large_logits():
    from ebseg_lite.modeling.deform_attn import softmax_small
    x = torch.randn(5, 3, 12, generator=torch.Generator().manual_seed(0)) * 4
    assert torch.allclose(softmax_small(x.clone()), x.softmax(-1), atol=1e-7)
    big = torch.tensor([[1000.0, 999.0, -1000.0]])   # exp(1000) overflows: the max is subtracted first
    assert torch.allclose(softmax_small(big), big.softmax(-1), atol=1e-7)
    assert torch.isfinite(softmax_small(big)).all()


def test_softmax_small_gradient_equals_softmax():
    from ebseg_lite.modeling.deform_attn import softmax_small
    x = torch.randn(4, 12, generator=torch.Generator().manual_seed(1), requires_grad=True)
    g = torch.randn(4, 12, generator=torch.Generator().manual_seed(2))
    (ref,) = torch.autograd.grad((x.softmax(-1) * g).sum(), x)
    (ours,) = torch.autograd.grad((softmax_small(x) * g).sum(), x)
    assert torch.allclose(ours, ref, atol=1e-7)
