"""The balancing explorer's pure functions (ebseg_lite.notebook.explore)."""
import math

import pytest
import torch

from ebseg_lite.notebook.explore import (branch_weights, contributions, explore, explorer_figure, parse_vocabulary,
                                query_at)


@pytest.fixture(scope="module")
def encoded(tiny_model):
    g = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (3, 96, 128), dtype=torch.uint8, generator=g)
    return tiny_model.encode(img)


NAMES = ["cat", "sofa", "road, route", "chandelier"]


def test_parse_vocabulary_forms():
    assert parse_vocabulary("cat, sofa") == ["cat", "sofa"]
    assert parse_vocabulary("road, route; sofa, couch") == ["road, route", "sofa, couch"]
    assert parse_vocabulary("road, route\n sofa \n\n cat") == ["road, route", "sofa", "cat"]
    assert parse_vocabulary(["a", " b "]) == ["a", "b"]


@pytest.mark.parametrize("bad, words", [("", "empty"), ("  \n ", "empty"), (",,", "empty"),
                                        ("cat, cat", "duplicate"), ("cat\ncat", "duplicate")])
def test_parse_vocabulary_errors_are_clear(bad, words):
    with pytest.raises(ValueError, match=words):
        parse_vocabulary(bad)


def test_branch_weights_per_class():
    seen = torch.tensor([True, False, True])
    w = branch_weights(seen, balancing="official", w_seen=(0.21, 0.7, 0.09), w_new=(0, 0.7, 0.3), paper_abg=(0, 0, 0))
    assert w.shape == (3, 3)
    assert torch.allclose(w[:, 0], torch.tensor([0.21, 0.7, 0.09]))
    assert torch.allclose(w[:, 1], torch.tensor([0, 0.7, 0.3]))
    w = branch_weights(seen, balancing="paper", w_seen=(1, 1, 1), w_new=(1, 1, 1), paper_abg=(0.2, 0.7, 0.0))
    assert torch.allclose(w[:, 0], torch.tensor([0.2, 0.7, 0.1]))  # seen: a, b, 1 - a - b
    assert torch.allclose(w[:, 1], torch.tensor([0.0, 0.7, 0.3]))  # new: g, b, 1 - g - b
    with pytest.raises(ValueError, match="balancing"):
        branch_weights(seen, balancing="mean", w_seen=(1, 0, 0), w_new=(1, 0, 0), paper_abg=(0, 0, 0))


@pytest.mark.parametrize("balancing", ["official", "paper"])
def test_contributions_sum_to_the_balanced_probabilities(tiny_model, encoded, balancing):
    seen = torch.tensor([True, False, True, False])
    pred = tiny_model.classify(encoded, NAMES, seen=seen, balancing=balancing, w_seen=(0.3, 0.5, 0.2),
                               w_new=(0.0, 0.6, 0.4), paper_abg=(0.3, 0.5, 0.1))
    k = len(NAMES)
    fused = pred.class_probs[:, :k] / (1 - pred.p_void)[:, None]  # (N, K) balanced probabilities
    for n in (0, 5, pred.class_probs.shape[0] - 1):
        c = contributions(pred, n)
        assert c.terms.shape == c.weights.shape == c.raw.shape == (3, k)
        assert torch.allclose(c.probs, fused[n], atol=1e-5)
        assert torch.allclose(c.terms, c.weights * c.raw)
        assert torch.allclose(c.centered.sum(-1), torch.zeros(3), atol=1e-4)
        assert torch.allclose(c.centered.sum(0).softmax(-1), c.probs, atol=1e-5)  # a shift per row is free
        assert set(c.as_dict()) == {"A", "B", "D"}
    c = contributions(pred, 0)
    if balancing == "official":
        assert c.space == "log-probability" and (c.raw <= 0).all()
        assert torch.allclose(c.weights[:, 1], torch.tensor([0.0, 0.6, 0.4]))  # a new class
        assert torch.allclose(c.raw[0], pred.probs["A"][0].log())
    else:
        assert c.space == "logit"
        assert torch.allclose(c.weights[:, 0], torch.tensor([0.3, 0.5, 0.2]))  # seen: a, b, 1 - a - b
        assert torch.allclose(c.weights[:, 1], torch.tensor([0.1, 0.5, 0.4]))  # new: g, b, 1 - g - b
    with pytest.raises(ValueError, match="query"):
        contributions(pred, pred.class_probs.shape[0])


