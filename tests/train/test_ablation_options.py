"""Training options of the ablation tables: SSC on A / B / both and on the last 1 / 3 / all outputs
(paper table 5), SAM trained with the decoder (table 7)."""
import dataclasses
import types

import pytest
import torch
from safetensors.torch import load_file

from ebseg_lite.train import Trainer, get_train_preset
from ebseg_lite.train.step import ssc_inputs, ssc_term
from train_fixtures import HalvesDataset


def fake_out(n_outputs=4):
    A = [torch.full((1, 2, 3), float(i)) for i in range(n_outputs)]
    B = [torch.full((1, 2, 3), 100.0 + i) for i in range(n_outputs)]
    return {"decoder": types.SimpleNamespace(A=A), "B_per_layer": B}, [f"match{i}" for i in range(n_outputs)]


@pytest.mark.parametrize("on,layers,expect", [
    ("A", 1, [(3.0, "match3")]),
    ("A", 3, [(1.0, "match1"), (2.0, "match2"), (3.0, "match3")]),
    ("A", 0, [(0.0, "match0"), (1.0, "match1"), (2.0, "match2"), (3.0, "match3")]),
    ("B", 1, [(103.0, "match3")]),
    ("both", 2, [(2.0, "match2"), (3.0, "match3"), (102.0, "match2"), (103.0, "match3")]),
])
def test_ssc_inputs_pick_the_embeddings_and_their_own_matching(on, layers, expect):
    out, idx = fake_out()
    got = [(float(e[0, 0, 0]), m) for e, m in ssc_inputs(out, idx, on=on, layers=layers)]
    assert got == expect


def test_ssc_inputs_refuse_unknown_embeddings():
    out, idx = fake_out()
    with pytest.raises(ValueError, match="'A', 'B' or 'both'"):
        ssc_inputs(out, idx, on="D")


def cfg_for(tmp_path, **kw):
    base = dict(out_dir=str(tmp_path / "run"), crop_size=64, num_points=128, max_iters=1, batch_size=2, log_every=1,
                ssc_weight=10.0)
    base.update(kw)
    return dataclasses.replace(get_train_preset("cpu_tiny"), **base)


def test_ssc_on_b_and_on_all_outputs_log_the_sum_of_those_terms(tmp_path, monkeypatch):
    """The logged SSC is the sum of ssc_term over exactly the chosen (embedding, matching) pairs."""
    seen = []
    import ebseg_lite.train.step as step
    real = step.ssc_term

    def spy(emb, targets, idx, text, **kw):
        v = real(emb, targets, idx, text, **kw)
        seen.append(float(v.detach()))
        return v

    monkeypatch.setattr(step, "ssc_term", spy)
    for on, layers, n_terms in (("B", 1, 1), ("A", 0, 4), ("both", 3, 6)):
        seen.clear()
        row = Trainer(cfg_for(tmp_path / on, ssc_on=on, ssc_layers=layers), dataset=HalvesDataset(4),
                      progress=False).fit()[-1]
        assert len(seen) == n_terms, on                      # tiny: 3 decoder layers + the initial queries = 4 outputs
        assert row["loss_ssc"] == pytest.approx(sum(seen), rel=1e-6)


def test_ssc_on_b_differs_from_ssc_on_a(tmp_path):
    a = Trainer(cfg_for(tmp_path / "a", ssc_on="A"), dataset=HalvesDataset(4), progress=False).fit()[-1]
    b = Trainer(cfg_for(tmp_path / "b", ssc_on="B"), dataset=HalvesDataset(4), progress=False).fit()[-1]
    assert a["loss_ce_A"] == pytest.approx(b["loss_ce_A"])  # same model, same batch before the step
    assert a["loss_ssc"] != pytest.approx(b["loss_ssc"])


def test_config_validation_of_the_ablation_options(tmp_path):
    for bad, msg in (({"ssc_on": "D"}, "ssc_on"), ({"ssc_layers": -1}, "ssc_layers"),
                     ({"train_sam": True, "cache_features": True, "train_pos_embed": False, "augment": "none"},
                      "train_sam")):
        with pytest.raises(ValueError, match=msg):
            cfg_for(tmp_path, **bad).validate()


def test_trained_sam_changes_and_is_saved_frozen_sam_is_not(tmp_path):
    frozen = Trainer(cfg_for(tmp_path / "f", max_iters=2), dataset=HalvesDataset(4), progress=False)
    trained = Trainer(cfg_for(tmp_path / "t", max_iters=2, train_sam=True), dataset=HalvesDataset(4), progress=False)
    before = {k: v.clone() for k, v in trained.model.sam.state_dict().items()}
    frozen.fit()
    trained.fit()
    changed = [k for k, v in trained.model.sam.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("blocks.") for k in changed) and "pos_embed" in changed  # pos_embed trains (preset)
    saved_t = load_file(str(tmp_path / "t" / "run" / "model.safetensors"))
    saved_f = load_file(str(tmp_path / "f" / "run" / "model.safetensors"))
    assert any(k.startswith("sam.blocks.") for k in saved_t)
    assert not any(k.startswith("sam.blocks.") for k in saved_f)
