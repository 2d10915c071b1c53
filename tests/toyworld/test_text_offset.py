"""The text-mean offset ablation: what it removes, why a seen-only softmax cannot see it while the new
names can, and that the ablation scores A as trained and A centred on the same encodings."""
import types

import pytest
import torch
import torch.nn.functional as F

from ebseg_lite.toyworld import text_offset as to

E = torch.eye(5)
# seen texts symmetric about e0 (so their unit mean is e0), each 0.8 along it; one new text 0.3 along it
SEEN_T = torch.stack([0.8 * E[0] + 0.6 * E[1], 0.8 * E[0] - 0.6 * E[1], 0.8 * E[0] + 0.6 * E[2], 0.8 * E[0] - 0.6 * E[2]])
NEW_T = F.normalize(0.3 * E[0] + 0.5 * E[1] + 0.8 * E[4], dim=0)
TEXT = torch.cat([SEEN_T, NEW_T[None]])
SEEN = torch.tensor([True, True, True, True, False])


def test_seen_text_direction_is_the_unit_mean_of_the_seen_texts():
    assert torch.allclose(to.seen_text_direction(TEXT, SEEN), E[0])
    with pytest.raises(ValueError, match="at least one seen"):
        to.seen_text_direction(TEXT, torch.zeros(5, dtype=torch.bool))


def test_remove_offset_takes_out_the_direction_and_keeps_each_norm():
    g = torch.Generator().manual_seed(0)
    x = 3 * torch.randn(7, 5, generator=g)
    d = F.normalize(torch.randn(5, generator=g), dim=0)
    y = to.remove_offset(x, d)
    assert torch.allclose(y @ d, torch.zeros(7), atol=1e-6)
    assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1))
    assert torch.allclose(to.remove_offset(y, d), y, atol=1e-6)           # nothing left to remove
    flat = x - (x @ d)[:, None] * d
    assert torch.allclose(to.remove_offset(flat, d), flat, atol=1e-6)     # already orthogonal: unchanged
    assert torch.allclose(to.text_offset(x, d), F.normalize(x, dim=-1) @ d)


def test_set_offset_turns_each_embedding_to_the_asked_cosine_keeping_norm_and_orthogonal_direction():
    g = torch.Generator().manual_seed(1)
    x = 2 * torch.randn(6, 5, generator=g)
    d = F.normalize(torch.randn(5, generator=g), dim=0)
    flat = lambda t: F.normalize(t - (t @ d)[:, None] * d, dim=-1)
    for level in (-0.6, 0.0, 0.3, 0.9):
        y = to.set_offset(x, d, level)
        assert torch.allclose(to.text_offset(y, d), torch.full((6,), level), atol=1e-6)
        assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1), atol=1e-6)
        assert torch.allclose(flat(y), flat(x), atol=1e-6)
    assert torch.allclose(to.set_offset(x, d, 0.0), to.remove_offset(x, d))
    assert to.variant_name(0.0) == "A centred" and to.variant_name(0.6) == "A at offset +0.60"
    for bad in (1.0, -1.0, 1.5):
        with pytest.raises(ValueError, match="strictly between"):
            to.set_offset(x, d, bad)


def test_the_seen_softmax_barely_sees_the_offset_but_the_new_name_takes_the_region():
    scale = 40.0
    a0 = TEXT[0]                                   # an embedding right on its seen class's text
    a_off = F.normalize(a0 - 1.0 * E[0], dim=0)    # the same, pushed against the seen texts' mean
    assert to.text_offset(a_off[None], E[0]).item() == pytest.approx(-0.2 / 0.4 ** 0.5, abs=1e-6)
    # over the seen names only, the logits move by a common shift and a common factor: same ranking
    l0, l1 = scale * SEEN_T @ a0, scale * SEEN_T @ a_off
    assert torch.allclose(l1 - l1.mean(), (l0 - l0.mean()) / 0.4 ** 0.5, atol=1e-5)   # |a0 - e0| = sqrt(0.4)
    assert int(l1.argmax()) == int(l0.argmax()) == 0
    # with the new name in the vocabulary, it wins the region; removing the offset gives it back
    assert int((TEXT @ a0).argmax()) == 0
    assert int((TEXT @ a_off).argmax()) == 4
    assert int((TEXT @ to.remove_offset(a_off[None], E[0])[0]).argmax()) == 0