def test_single_branch_weights_reduce_to_that_branch(tiny_model, encoded):
    pred = tiny_model.classify(encoded, NAMES, w_seen=(0, 1, 0), w_new=(0, 1, 0))
    c = contributions(pred, 3)
    assert torch.allclose(c.terms[0], torch.zeros(len(NAMES))) and torch.allclose(c.terms[2], torch.zeros(len(NAMES)))
    assert torch.allclose(c.probs, pred.probs["B"][3], atol=1e-5)


def test_query_at_is_the_dominant_term_of_eq14(tiny_model, encoded):
    pred = tiny_model.classify(encoded, NAMES)
    y, x = 10, 20
    q = query_at(pred, y, x)
    k = int(pred.labels[y, x])
    from ebseg_lite.inference.outputs import upsample_masks
    terms = pred.map_probs[:, k] * upsample_masks(pred.masks, encoded)[:, y, x].sigmoid()
    assert terms[q] == terms.max()
    with pytest.raises(ValueError, match="outside"):
        query_at(pred, 96, 0)


def test_explore_result(tiny_model, encoded):
    r = explore(tiny_model, encoded, "cat\nsofa\nroad, route\nchandelier", pixel=(5, 7))
    k = len(NAMES)
    assert r.class_names == NAMES
    assert r.seen == tiny_model.resolve_seen(NAMES).tolist()
    assert r.pixel == (5, 7) and r.query == query_at(r.prediction, 5, 7)
    assert r.class_probs.shape == (k + 1,) and math.isclose(float(r.class_probs.sum()), 1.0, abs_tol=1e-5)
    for b in "ABD":
        assert r.branch_probs[b].shape == (k,) and math.isclose(float(r.branch_probs[b].sum()), 1.0, abs_tol=1e-5)
    assert r.labels.shape == encoded.orig_size
    assert math.isclose(sum(r.areas.values()), 1.0, abs_tol=1e-3)
    assert list(r.areas.values()) == sorted(r.areas.values(), reverse=True)
    assert r.warnings == []
    assert explore(tiny_model, encoded, NAMES).pixel == (48, 64)  # default: the centre


def test_explore_follows_the_weights(tiny_model, encoded):
    only_a = explore(tiny_model, encoded, NAMES, w_seen=(1, 0, 0), w_new=(1, 0, 0))
    only_d = explore(tiny_model, encoded, NAMES, w_seen=(0, 0, 1), w_new=(0, 0, 1))
    q = only_a.query
    assert torch.allclose(only_a.prediction.class_probs[q, :-1] / (1 - only_a.prediction.p_void[q]),
                          only_a.prediction.probs["A"][q], atol=1e-5)
    assert not torch.allclose(only_a.prediction.class_probs, only_d.prediction.class_probs)
    paper = explore(tiny_model, encoded, NAMES, balancing="paper", paper_abg=(0.6, 0.6, 0.0))
    assert paper.prediction.balancing == "paper" and any("negative" in w for w in paper.warnings)
    zero = explore(tiny_model, encoded, NAMES, w_seen=(0, 0, 0))
    assert any("same score" in w for w in zero.warnings)


