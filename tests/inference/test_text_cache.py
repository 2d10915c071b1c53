"""The persistent text cache: a miss computes and writes, a new process (a new predictor) reads it
without running the tower, corrupt or foreign entries are recomputed, other weights or templates
miss, two processes filling it at once lose nothing; and length-sorted batching is exact."""
import multiprocessing as mp
import os
import shutil

import torch
import torch.nn.functional as F

from fixture_data import quiet_build
from ebseg_lite.inference import text_cache
from ebseg_lite.inference.text_cache import DiskTextCache
from ebseg_lite.modeling import text as text_mod

NAMES = ["cat", "sofa, couch", "traffic light", "a very long name of a rare thing"]


def _predictor(tmp_path, monkeypatch):
    monkeypatch.setenv("EBSEG_CACHE_DIR", str(tmp_path))
    return quiet_build("tiny", seed=0)


def _count_tower_runs(monkeypatch):
    calls = []
    for name in ("encode_text_trimmed", "encode_text_shared"):   # the padded and the prefix-sharing path
        real = getattr(text_mod, name)
        monkeypatch.setattr(text_mod, name, lambda m, t, *a, real=real: calls.append(len(t)) or real(m, t, *a))
    return calls


def test_miss_then_hit_in_a_new_predictor(tmp_path, monkeypatch):
    calls = _count_tower_runs(monkeypatch)
    first = _predictor(tmp_path, monkeypatch).text_embeddings(NAMES)
    assert calls and len(list((tmp_path / "text").glob("*.safetensors"))) == 1
    calls.clear()
    again = _predictor(tmp_path, monkeypatch)            # a fresh predictor: no in-memory cache
    second = again.text_embeddings(NAMES)
    assert calls == [] and again._disk_cache.hits == 1
    assert torch.equal(first, second) and second.shape == (4, first.shape[1])


def test_other_names_templates_or_weights_miss(tmp_path, monkeypatch):
    p = _predictor(tmp_path, monkeypatch)
    base = p.text_embeddings(NAMES)
    p.text_embeddings(NAMES[:3])
    with torch.no_grad():
        p.model.clip.text_projection.add_(torch.randn_like(p.model.clip.text_projection) * 0.1)  # other weights
    p.model.weights_version += 1
    other = p.text_embeddings(NAMES)
    assert len(list((tmp_path / "text").glob("*.safetensors"))) == 3
    assert not torch.allclose(base, other)


def test_corrupt_and_foreign_entries_are_recomputed(tmp_path, monkeypatch):
    p = _predictor(tmp_path, monkeypatch)
    good = p.text_embeddings(NAMES)
    p.text_embeddings(NAMES[:2])
    files = sorted((tmp_path / "text").glob("*.safetensors"), key=lambda f: f.stat().st_size)
    small, big = files                                   # the 2-name entry, the 4-name entry
    shutil.copy(small, tmp_path / "foreign")
    big.write_bytes(b"\x00garbage")                      # corrupt
    q = _predictor(tmp_path, monkeypatch)
    assert torch.allclose(q.text_embeddings(NAMES), good) and q._disk_cache.rejected == 1
    shutil.copy(tmp_path / "foreign", big)               # another vocabulary's file under this key
    r = _predictor(tmp_path, monkeypatch)
    assert torch.allclose(r.text_embeddings(NAMES), good) and r._disk_cache.rejected == 1
    s = _predictor(tmp_path, monkeypatch)                # rewritten: a clean hit now
    s.text_embeddings(NAMES)
    assert s._disk_cache.hits == 1 and s._disk_cache.rejected == 0


def _fill(root, names, out):
    os.environ["EBSEG_CACHE_DIR"] = root
    torch.set_num_threads(1)
    p = quiet_build("tiny", seed=0)
    out.put((names[0], p.text_embeddings(names).tolist()))


def test_two_processes_filling_at_once_lose_nothing(tmp_path):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    jobs = [ctx.Process(target=_fill, args=(str(tmp_path), v, q)) for v in (NAMES, NAMES[::-1], NAMES)]
    for j in jobs:
        j.start()
    got = [q.get(timeout=300) for _ in jobs]
    for j in jobs:
        j.join(timeout=60)
    assert len(list((tmp_path / "text").glob("*.safetensors"))) == 2     # two vocabularies, both kept
    assert not list((tmp_path / "text").glob(".*.tmp"))
    cache = DiskTextCache(tmp_path)
    p = quiet_build("tiny", seed=0)
    digest = text_cache.text_tower_digest(p.model.clip)
    tpl = text_mod.get_templates(p.cfg.templates)
    for first, emb in got:
        names = NAMES if first == NAMES[0] else NAMES[::-1]
        hit = cache.get(weights=digest, tokenizer=p.model.tokenizer, names=names, templates=tpl,
                        make=lambda: (_ for _ in ()).throw(AssertionError("should be a hit")))
        assert torch.allclose(hit, torch.tensor(emb))


def test_cache_off_and_default_location(monkeypatch, tmp_path):
    monkeypatch.setenv("EBSEG_CACHE_DIR", "off")
    assert text_cache.cache_dir() is None
    monkeypatch.delenv("EBSEG_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert text_cache.cache_dir() == tmp_path / "ebseg_lite"


def test_length_sorted_batches_equal_one_prompt_at_a_time():
    p = quiet_build("tiny", seed=0)
    clip, tok = p.model.clip, p.model.tokenizer
    tpl = text_mod.get_templates(p.cfg.templates)
    fast = text_mod.encode_class_names(clip, tok, NAMES, tpl, batch_size=3, shared_prefixes=False)  # cut across lengths
    shared = text_mod.encode_class_names(clip, tok, NAMES, tpl)
    with torch.no_grad():
        rows = [F.normalize(torch.stack([clip.encode_text(tok([t.format(c)]), normalize=True)[0] for t in tpl]).mean(0), dim=-1)
                for c in NAMES]
    assert torch.allclose(fast, torch.stack(rows), atol=1e-5)
    assert torch.allclose(shared, torch.stack(rows), atol=1e-5)