class StandIn:
    """A predictor whose query q covers the pixels of class q (rows of A given per class) and labels
    each pixel by the argmax of its query's A against the texts."""
    train_class_names = ["a", "b", "c", "d"]

    def __init__(self, rows):
        self.rows, self.encoded = rows, 0

    def resolve_seen(self, names, seen=None):
        return torch.as_tensor(seen if seen is not None else SEEN, dtype=torch.bool)

    def text_embeddings(self, names):
        return TEXT

    def encode(self, image, keep_intermediates=False):
        self.encoded += 1
        return types.SimpleNamespace(A=self.rows.clone(), label=image)

    def classify(self, enc, names, seen=None, **mode):
        assert mode == to.MODES["A"]
        return types.SimpleNamespace(labels=(enc.A @ TEXT.t()).argmax(-1)[enc.label])


class Scenes:
    class_names = ["a", "b", "c", "d", "n"]
    ignore_value = 255

    def __init__(self):
        lab = torch.zeros(6, 6, dtype=torch.long)
        lab[:, 2:4], lab[:, 4:] = 1, 4            # columns: class a, class b, the new class
        self.items = [lab, lab.t().contiguous()]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return {"image": self.items[i], "label": self.items[i]}


def _rows(offset):
    return torch.stack([F.normalize(t - offset * E[0], dim=0) for t in TEXT])


def test_offset_ablation_scores_a_as_trained_and_centred_on_the_same_encodings():
    rows = _rows(1.0)                          # class a's row goes to the new name, b and the new class stay right
    assert (rows @ TEXT.t()).argmax(-1).tolist() == [4, 1, 2, 3, 4]
    res = to.offset_ablation(StandIn(rows), Scenes())
    assert res["A"]["mIoU_seen"] == pytest.approx(50.0)          # a: 0, b: 100 (c, d absent)
    assert res["A"]["mIoU_new"] == pytest.approx(100 * 12 / 24)   # the new class also takes a's 12 pixels
    assert res["A centred"]["mIoU_seen"] == pytest.approx(100.0)
    assert res["A centred"]["mIoU_new"] == pytest.approx(100.0)
    assert res["offset"] == pytest.approx(float(to.text_offset(rows, E[0]).mean()), abs=1e-6)
    # the offset raised to the seen texts' own level (0.8): class a's region is right again, and the trade
    # shows: the new class's region, less along m, now goes to a (a: IoU 12 / 24, b: 100; new: 0)
    high = to.offset_ablation(StandIn(rows), Scenes(), levels=(-0.5, 0.8))
    assert set(high) == {"A", "A at offset -0.50", "A at offset +0.80", "offset", "offset_std"}
    assert (high["A at offset +0.80"]["mIoU_seen"], high["A at offset +0.80"]["mIoU_new"]) == (pytest.approx(75.0), 0.0)
    assert high["A at offset -0.50"]["mIoU_seen"] == pytest.approx(50.0)
    one = StandIn(rows)
    assert to.offset_ablation(one, Scenes(), limit=1)["A"]["mIoU_seen"] == pytest.approx(50.0) and one.encoded == 1
    # no offset: centring changes nothing
    calm = to.offset_ablation(StandIn(to.remove_offset(TEXT, E[0])), Scenes())
    assert calm["offset"] == pytest.approx(0.0, abs=1e-6)
    assert calm["A"]["mIoU"] == calm["A centred"]["mIoU"] == pytest.approx(100.0)


def test_main_prints_one_row_per_checkpoint(monkeypatch, capsys):
    import ebseg_lite.builder as builder
    import ebseg_lite.toyworld.experiments as experiments
    built = []
    monkeypatch.setattr(builder, "build_model", lambda preset, checkpoint: built.append((preset, checkpoint)) or StandIn(_rows(1.0)))
    monkeypatch.setattr(experiments, "held_out_scenes", lambda n: Scenes())
    with pytest.raises(SystemExit):
        to.main(["x.safetensors", "--levels", "0,1"])
    with pytest.raises(SystemExit):
        to.main(["x.safetensors", "--levels", "zero"])
    assert built == []                                   # refused before building anything
    res = to.main(["runs/ssc_seed3/model.safetensors", "other.safetensors", "--scenes", "2", "--levels", "0,0.8"])
    assert built == [("toy", "runs/ssc_seed3/model.safetensors"), ("toy", "other.safetensors")]
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and out[1].startswith("runs/ssc_seed3 ") and "A at offset +0.80 seen/new" in out[0]
    assert out[1].split("|")[1:] and [c.strip() for c in out[1].split("|")[1:]] == ["50.0 / 50.0", "100.0 / 100.0", "75.0 / 0.0"]
    assert set(res) == {"runs/ssc_seed3/model.safetensors", "other.safetensors"}
