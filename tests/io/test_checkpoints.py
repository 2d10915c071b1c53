"""Every way weights get into ebseg_lite, on small checkpoints the tests write themselves.

ebseg_lite's own safetensors files (full and trainable-only, written atomically), ``.pth`` state
dicts, pickles carrying code (refused, never run), corrupt and truncated files, shape mismatches,
CLIP from a local open_clip file or an ``hf-hub:`` repo (a fake Hugging Face cache, offline),
SAM checkpoints (argument and environment variable) and official-format detection.
Nothing here touches the network: every test runs with ``HF_HUB_OFFLINE`` and an empty hub cache.
"""
import copy
import json
import os
import pickle

import numpy as np
import open_clip
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import ebseg_lite
from ebseg_lite import builder
from ebseg_lite.builder import SAM_ENV, WeightsUnavailable
from ebseg_lite.config import TINY_CLIP_CFG, ClipConfig, get_preset
from ebseg_lite.modeling.sam_features import build_sam_encoder
from ebseg_lite.io.checkpoints import checkpoint_metadata, load_checkpoint, save_checkpoint
from ebseg_lite.io.files import CheckpointError, atomic_write

HF_REVISION = "0123456789abcdef0123456789abcdef01234567"  # any 40-hex commit hash


# ----------------------------------------------------------------------------- helpers
@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No network, an empty hub cache and no SAM path leaking in from the developer's shell."""
    import huggingface_hub.constants as hf_constants
    cache = tmp_path / "hf_cache"
    cache.mkdir()
    monkeypatch.delenv(SAM_ENV, raising=False)
    monkeypatch.delenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    # huggingface_hub reads both variables once, at import: patch the values it uses at call time.
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    return cache


def build(seed=0, **kwargs):
    return ebseg_lite.build_model("tiny", seed=seed, **kwargs)


def state(module):
    module = getattr(module, "model", module)  # a predictor's nn.Module
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same(got, want):
    assert set(got) == set(want)
    bad = [k for k in want if not torch.equal(got[k], want[k])]
    assert not bad, f"{len(bad)} tensors differ, e.g. {bad[:3]}"


def n_differ(a, b):
    return sum(not torch.equal(a[k], b[k]) for k in a)


