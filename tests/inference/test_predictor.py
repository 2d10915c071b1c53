"""The model at the tiny preset: shape contract, frozen/trainable weights, wrappers vs the
libraries they wrap, encode-once / classify-many, bad input."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import ebseg_lite
from ebseg_lite import check_shape
from ebseg_lite.modeling import clip_dense, mask_attention, sam_features
from ebseg_lite.inference.outputs import label_map
from ebseg_lite.modeling.transformer_decoder import PredictionHead
from fixture_data import quiet_build

NAMES = ["cat", "sofa", "road, route", "purple thing"]


def test_shape_contract(tiny_model, rgb_image):
    m, cfg = tiny_model, tiny_model.cfg
    n, c, nh = cfg.decoder.num_queries, m.model.embed_dim, m.model.clip_heads
    enc = m.encode(rgb_image)
    hp, wp = enc.padded_size
    assert (hp % 32, wp % 32) == (0, 0)
    h, w = enc.clip_grid
    check_shape(enc.A, (n, c), "A"); check_shape(enc.B, (n, c), "B"); check_shape(enc.D, (n, c), "D")
    check_shape(enc.masks, (n, hp // 4, wp // 4), "masks")
    check_shape(enc.F_clip, (c, h, w), "F_clip")
    check_shape(enc.attn_bias, (nh, n, h, w), "attn_bias")
    check_shape(enc.A_per_layer, (cfg.decoder.dec_layers + 1, n, c), "A_per_layer")
    check_shape(enc.masks_per_layer, (cfg.decoder.dec_layers + 1, n, hp // 4, wp // 4), "masks_per_layer")
    for b in cfg.clip.feature_blocks:
        check_shape(enc.clip_feats[b], (None, h, w), f"clip block {b}")
    p = m.classify(enc, NAMES)
    k = len(NAMES)
    check_shape(p.labels, (128, 160), "labels"); assert p.labels.dtype == torch.long
    check_shape(p.sem_seg, (k, 128, 160), "sem_seg")
    check_shape(p.class_probs, (n, k + 1), "class_probs")
    for br in "ABD":
        check_shape(p.probs[br], (n, k), f"P_{br}")
        assert torch.allclose(p.probs[br].sum(-1), torch.ones(n), atol=1e-5)
    assert torch.allclose(p.class_probs.sum(-1), torch.ones(n), atol=1e-5)
    assert torch.equal(p.labels, p.sem_seg.argmax(0))
    assert torch.allclose(enc.B.norm(dim=-1), torch.ones(n), atol=1e-5)  # B is normalised


@torch.no_grad()
def test_inference_defers_res2_and_encode_still_shows_it_at_stride_4(tiny_model, rgb_image):
    m = tiny_model.model.eval()
    img = rgb_image[None]
    out = m.forward_features(img, inference=True)                   # res2 left at its block's stride
    frozen = m.frozen_features(img, inference=True)                 # the official stride-4 res2
    ref = m.forward_features(inference=True, frozen=frozen)
    scale = m.cfg.sam.scales[0]
    assert out["res2_scale"] == scale and ref["res2_scale"] is None
    assert out["sam"]["res2"].shape[-1] * scale == frozen["sam"]["res2"].shape[-1]
    assert torch.allclose(out["mask_features"], ref["mask_features"], atol=1e-5)
    assert torch.allclose(out["decoder"].masks[-1], ref["decoder"].masks[-1], atol=1e-4)
    enc = tiny_model.encode(rgb_image)
    assert torch.equal(enc.sam_feats["res2"], frozen["sam"]["res2"][0])   # the same resize, the same numbers


def test_only_new_modules_and_pos_embeds_get_gradients(tiny_model, rgb_image):
    m = quiet_build("tiny", seed=1).model.train()
    # Deformable attention starts with zero offset/weight projections (as the official code), which
    # blocks gradients to the level embedding at step 0 only; perturb them to test every path.
    for layer in m.pixel_decoder.layers:
        torch.nn.init.normal_(layer.self_attn.sampling_offsets.weight, std=0.01)
        torch.nn.init.normal_(layer.self_attn.attention_weights.weight, std=0.01)
    out = m.forward_features(rgb_image[None], inference=False)
    dec = out["decoder"]
    cls_w = F.normalize(torch.cat([torch.randn(3, m.embed_dim), m.bg_embed]), dim=-1)
    loss = sum((a @ cls_w.t()).logsumexp(-1).sum() for a in dec.A) + sum((b @ cls_w.t()).sum() for b in out["B_per_layer"])
    loss = loss + sum(mk.sigmoid().mean() for mk in dec.masks)
    loss.backward()
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert "clip.visual.positional_embedding" in trainable and "sam.pos_embed" in trainable
    assert not any(n.startswith(("clip.", "sam.")) for n in trainable - {"clip.visual.positional_embedding", "sam.pos_embed"})
    for n, p in m.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{n} got no gradient"
        else:
            assert p.grad is None, f"frozen {n} got a gradient"


@pytest.mark.parametrize("arch", ["tiny", "ViT-B-16"])
def test_dense_clip_reproduces_open_clip_encode_image(arch):
    import open_clip
    torch.manual_seed(0)
    if arch == "tiny":
        clip = quiet_build("tiny").model.clip
    else:
        clip = open_clip.create_model("ViT-B-16", force_quick_gelu=True)
    clip.eval()
    size = clip.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    x = torch.randn(2, 3, size, size)
    layers = len(clip.visual.transformer.resblocks)
    with torch.no_grad():
        dense = clip_dense.dense_clip_features(clip.visual, x, feature_blocks=(layers,), surgery=False)
        ours = clip_dense.project_tokens(clip.visual, dense.tokens[:, 0])
        ref = clip.encode_image(x, normalize=True)
    assert torch.allclose(ours, ref, atol=1e-5)


def test_sam_path_matches_segment_anything_blocks(tiny_model):
    enc, cfg = tiny_model.model.sam, tiny_model.cfg.sam
    x = torch.randn(1, 3, cfg.pretrain_img_size, cfg.pretrain_img_size)
    caught = {}
    hooks = [enc.blocks[i].register_forward_hook(lambda mod, inp, out, i=i: caught.__setitem__(i, out))
             for i in cfg.global_attn_indexes]
    with torch.no_grad():
        final = enc(x)  # segment-anything's own forward (neck removed -> last block output)
        ours = sam_features.sam_multiscale_features(enc, x, global_attn_indexes=cfg.global_attn_indexes)
    for h in hooks:
        h.remove()
    idx = list(cfg.global_attn_indexes)
    assert torch.allclose(ours["res4"], caught[idx[2]].permute(0, 3, 1, 2), atol=1e-5)
    assert torch.allclose(final, caught[idx[3]].permute(0, 3, 1, 2), atol=1e-6)  # forward returns neck(NCHW)
    up = F.interpolate(caught[idx[0]].permute(0, 3, 1, 2), scale_factor=4, mode="bilinear", align_corners=False)
    assert torch.allclose(ours["res2"], up, atol=1e-5)


def _count(monkeypatch, module, name):
    calls = {"n": 0}
    fn = getattr(module, name)

    def wrapped(*a, **k):
        calls["n"] += 1
        return fn(*a, **k)
    monkeypatch.setattr(module, name, wrapped)
    return calls


def test_inference_runs_head_bias_and_fclip_once(tiny_model, rgb_image, monkeypatch):
    head = _count(monkeypatch, mask_attention, "clip_mask_attention")
    bias = _count(monkeypatch, PredictionHead, "attn_bias")
    proj = _count(monkeypatch, mask_attention, "project_tokens")
    tiny_model.encode(rgb_image)
    assert head["n"] == 1 and bias["n"] == 1
    assert proj["n"] == 2  # B and F_clip, once each
    head["n"] = bias["n"] = 0
    tiny_model.model.train()
    try:
        tiny_model.model.forward_features(rgb_image[None], inference=False)
    finally:
        tiny_model.eval()
    layers = tiny_model.cfg.decoder.dec_layers + 1
    # training supervises B at every output: a bias per output, all of them in one head run
    assert bias["n"] == layers and head["n"] == 1


def test_encode_once_classify_many(tiny_model, rgb_image, monkeypatch):
    enc = tiny_model.encode(rgb_image)

    def boom(*a, **k):
        raise AssertionError("an image encoder ran during classify")
    for mod, name in ((clip_dense, "dense_clip_features"), (sam_features, "sam_multiscale_features")):
        monkeypatch.setattr(mod, name, boom)
    monkeypatch.setattr(tiny_model.model.sam, "forward", boom)
    monkeypatch.setattr(tiny_model.model.clip.visual, "forward", boom)
    misses = tiny_model._text_cache.misses
    p1 = tiny_model.classify(enc, NAMES)
    p2 = tiny_model.classify(enc, ["dog", "grass"])
    p3 = tiny_model.classify(enc, NAMES, w_seen=(0.0, 1.0, 0.0), w_new=(0.0, 0.0, 1.0))
    p4 = tiny_model.classify(enc, NAMES, balancing="paper")
    p5 = tiny_model.classify(enc, NAMES, seen=[True, False, True, False])
    assert tiny_model._text_cache.misses <= misses + 2  # two vocabularies, each encoded at most once
    assert p2.class_probs.shape[1] == 3
    assert not torch.allclose(p1.class_probs, p3.class_probs)
    assert not torch.allclose(p1.class_probs, p4.class_probs)
    assert p5.seen.tolist() == [True, False, True, False]


def test_seen_rule_against_training_vocabulary(tiny_model):
    seen = tiny_model.resolve_seen(["cat", "couch, sofa", "purple thing"])
    assert seen.tolist() == [True, True, False]
    with pytest.raises(ValueError, match="one bool per class"):
        tiny_model.resolve_seen(["cat", "dog"], seen=[True])


def test_surgery_bias_alias_changes_nothing(rgb_image):
    """The official aliasing of the Surgery-stream bias is harmless: 'plain' gives the same outputs."""
    a = quiet_build("tiny", seed=3).encode(rgb_image)
    b = quiet_build("tiny", seed=3, inference={"surgery_bias": "plain"}).encode(rgb_image)
    assert torch.allclose(a.F_clip, b.F_clip, atol=1e-6) and torch.allclose(a.B, b.B, atol=1e-6)


def test_label_map_chunks_equal_full(tiny_model, rgb_image):
    p = tiny_model.predict(rgb_image, NAMES)
    from ebseg_lite.inference.outputs import upsample_masks
    m = upsample_masks(p.masks, p.encoded)
    full_l, full_s = label_map(p.map_probs, m, max_elems=1 << 30)
    small_l, small_s = label_map(p.map_probs, m, max_elems=100)
    assert torch.equal(full_l, small_l) and torch.allclose(full_s, small_s)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16"])
def test_image_modes(tiny_model, tmp_path, mode):
    arr = (np.random.RandomState(0).rand(40, 50) * 255).astype(np.uint8)
    img = Image.fromarray(arr).convert(mode) if mode != "I;16" else Image.fromarray(arr.astype(np.uint16) * 257)
    path = tmp_path / "x.png"
    img.save(path)
    p = tiny_model.predict(path, NAMES)
    assert p.labels.shape == (40, 50)


@pytest.mark.parametrize("hw", [(5, 7), (97, 131), (1, 1)])
def test_tiny_and_odd_sizes(tiny_model, hw):
    img = np.full((*hw, 3), 200, dtype=np.uint8)
    p = tiny_model.predict(img, NAMES)
    assert p.labels.shape == hw


def test_bad_inputs(tiny_model, rgb_image, tmp_path):
    with pytest.raises(FileNotFoundError):
        tiny_model.encode(tmp_path / "missing.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="bad.jpg"):
        tiny_model.encode(bad)
    enc = tiny_model.encode(rgb_image)
    for vocab, msg in (([], "empty"), (["cat", "cat"], "duplicate"), (["cat", "  "], "blank"), ("cat,dog", "list")):
        with pytest.raises(ValueError, match=msg):
            tiny_model.classify(enc, vocab)
    with pytest.raises(ValueError, match="balancing"):
        tiny_model.classify(enc, NAMES, balancing="magic")


def test_847_class_vocabulary(tiny_model, rgb_image):
    names = [f"thing number {i}" for i in range(847)]
    p = tiny_model.predict(rgb_image, names, keep_intermediates=False)
    assert p.class_probs.shape == (tiny_model.cfg.decoder.num_queries, 848)
    assert int(p.labels.max()) < 847


def test_bf16_autocast_close_to_fp32(tiny_model, rgb_image):
    a = tiny_model.encode(rgb_image)
    b = tiny_model.encode(rgb_image, precision="bf16")
    assert F.cosine_similarity(a.B, b.B, dim=-1).min() > 0.98
    with pytest.raises(ValueError, match="precision"):
        tiny_model.encode(rgb_image, precision="fp8")


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_same_results_on_accelerators(device, rgb_image):
    available = torch.cuda.is_available() if device == "cuda" else torch.backends.mps.is_available()
    if not available:
        pytest.skip(f"{device} not present on this machine")
    cpu = quiet_build("tiny", seed=0).encode(rgb_image)
    acc = quiet_build("tiny", seed=0, device=device).encode(rgb_image)
    assert torch.allclose(cpu.B, acc.B.cpu(), atol=1e-3)


def test_unknown_device_and_preset_errors():
    with pytest.raises(ValueError, match="preset"):
        ebseg_lite.build_model("vit_xxl")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            ebseg_lite.build_model("tiny", device="cuda")


def test_vit_b_forward_640_random_weights():
    m = quiet_build("vit_b")
    img = torch.randint(0, 256, (3, 640, 640), dtype=torch.uint8)
    enc = m.encode(img, keep_intermediates=False)
    check_shape(enc.masks, (100, 160, 160)); check_shape(enc.B, (100, 512)); check_shape(enc.F_clip, (512, 20, 20))
    check_shape(enc.attn_bias, (12, 100, 20, 20))


def test_encode_runs_in_eval_mode_and_restores_the_callers_mode(tiny_model, rgb_image, monkeypatch):
    """encode runs every module in eval mode (no dropout), leaves a training model training, and does
    not walk the modules to switch modes when nothing is training."""
    model = tiny_model.model
    seen = []
    monkeypatch.setattr(type(model), "forward_features",
                        lambda self, *a, _f=type(model).forward_features, **k:
                        (seen.append(any(m.training for m in self.modules())), _f(self, *a, **k))[1])
    switches = []
    real_train = type(model).train
    monkeypatch.setattr(type(model), "train", lambda self, mode=True: (switches.append(mode), real_train(self, mode))[1])
    model.eval()
    switches.clear()
    tiny_model.encode(rgb_image)
    assert seen == [False] and switches == []               # already in eval mode: no switching
    model.train()
    switches.clear()
    tiny_model.encode(rgb_image)
    assert seen == [False, False] and switches == [False, True] and model.training
    model.decoder.train()                                   # only a sub-module training: still eval inside
    model.training = False
    tiny_model.encode(rgb_image)
    assert seen[-1] is False and not model.training
    tiny_model.eval()


def test_words_the_tokenizer_cannot_spell_warn_once_per_vocabulary(tiny_model, monkeypatch):
    import warnings

    from fixture_data import ClosedTokenizer
    monkeypatch.setattr(tiny_model.model, "tokenizer", ClosedTokenizer(tiny_model.model.tokenizer, {"zebraxq"}))
    monkeypatch.setattr(tiny_model, "_names_checked", set())
    names = ["zebraxq", "cat"]
    with pytest.warns(UserWarning, match="1 class name.*'zebraxq'"):
        first = tiny_model.text_embeddings(names)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = tiny_model.text_embeddings(names)          # the same vocabulary: checked already
        tiny_model.text_embeddings(["cat", "sofa"])         # every word known
    assert torch.equal(first, again)
    tiny_model.clear_text_cache()
    monkeypatch.setattr(tiny_model, "_names_checked", set())
    with pytest.warns(UserWarning, match="'zebraxq'"):     # cached on disk or not, a new predictor state warns again
        tiny_model.text_embeddings(names)
