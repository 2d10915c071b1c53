"""The toy BLIP (pretraining step, save / load) and PnP-OVSS on toy scenes with the shipped weights."""
import json

import numpy as np
import pytest
import torch

from ebseg_lite.baselines.pnp_ovss import PnPConfig, PnPOVSS, encode_prompt
from ebseg_lite.baselines.pnp_ovss.evaluate import evaluate_pnp
from ebseg_lite.toyworld import toy_blip as tb
from ebseg_lite.toyworld.toy_pnp import toy_pnp_ovss
from ebseg_lite.toyworld.presets import toy_weights_dir
from ebseg_lite.toyworld.world import ToyWorld

SHIPPED = toy_weights_dir() / "toy_blip.safetensors"


@pytest.fixture(scope="module")
def world():
    return ToyWorld()


def test_toy_vocabulary_gives_every_class_word_one_piece(world):
    vocab = tb.toy_vocabulary(world)
    tok = tb.toy_tokenizer(vocab)
    assert vocab[:6] == tb.SPECIALS and len(set(vocab)) == len(vocab)
    p = encode_prompt(tok, world.class_names)
    assert [b - a for a, b in p.spans] == [len(n.split()) for n in world.class_names]
    assert tok.unk_token_id not in p.input_ids[0].tolist()
    cap = world.caption_for(world.thing_ids[:2] + world.stuff_ids[:1], np.random.default_rng(0))
    assert tok.unk_token_id not in tok(cap)["input_ids"]


def test_swap_one_replaces_exactly_one_class_by_an_absent_one_of_its_kind(world):
    rng = np.random.default_rng(0)
    ids = [0, 3, world.stuff_ids[0]]
    for _ in range(20):
        new = tb.swap_one(world, ids, rng)
        changed = [(a, b) for a, b in zip(ids, new) if a != b]
        assert len(changed) == 1 and changed[0][1] not in ids
        assert (changed[0][0] < world.num_things) == (changed[0][1] < world.num_things)


def test_word_targets_mark_each_named_class_by_its_presence_in_the_image(world):
    tok = tb.toy_tokenizer(tb.toy_vocabulary(world))
    a, b, stuff = 0, 7, world.stuff_ids[0]
    cap = f"a photo of a {world.class_names[a]} and a {world.class_names[b]} on {world.class_names[stuff]}."
    ids, _ = tb.encode(tok, [cap], "[ENC]", 48)
    rows, cols, y = tb.word_targets(tok, world, ids, [frozenset([a, b, stuff])], [frozenset([a, stuff])])
    words = tok.convert_ids_to_tokens(ids[0, cols].tolist())
    want = world.class_names[a].split() + world.class_names[b].split() + [world.class_names[stuff]]
    assert sorted(words) == sorted(want) and rows.tolist() == [0] * len(want)
    got = dict(zip(cols.tolist(), y.tolist()))
    start_b = cap.split().index(world.class_names[b].split()[0]) + 1      # + 1 for [ENC]
    assert got[start_b] == 0 and sum(y.tolist()) == len(want) - len(world.class_names[b].split())


def test_one_pretraining_step_reaches_every_parameter_it_should(world):
    torch.manual_seed(0)
    vocab = tb.toy_vocabulary(world)
    tok = tb.toy_tokenizer(vocab)
    model = tb.build_blip(tb.toy_blip_config(len(vocab), image_size=32, width=32, layers=1, heads=2)).train()
    images, labels = tb.make_pool(world, 6, seed=0, size=32)
    loss, logs = tb.pretrain_step(model, tok, world, images, labels, np.random.default_rng(0), word_itm=1.0)
    loss.backward()
    no_grad = sorted({n.split(".")[0] + "." + n.split(".")[1] for n, p in model.named_parameters()
                      if p.grad is None or p.grad.abs().sum() == 0})
    # BLIP-ITM has no pooler and no token types here; everything else must learn
    assert no_grad == [] or all("token_type" in n for n in no_grad), no_grad
    assert 0 < logs["itc"] and 0 < logs["itm"] and 0 < logs["word_itm"] and np.isfinite(float(loss.detach()))


def test_save_load_round_trip_keeps_outputs_and_summary(world, tmp_path):
    vocab = tb.toy_vocabulary(world)
    model = tb.build_blip(tb.toy_blip_config(len(vocab), image_size=32, width=32, layers=1, heads=2))
    path = tb.save_toy_blip(model, vocab, tmp_path / "b.safetensors", {"itm_acc": 0.5})
    m2, tok = tb.load_toy_blip(path)
    p = encode_prompt(tok, ["red " + world.class_names[0].split()[-1]])
    x = torch.randn(1, 3, 32, 32)
    a = model(input_ids=p.input_ids, pixel_values=x, attention_mask=p.attention_mask).itm_score
    b = m2(input_ids=p.input_ids, pixel_values=x, attention_mask=p.attention_mask).itm_score
    assert torch.allclose(a, b) and tb.read_summary(path) == {"itm_acc": 0.5}


@pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped toy BLIP is part of the repository")
def test_shipped_toy_blip_localises_beyond_a_trivial_guess(world):
    torch.set_num_threads(1)
    seg = toy_pnp_ovss(SHIPPED)
    ds = world.dataset(8, seed=5, split="test")
    res = evaluate_pnp(seg, ds, source="gt", progress=False)
    trivial = evaluate_pnp(_Constant(), ds, source="gt", progress=False)  # every pixel = the list's stuff
    assert res["class_source"] == "gt" and res["images"] == 8
    assert res["mIoU"] > trivial["mIoU"] + 5, (res["mIoU"], trivial["mIoU"])
    summary = tb.read_summary(SHIPPED)
    assert summary["itm_acc"] > 0.6 and summary["steps"] == json.loads(json.dumps(summary))["steps"]


class _Constant:
    """A segmenter that paints the whole image with the list's last class (a stuff class: the
    toy world's ids put things first), the floor any localisation has to beat."""

    config = PnPConfig(background="never")

    def segment(self, image, names):
        class Out:
            labels = torch.full(image.shape[:2], len(names) - 1, dtype=torch.long)
        return Out()
