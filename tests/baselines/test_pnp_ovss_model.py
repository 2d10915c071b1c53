"""PnP-OVSS on a tiny random BLIP (transformers' BlipForImageTextRetrieval): GradCAM parity with
plain autograd, the pipeline end to end, the search, and loading real weights offline."""
import os
import time

import numpy as np
import pytest
import torch

from ebseg_lite.baselines.pnp_ovss import PnPConfig, PnPOVSS, build_blip, encode_prompt, tiny_blip_config
from ebseg_lite.baselines.pnp_ovss.blip import load_blip_itm, preprocess_image
from ebseg_lite.baselines.pnp_ovss.gradcam import class_maps, itm_gradcam
from ebseg_lite.baselines.pnp_ovss.search import search_pnp
from ebseg_lite.io.files import WeightsUnavailable

transformers = pytest.importorskip("transformers")
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[ENC]", "a", "picture", "of", "red", "ring",
         "sky", "dining", "table", "##s", "blue"]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(WORDS) + "\n")
    return transformers.BertTokenizer(str(path))


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return build_blip(tiny_blip_config(vocab_size=len(WORDS), image_size=32, patch_size=8, width=32,
                                       layers=2, heads=2), seed=0)


def test_prompt_spans_cover_each_name_and_start_with_enc(tok):
    p = encode_prompt(tok, ["red ring", "tables", "sky"])
    ids = p.input_ids[0].tolist()
    assert ids[0] == WORDS.index("[ENC]") and ids[-1] == WORDS.index("[SEP]")
    assert [tok.convert_ids_to_tokens(ids[a:b]) for a, b in p.spans] == [["red", "ring"], ["table", "##s"], ["sky"]]
    assert p.text == "A picture of red ring tables sky"
    with pytest.raises(ValueError):
        encode_prompt(tok, ["red"] * 50, max_length=40)


def test_gradcam_matches_autograd_on_the_returned_cross_attention(model, tok):
    torch.manual_seed(1)
    x = torch.randn(1, 3, 32, 32)
    p = encode_prompt(tok, ["red ring", "sky"])
    g = itm_gradcam(model, x, p.input_ids, p.attention_mask, layers=[0, 1])
    # reference: HF's own cross_attentions output and a full backward through every parameter
    out = model(input_ids=p.input_ids, pixel_values=x, attention_mask=p.attention_mask,
                use_itm_head=True, output_attentions=True)
    enc = model.text_encoder(input_ids=p.input_ids, attention_mask=p.attention_mask,
                             encoder_hidden_states=model.vision_model(pixel_values=x).last_hidden_state,
                             output_attentions=True)
    att = enc.cross_attentions                                       # per layer (1, nh, T, 1 + 16)
    logit = model.itm_head(enc.last_hidden_state[:, 0])[:, 1].sum()
    grads = torch.autograd.grad(logit, att)
    assert torch.allclose(g.itm_logits, out.itm_score.detach(), atol=1e-6)
    for l in (0, 1):
        a, d = att[l].detach(), grads[l]
        assert torch.allclose(g.attention[l], a[..., 1:].reshape(1, 2, -1, 4, 4), atol=1e-6)
        want = (a * d.clamp(min=0))[..., 1:].reshape(1, 2, -1, 4, 4)
        assert torch.allclose(g.gradcam[l], want, atol=1e-6)
        assert g.gradcam[l].abs().sum() > 0
    assert all(p_.grad is None for p_ in model.parameters())          # parameters untouched
    assert all(p_.requires_grad for p_ in model.parameters())         # and their flags restored