def test_explore_rejects_bad_input_clearly(tiny_model, encoded):
    with pytest.raises(ValueError, match="empty"):
        explore(tiny_model, encoded, "  ")
    with pytest.raises(ValueError, match="duplicate"):
        explore(tiny_model, encoded, "cat, cat")
    with pytest.raises(ValueError, match="non-negative"):
        explore(tiny_model, encoded, NAMES, w_seen=(-1, 0, 0))
    with pytest.raises(ValueError, match="outside"):
        explore(tiny_model, encoded, NAMES, pixel=(0, 500))


def test_explorer_figure_has_three_labelled_panels(tiny_model, encoded):
    r = explore(tiny_model, encoded, NAMES)
    fig = explorer_figure(r, top=3)
    img, prob, con = fig.axes
    assert "segmentation" in img.get_title()
    assert prob.get_xlabel() == "probability" and len(prob.patches) == 3
    assert con.get_legend() is not None and "log-probability" in con.get_xlabel()
    assert [t.get_text() for t in con.get_legend().get_texts()] == ["A", "B", "D"]
    assert len(con.patches) == 9  # 3 classes x A, B, D
    assert "0.21 log PA + 0.70 log PB + 0.09 log PD" in con.get_title()  # the equation with its weights
    assert "new: 0.00 log PA + 0.70 log PB + 0.30 log PD" in con.get_title()


def test_contribution_bars_are_the_weighted_terms_zero_where_the_weight_is_zero(tiny_model, encoded):
    """The bars are w_x(k) log P_x(k) as summed in the geometric mix: A's bar of a new class is exactly 0
    (its weight is 0), and each class's three bars add up to the score whose softmax is the probability."""
    seen = [True, False, True, False]
    r = explore(tiny_model, encoded, NAMES, seen=seen, balancing="official", w_seen=(0.21, 0.7, 0.09),
                w_new=(0.0, 0.7, 0.3), pixel=(10, 10))
    fig = explorer_figure(r, top=4)
    con = fig.axes[2]
    p = r.class_probs[:4]
    order = torch.argsort(p, descending=True, stable=True).tolist()
    widths = torch.tensor([bar.get_width() for bar in con.patches]).view(3, 4)  # rows A, B, D; columns: order
    for j, k in enumerate(order):
        log_p = {x: float(r.branch_probs[x][k].log()) for x in "ABD"}
        w = (0.21, 0.7, 0.09) if seen[k] else (0.0, 0.7, 0.3)
        assert widths[:, j].tolist() == pytest.approx([w[0] * log_p["A"], w[1] * log_p["B"], w[2] * log_p["D"]],
                                                      abs=1e-5)
        if not seen[k]:
            assert widths[0, j] == 0.0
    total = widths.sum(0).float()
    assert torch.allclose(total.softmax(-1), (p[order] / p.sum()).float(), atol=1e-4)


def test_explore_defaults_are_the_models(tiny_model, encoded):
    r = explore(tiny_model, encoded, NAMES)
    inf = tiny_model.cfg.inference
    assert r.prediction.balancing == inf.balancing
    assert r.prediction.weights == {"w_seen": tuple(inf.w_seen), "w_new": tuple(inf.w_new),
                                    "paper_abg": tuple(inf.paper_abg)}
    with pytest.raises(ValueError, match="balancing"):
        explore(tiny_model, encoded, NAMES, balancing="mean")


def test_explore_names_the_words_a_closed_tokenizer_cannot_spell(tiny_model, encoded, monkeypatch):
    from fixture_data import ClosedTokenizer
    monkeypatch.setattr(tiny_model.model, "tokenizer", ClosedTokenizer(tiny_model.model.tokenizer, {"chandelier"}))
    monkeypatch.setattr(tiny_model, "_names_checked", set())
    with pytest.warns(UserWarning, match="'chandelier'"):      # the predictor's own warning, once
        r = explore(tiny_model, encoded, NAMES)
    assert len(r.warnings) == 1 and r.warnings[0].startswith("1 class name(s)") and "'chandelier'" in r.warnings[0]
    assert explore(tiny_model, encoded, NAMES[:3]).warnings == []
