"""The balancing explorer widget, driven from code: encode once, classify many."""
import pytest
import torch

pytest.importorskip("ipywidgets")

from ebseg_lite.notebook.widgets import BalancingExplorer  # noqa: E402

NAMES = ["cat", "sofa", "road, route"]


@pytest.fixture(scope="module")
def encoded_pair(tiny_model):
    g = torch.Generator().manual_seed(1)
    imgs = [torch.randint(0, 256, (3, 96, 128), dtype=torch.uint8, generator=g),
            torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8, generator=g)]
    return [tiny_model.encode(i) for i in imgs]


@pytest.fixture
def no_encoder(tiny_model, encoded_pair, monkeypatch):
    """After the up-front encoding (``encoded_pair``), any encoder call fails the test."""
    def refuse(*a, **k):
        raise AssertionError("the explorer called an encoder")
    monkeypatch.setattr(tiny_model, "encode", refuse)
    monkeypatch.setattr(tiny_model.model, "forward_features", refuse)
    return tiny_model


def test_explorer_drives_from_code(no_encoder, encoded_pair):
    model = no_encoder
    ui = BalancingExplorer(model, encoded_pair, NAMES, image_names=["big", "small"], render=False)
    first = ui.result
    assert ui.updates == 1 and first.class_names == NAMES
    assert first.prediction.weights["w_seen"] == tuple(model.cfg.inference.w_seen)
    assert first.pixel == (48, 64)

    ui.sliders["seen", "A"].value = 1.0
    ui.sliders["seen", "B"].value = 0.0
    ui.sliders["seen", "D"].value = 0.0
    ui.sliders["new", "A"].value = 1.0
    ui.sliders["new", "B"].value = 0.0
    ui.sliders["new", "D"].value = 0.0
    r = ui.result
    assert r.prediction.weights["w_seen"] == (1.0, 0.0, 0.0) and r.prediction.weights["w_new"] == (1.0, 0.0, 0.0)
    q = r.query
    fused = r.prediction.class_probs[q, :-1] / (1 - r.prediction.p_void[q])
    assert torch.allclose(fused, r.prediction.probs["A"][q], atol=1e-5)  # A alone decides
    assert ui.updates == 7

    n = ui.updates
    r = ui.set_weights(w_seen=(0, 0, 1), w_new=(0, 0, 1))  # six sliders, one re-classification
    assert ui.updates == n + 1 and r is ui.result
    assert r.prediction.weights["w_new"] == (0.0, 0.0, 1.0)
    assert ui.sliders["seen", "D"].value == 1.0 and ui.sliders["seen", "A"].value == 0.0

    ui.balancing.value = "paper"
    assert ui.result.prediction.balancing == "paper"
    assert all(s.disabled for s in ui.sliders.values()) and not any(s.disabled for s in ui.abg.values())
    ui.abg["a"].value = 0.0
    assert ui.result.prediction.weights["paper_abg"][0] == 0.0

    ui.image.value = 1  # the small image: the pixel moves to its centre, its sliders to its size
    assert ui.result.prediction.encoded is encoded_pair[1]
    assert ui.result.pixel == (32, 32) and ui.pixel_y.max == 63

    ui.pixel_x.value = 5
    assert ui.result.pixel == (32, 5)

    before = ui.updates
    ui.vocabulary.value = "red circle\ngrass, lawn\nsofa"
    assert ui.updates == before  # typing alone does not re-classify
    ui.apply_button.click()
    assert ui.result.class_names == ["red circle", "grass, lawn", "sofa"]
    assert ui.result.seen == model.resolve_seen(["red circle", "grass, lawn", "sofa"]).tolist()
    assert ui.error is None and ui.updates == before + 1

    ui.reset_button.click()
    r = ui.result
    assert r.prediction.balancing == model.cfg.inference.balancing
    assert r.prediction.weights["w_seen"] == tuple(model.cfg.inference.w_seen)
    assert r.prediction.weights["paper_abg"] == tuple(model.cfg.inference.paper_abg)
    assert ui.updates == before + 2  # one re-classification for the whole reset


def test_bad_vocabulary_keeps_the_last_result(no_encoder, encoded_pair):
    ui = BalancingExplorer(no_encoder, encoded_pair, NAMES, render=False)
    good = ui.result
    ui.vocabulary.value = "cat\ncat"
    ui.apply_button.click()
    assert ui.error is not None and "duplicate" in ui.error
    assert ui.result is good and ui.class_names == NAMES
    assert "duplicate" in ui.message.value
    ui.vocabulary.value = "cat\ndog"
    ui.apply_button.click()
    assert ui.error is None and ui.result.class_names == ["cat", "dog"]


def test_explorer_renders_and_checks_arguments(tiny_model, encoded_pair):
    ui = BalancingExplorer(tiny_model, encoded_pair[:1], NAMES)  # render=True without a frontend
    assert ui.result is not None
    with pytest.raises(ValueError, match="at least one"):
        BalancingExplorer(tiny_model, [], NAMES)
    with pytest.raises(ValueError, match="image names"):
        BalancingExplorer(tiny_model, encoded_pair, NAMES, image_names=["one"])
    with pytest.raises(ValueError, match="empty"):
        BalancingExplorer(tiny_model, encoded_pair, "")