def no_temp_files(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []


class RunsCode:
    """Unpickling this runs ``exec(code)``: a stand-in for a malicious checkpoint."""

    def __init__(self, marker):
        self.code = f"open({str(marker)!r}, 'w').write('pickled code ran')"

    def __reduce__(self):
        return exec, (self.code,)


def sneaky_pickle(marker) -> bytes:
    """A pickle on which torch's weights-only unpickler raises a *TypeError* (BUILD of an
    OrderedDict with state None), before it reaches ``exec``; a full unpickler runs ``exec``.
    open_clip retries ``torch.load`` without ``weights_only`` on a TypeError."""
    code = f"open({str(marker)!r}, 'w').write('pickled code ran')".encode()
    return (b"\x80\x02" + b"ccollections\nOrderedDict\n)RNb0"
            + b"cbuiltins\nexec\n" + b"X" + len(code).to_bytes(4, "little") + code + b"\x85R0" + b"}.")


def tiny_clip(seed):
    torch.manual_seed(seed)
    return open_clip.CLIP(**copy.deepcopy(TINY_CLIP_CFG))


def fake_hf_repo(cache, repo, files):
    """``files`` (name -> writer(path)) in huggingface_hub's cache layout for ``repo`` at main."""
    folder = cache / ("models--" + repo.replace("/", "--"))
    snap = folder / "snapshots" / HF_REVISION
    snap.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(HF_REVISION)
    for name, write in files.items():
        write(snap / name)
    return snap


def write_open_clip_config(path):
    path.write_text(json.dumps({
        "model_cfg": TINY_CLIP_CFG,
        "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]},
    }))


# ----------------------------------------------------------------------------- 1. safetensors round trip
def test_save_load_round_trip(tmp_path):
    a, b = build(seed=0), build(seed=1)
    want = state(a)
    assert n_differ(state(b), want) > 100  # the seeds really give different weights
    path = save_checkpoint(a, tmp_path / "ckpt" / "model.safetensors")
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.safetensors"]  # no temp file left
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600
    meta = checkpoint_metadata(path)
    assert meta["format"] == "ebseg_lite" and meta["trainable_only"] == "0"
    assert json.loads(meta["config"])["decoder"]["num_queries"] == 20
    res = load_checkpoint(b, path)
    assert res == {"missing": [], "unexpected": []}
    assert_same(state(b), want)
    assert_same(state(build(seed=2, checkpoint=str(path))), want)  # build_model(checkpoint=...)


def test_weights_trained_with_a_sam_scale_need_a_model_with_that_scale(tmp_path):
    """No tensor shape tells SAM's feature scale (eq. 1), so the saved config is checked on load: a mismatch
    is refused with the fix in the message; the same scale loads; a file without the field means scale 1."""
    scaled = builder.build_model("tiny", seed=0, sam={"feature_scale": 0.5}).model
    path = save_checkpoint(scaled, tmp_path / "scaled.safetensors")
    with pytest.raises(CheckpointError, match=r"scaled by 0.5 .*sam=\{'feature_scale': 0.5\}"):
        load_checkpoint(build(seed=1), path)
    again = builder.build_model("tiny", seed=1, sam={"feature_scale": 0.5}).model
    load_checkpoint(again, path)
    assert_same(state(again), state(scaled))
    # build_model takes the scale from the file unless asked for another
    built = build(seed=2, checkpoint=str(path)).model
    assert built.fusion.sam_scale == 0.5 and built.cfg.sam.feature_scale == 0.5
    with pytest.raises(CheckpointError, match="scaled by 0.5"):
        build(seed=2, checkpoint=str(path), sam={"feature_scale": 1.0})
    # an older file: its config has no feature_scale, so it was trained at 1 and loads into the default model
    meta = checkpoint_metadata(path)
    cfg = json.loads(meta["config"])
    del cfg["sam"]["feature_scale"]
    with safe_open(str(path), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    old = tmp_path / "old.safetensors"
    save_file(tensors, str(old), metadata={**meta, "config": json.dumps(cfg)})
    load_checkpoint(build(seed=1), old)
    with pytest.raises(CheckpointError, match="scaled by 1 "):
        load_checkpoint(builder.build_model("tiny", seed=1, sam={"feature_scale": 0.5}).model, old)


def test_trainable_only(tmp_path):
    a, b = build(seed=0), build(seed=1)
    trainable = {n for n, p in a.model.named_parameters() if p.requires_grad}
    assert "clip.visual.positional_embedding" in trainable and "clip.visual.conv1.weight" not in trainable
    full = save_checkpoint(a, tmp_path / "full.safetensors")
    part = save_checkpoint(a, tmp_path / "part.safetensors", trainable_only=True)
    with safe_open(str(part), framework="pt") as f:
        assert set(f.keys()) == trainable
    assert checkpoint_metadata(part)["trainable_only"] == "1"
    assert part.stat().st_size < full.stat().st_size / 2
    before, want = state(b), state(a)
    res = load_checkpoint(b, part)
    assert res["unexpected"] == [] and set(res["missing"]) == set(want) - trainable
    after = state(b)
    assert all(torch.equal(after[k], want[k]) for k in trainable)
    frozen = set(want) - trainable
    assert all(torch.equal(after[k], before[k]) for k in frozen)  # frozen CLIP/SAM untouched
    assert n_differ({k: after[k] for k in frozen}, {k: want[k] for k in frozen}) > 50


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    import safetensors.torch
    path = save_checkpoint(build(seed=0), tmp_path / "model.safetensors")
    good = path.read_bytes()

    def half_written(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\x00" * 1000)
        raise OSError("No space left on device")

    with monkeypatch.context() as m:
        m.setattr(safetensors.torch, "save_file", half_written)
        with pytest.raises(OSError, match="No space"):
            save_checkpoint(build(seed=1), path)
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf_cache", "model.safetensors"]
    c = build(seed=3)
    load_checkpoint(c, path)
    assert_same(state(c), state(build(seed=0)))


def test_interrupted_atomic_write_leaves_nothing(tmp_path):
    def interrupted(tmp):
        with open(tmp, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "w.bin", interrupted)
    assert not (tmp_path / "w.bin").exists() and no_temp_files(tmp_path)


def test_loading_refreshes_cached_text_embeddings(tmp_path):
    names = ["cat", "grass"]
    a, b = build(seed=0), build(seed=1)
    stale = b.text_embeddings(names)  # cached with b's own text tower
    load_checkpoint(b, save_checkpoint(a, tmp_path / "a.safetensors"))
    fresh = b.text_embeddings(names)
    assert not torch.allclose(fresh, stale)
    torch.testing.assert_close(fresh, a.text_embeddings(names))


# ----------------------------------------------------------------------------- 2. .pth state dicts
@pytest.mark.parametrize("wrap", ["plain", "model", "state_dict+epoch"])
def test_pth_state_dict(tmp_path, wrap):
    a, b = build(seed=0), build(seed=1)
    sd = a.model.state_dict()
    obj = {"plain": sd, "model": {"model": sd}, "state_dict+epoch": {"state_dict": sd, "epoch": 3}}[wrap]
    torch.save(obj, tmp_path / "model.pth")
    assert load_checkpoint(b, tmp_path / "model.pth") == {"missing": [], "unexpected": []}
    assert_same(state(b), state(a))


# ----------------------------------------------------------------------------- 3. pickled code
@pytest.mark.parametrize("legacy", [False, True], ids=["torch.save", "plain-pickle"])
def test_pickled_code_is_refused_and_never_run(tmp_path, legacy):
    def write(obj, path):
        if legacy:
            with open(path, "wb") as f:
                pickle.dump(obj, f, protocol=2)
        else:
            torch.save(obj, path)

    # torch.save'd tensors next to the payload; a plain pickle of tensors would be refused for its
    # storage class before the payload is reached, so the plain pickle carries the payload alone
    sd = {} if legacy else {k: v for k, v in list(build().model.state_dict().items())[:3]}
    control, marker = tmp_path / "control_ran", tmp_path / "evil_ran"
    write({**sd, "payload": RunsCode(control)}, tmp_path / "control.pth")
    if legacy:  # proof that the file is dangerous
        pickle.loads((tmp_path / "control.pth").read_bytes())
    else:
        torch.load(tmp_path / "control.pth", weights_only=False)
    assert control.exists()

    evil = tmp_path / "evil.pth"
    write({**sd, "payload": RunsCode(marker)}, evil)
    model = build()
    with pytest.raises(CheckpointError, match="refused to load") as err:
        load_checkpoint(model, evil)
    msg = str(err.value)
    assert str(evil) in msg and "code" in msg and "exec" in msg
    assert "set to `False`" not in msg  # torch's advice to retry unsafely is not passed on
    for kwargs in ({"sam_checkpoint": str(evil)}, {"clip_pretrained": str(evil)}):
        with pytest.raises(CheckpointError, match="refused to load"):
            build(**kwargs)
    assert not marker.exists()


def test_pickle_that_trips_open_clips_unsafe_retry(tmp_path, monkeypatch):
    """With torch < 2.6 (or TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1) open_clip's TypeError retry
    unpickles everything; the CLIP path must read files with the strict reader first."""
    control, marker = tmp_path / "control_ran", tmp_path / "evil_ran"
    assert pickle.loads(sneaky_pickle(control)) == {} and control.exists()  # it is dangerous
    evil = tmp_path / "clip.pt"
    evil.write_bytes(sneaky_pickle(marker))
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # torch.load's default as before 2.6
    with pytest.raises(CheckpointError, match="clip.pt"):
        build(clip_pretrained=str(evil))
    assert not marker.exists()


# ----------------------------------------------------------------------------- 4. corrupt / missing
def _half(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("case", ["half.safetensors", "half.pth", "zeros.pth", "html.pth", "garbage.safetensors",
                                  "empty.pth", "lfs-pointer.pth"])
def test_corrupt_or_truncated_file(tmp_path, case):
    model = build()
    path = tmp_path / case
    if case == "half.safetensors":
        save_checkpoint(model, path)
        _half(path)
    elif case == "half.pth":
        torch.save(model.model.state_dict(), path)
        _half(path)
    else:
        path.write_bytes({"zeros.pth": b"\x00" * 4096, "html.pth": b"<!DOCTYPE html><html>404</html>\n",
                          "garbage.safetensors": os.urandom(4096), "empty.pth": b"",
                          "lfs-pointer.pth": b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n"}[case])
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(model, path)
    msg = str(err.value)
    assert str(path) in msg and "corrupt" in msg
    assert "refused" not in msg  # not mistaken for pickled code


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found.*nope.safetensors"):
        load_checkpoint(build(), tmp_path / "nope.safetensors")


def test_not_a_state_dict(tmp_path):
    torch.save({"weights": [1, 2, 3]}, tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="does not hold a state dict of tensors"):
        load_checkpoint(build(), tmp_path / "list.pth")


# ----------------------------------------------------------------------------- 5. shape mismatch
def test_shape_mismatch_names_key_and_shapes(tmp_path):
    other = build(decoder={"num_queries": 10})
    path = save_checkpoint(other, tmp_path / "q10.safetensors")
    model = build()
    before = state(model)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(model, path)
    msg = str(err.value)
    assert "decoder.query_feat.weight: file (10, 64) vs model (20, 64)" in msg
    assert "decoder.query_embed.weight" in msg and str(path) in msg
    assert_same(state(model), before)  # nothing half-loaded


# ----------------------------------------------------------------------------- 6. CLIP
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_clip_from_local_open_clip_file(tmp_path, suffix):
    src = tiny_clip(seed=7)
    path = tmp_path / f"tiny_clip{suffix}"
    sd = {k: v.contiguous() for k, v in src.state_dict().items()}
    save_file(sd, str(path)) if suffix == ".safetensors" else torch.save(sd, path)
    model = build(clip_pretrained=str(path))
    assert_same(state(model.model.clip), state(src))
    assert n_differ(state(build().model.clip), state(src)) > 10  # a plain build has other weights
    assert model.cfg.clip.pretrained == str(path)


def test_clip_local_file_errors(tmp_path):
    with pytest.raises(WeightsUnavailable, match="not found"):
        build(clip_pretrained=str(tmp_path / "missing.safetensors"))
    sd = {k: v.contiguous() for k, v in tiny_clip(seed=0).state_dict().items()}
    sd["visual.proj"] = torch.zeros(64, 32)  # a CLIP with another embedding width
    save_file(sd, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="other.safetensors.*visual.proj"):
        build(clip_pretrained=str(tmp_path / "other.safetensors"))


def test_clip_local_file_for_named_architecture_is_a_file_error(tmp_path, monkeypatch):
    """A bad local file for ViT-B-16 is a CheckpointError about the file, not 'offline?'."""
    monkeypatch.setattr(open_clip, "create_model", lambda *a, **k: tiny_clip(seed=0))  # no ViT-B build
    (tmp_path / "vitb.pt").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="vitb.pt"):
        builder.build_clip(ClipConfig(model_name="ViT-B-16"), str(tmp_path / "vitb.pt"))


@pytest.fixture
def hf_tiny_clip(offline):
    src = tiny_clip(seed=11)
    sd = {k: v.contiguous() for k, v in src.state_dict().items()}
    snap = fake_hf_repo(offline, "tester/tiny-clip", {
        "open_clip_config.json": write_open_clip_config,
        "open_clip_model.safetensors": lambda p: save_file(sd, str(p)),  # open_clip looks for this first
    })
    return src, snap


def test_clip_from_hf_hub_cache(hf_tiny_clip):
    src, _ = hf_tiny_clip
    model = build(clip_pretrained="hf-hub:tester/tiny-clip")
    assert_same(state(model.model.clip), state(src))
    assert model.cfg.clip.pretrained == "hf-hub:tester/tiny-clip"
    enc = model.encode(torch.randint(0, 256, (3, 128, 128), generator=torch.Generator().manual_seed(0), dtype=torch.uint8))
    assert tuple(enc.masks.shape) == (20, 32, 32) and tuple(enc.A.shape) == (20, 64)
    assert torch.isfinite(enc.masks).all() and torch.isfinite(enc.F_clip).all()
    pred = model.classify(enc, ["sky", "grass", "ball"])
    assert tuple(pred.labels.shape) == (128, 128) and int(pred.labels.max()) < 3
    torch.testing.assert_close(pred.class_probs.sum(-1), torch.ones(20))


def test_hf_hub_without_weights_is_an_error_not_a_random_clip(offline):
    fake_hf_repo(offline, "tester/config-only", {"open_clip_config.json": write_open_clip_config})
    with pytest.raises(WeightsUnavailable) as err:
        build(clip_pretrained="hf-hub:tester/config-only")
    msg = str(err.value)
    assert "open_clip.create_model('hf-hub:tester/config-only')" in msg and str(offline) in msg


def test_hf_hub_unknown_repo_offline(offline):
    with pytest.raises(WeightsUnavailable, match="hf-hub:tester/nowhere") as err:
        build(clip_pretrained="hf-hub:tester/nowhere")
    assert str(offline) in str(err.value)  # says where the cache is expected


def test_hf_hub_pickled_code_is_refused(offline, tmp_path):
    marker = tmp_path / "evil_ran"
    fake_hf_repo(offline, "tester/evil-clip", {
        "open_clip_config.json": write_open_clip_config,
        "open_clip_pytorch_model.bin": lambda p: p.write_bytes(sneaky_pickle(marker)),
    })
    with pytest.raises(CheckpointError, match="open_clip_pytorch_model.bin"):
        build(clip_pretrained="hf-hub:tester/evil-clip")
    assert not marker.exists()


def test_pretrained_tag_offline_says_what_to_download(offline):
    """Real open_clip, offline with an empty cache: it fails before building ViT-B (fast)."""
    with pytest.raises(WeightsUnavailable) as err:
        builder.build_clip(ClipConfig(model_name="ViT-B-16", pretrained="openai"), "openai")
    msg = str(err.value)
    assert "open_clip.create_model('ViT-B-16', pretrained='openai')" in msg
    assert str(offline) in msg and "clip_pretrained='/path/to/" in msg


def test_pretrained_tag_download_error_is_wrapped(monkeypatch):
    def fails(*args, **kwargs):
        raise RuntimeError("Failed to download weights for tag 'openai': connection refused")

    monkeypatch.setattr(open_clip, "create_model", fails)
    with pytest.raises(WeightsUnavailable, match="connection refused") as err:
        builder.build_clip(ClipConfig(model_name="ViT-B-16"), "openai")
    assert "open_clip.create_model('ViT-B-16', pretrained='openai')" in str(err.value)
    with pytest.raises(RuntimeError, match="connection refused"):  # no weights asked for: not wrapped
        builder.build_clip(ClipConfig(model_name="ViT-B-16"), None)


# ----------------------------------------------------------------------------- 7. SAM
def sam_file(path, sam_cfg, seed=5, prefix="image_encoder."):
    """A segment-anything-style checkpoint; prompt encoder, mask decoder and neck must be ignored."""
    torch.manual_seed(seed)
    enc = build_sam_encoder(sam_cfg)
    sd = {prefix + k: v for k, v in enc.state_dict().items()}
    sd.update({prefix + "neck.0.weight": torch.randn(256, sam_cfg.embed_dim, 1, 1),
               prefix + "neck.1.weight": torch.randn(256)})
    if prefix:  # a whole SAM, as sam_vit_b_01ec64.pth
        sd.update({"prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": torch.randn(2, 128),
                   "mask_decoder.iou_token.weight": torch.randn(1, 256)})
    torch.save(sd, path)
    return state(enc)


@pytest.mark.parametrize("how", ["argument", "env", "encoder-only"])
def test_sam_checkpoint(tmp_path, monkeypatch, how):
    path = tmp_path / "sam_tiny.pth"
    want = sam_file(path, get_preset("tiny").sam, prefix="" if how == "encoder-only" else "image_encoder.")
    if how == "env":
        monkeypatch.setenv(SAM_ENV, str(path))
        model = build()
    else:
        model = build(sam_checkpoint=str(path))
    assert_same(state(model.model.sam), want)
    assert n_differ(state(model.model.sam), state(build_sam_encoder(get_preset("tiny").sam))) > 10


def test_sam_missing_file(tmp_path, monkeypatch):
    for kwargs in ({"sam_checkpoint": str(tmp_path / "nope.pth")}, {}):
        if not kwargs:
            monkeypatch.setenv(SAM_ENV, str(tmp_path / "nope.pth"))
        with pytest.raises(WeightsUnavailable) as err:
            build(**kwargs)
        msg = str(err.value)
        assert "sam_vit_b_01ec64.pth" in msg and SAM_ENV in msg and "nope.pth" in msg


@pytest.mark.parametrize("other", ["wider", "deeper"])
def test_sam_checkpoint_of_another_size(tmp_path, other):
    import dataclasses
    tiny_sam = get_preset("tiny").sam
    cfg = (dataclasses.replace(tiny_sam, embed_dim=32) if other == "wider"
           else dataclasses.replace(tiny_sam, depth=10))  # same blocks 0..7 plus two more
    sam_file(tmp_path / "sam_other.pth", cfg)
    with pytest.raises(CheckpointError, match="sam_other.pth") as err:
        build(sam_checkpoint=str(tmp_path / "sam_other.pth"))
    msg = str(err.value)
    if other == "wider":
        assert "patch_embed.proj.weight: file (32, 3, 16, 16) vs model (64, 3, 16, 16)" in msg
    else:
        assert "unexpected" in msg and "blocks.8." in msg and "sam_vit_b_01ec64.pth" in msg


# ----------------------------------------------------------------------------- 8. official format
@pytest.mark.parametrize("keys,match", [
    ({"sem_seg_head.predictor.query_feat.weight": (20, 64)}, "official checkpoint does not fit preset 'tiny'"),
    ({"sem_seg_head.predictor.no_such_module.weight": (3,)}, "has no counterpart in ebseg_lite"),
    ({"clip_visual_extractor.proj": (64, 64)}, "not an official EBSeg state dict"),
])
def test_official_format_is_detected(tmp_path, keys, match):
    torch.save({"model": {k: torch.zeros(s) for k, s in keys.items()}, "iteration": 1}, tmp_path / "EBSeg_base.pth")
    model = build()
    before = state(model)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(model, tmp_path / "EBSeg_base.pth")
    assert_same(state(model), before)


def test_released_checkpoint_offline_says_what_to_download(tmp_path, monkeypatch):
    import ebseg_lite
    from ebseg_lite.io.official import download_released
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("EBSEG_CHECKPOINT_DIR", raising=False)
    with pytest.raises(ebseg_lite.WeightsUnavailable, match="EBSEG_CHECKPOINT_DIR"):
        download_released("vit_b", cache_dir=None)
    (tmp_path / "EBSeg_base.pth").write_bytes(b"x")
    monkeypatch.setenv("EBSEG_CHECKPOINT_DIR", str(tmp_path))
    assert download_released("vit_b") == tmp_path / "EBSeg_base.pth"