def test_pipeline_runs_every_stage_with_official_round_bookkeeping(model, tok):
    img = (np.random.default_rng(0).random((20, 24, 3)) * 255).astype(np.uint8)
    seg = PnPOVSS(model, tok, PnPConfig(layer=0, head=1, drop_rounds=3, drop_patches=2, background="few"))
    out = seg.segment(img, ["red ring", "sky"])
    assert len(out.rounds) == 3 and [int(r.dropped.sum()) for r in out.rounds] == [0, 2, 4]
    assert out.combined.shape == (2, 4, 4) and out.resized.shape == (2, 20, 24)
    assert (out.combined.flatten(1) > 0).any(1).all()                 # both classes fire somewhere
    assert out.scores.shape == (3, 20, 24) and out.background         # 2 < 3 classes: background added
    assert torch.allclose(out.probs.sum(0), torch.ones(20, 24), atol=1e-3)
    assert out.labels.min() >= -1 and out.labels.max() <= 1
    want = out.rounds[0].gradcam * 2 + out.rounds[1].gradcam + out.rounds[2].gradcam
    assert torch.allclose(out.combined, want)
    # the expensive part is the rounds; re-thresholding the same maps reuses them
    thr = seg.postprocess(out.combined, img, threshold=0.9)[0]
    assert (thr > 0).sum() < (out.thresholded > 0).sum()
    with pytest.raises(ValueError):
        PnPOVSS(model, tok, PnPConfig(layer=7, head=9))                # the official layer does not exist here


def test_dropped_patches_are_the_most_salient_of_the_previous_round(model, tok):
    img = (np.random.default_rng(2).random((32, 32, 3)) * 255).astype(np.uint8)
    seg = PnPOVSS(model, tok, PnPConfig(layer=1, head=1, drop_rounds=2, drop_patches=3, crf=False,
                                        background="never"))
    out = seg.segment(img, ["blue", "sky"])
    first = out.rounds[0].gradcam.sum(0).flatten()
    chosen = out.rounds[1].dropped.flatten()
    assert int(chosen.sum()) == 3 and first[chosen].min() >= first[~chosen].max()
    assert out.rounds[1].pixel_values.view(3, 4, 8, 4, 8).permute(1, 3, 0, 2, 4)[out.rounds[1].dropped].abs().sum() == 0


def test_search_returns_distinct_trials_with_the_reward_of_each(model, tok):
    class Scorer:
        calls = 0

        def probs(self, images, names):
            Scorer.calls += 1
            m = torch.from_numpy(images.astype(np.float64)).mean((1, 2, 3))[:, None] + 1e-3
            return torch.cat([m, torch.ones_like(m)], 1)[:, :len(names)] / (m + 1)

    seg = PnPOVSS(model, tok, PnPConfig(layer=0, head=0, crf=False, background="never"))
    imgs = [(np.random.default_rng(i).random((16, 16, 3)) * 255).astype(np.uint8) for i in range(2)]
    trials = search_pnp(seg, imgs, [["red", "sky"], ["blue", "ring"]], Scorer(), thresholds=(0.1, 0.5),
                        n_iter=5, seed=0)
    assert len(trials) == 5 and len({tuple(p.values()) for p, _ in trials}) == 5
    assert all(0 <= v <= 4 for _, v in trials) and trials[0][1] == max(v for _, v in trials)
    assert Scorer.calls == 5 * 2


def test_real_blip_offline_fails_at_once_with_what_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(WeightsUnavailable, match="huggingface-cli download Salesforce/blip-itm-large-flickr"):
        load_blip_itm()
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        load_blip_itm(tmp_path / "missing_folder")


def test_local_folder_round_trip(model, tok, tmp_path):
    model.save_pretrained(tmp_path / "blip")
    tok.save_pretrained(tmp_path / "blip")
    m2, t2 = load_blip_itm(tmp_path / "blip")
    x = preprocess_image(np.full((32, 32, 3), 128, np.uint8), 32)
    p = encode_prompt(t2, ["sky"])
    a = m2(input_ids=p.input_ids, pixel_values=x, attention_mask=p.attention_mask).itm_score
    b = model(input_ids=p.input_ids, pixel_values=x, attention_mask=p.attention_mask).itm_score
    assert torch.allclose(a, b, atol=1e-6)
