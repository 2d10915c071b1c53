"""``ebseg-lite benchmark --suite``: every speed figure of the README in one run, JSON + a table.

    ebseg-lite benchmark --suite --preset vit_b --repeat 3 --out bench_suite.json

* ``flops``: GFLOP of the two library encoders, of ``encode`` and of each stage, and their count ratio
  (:mod:`ebseg_lite.eval.flops`): the time ratio read against the arithmetic it has to do;
* ``encode``: per-stage seconds of the real ``forward_features`` (:func:`stage_timer`) and, in the same
  process and interleaved run by run, the two unmodified library encoders EBSeg must run (open_clip's
  ``VisionTransformer.forward`` at p * size, segment-anything's ``ImageEncoderViT.forward`` at size): the
  ratio encode / encoders per repeat, its median and spread, wall and CPU time;
* ``classify``: cached vocabulary with the full-resolution labels read, and at mask resolution, each beside
  the dense reference (eq. 14 summed at every pixel, then argmax) in the same process, labels compared;
  a new vocabulary (text tower included, disk cache off);
* ``text``: 150 and 847 names, cold (empty cache) and warm in a new process (disk cache);
* ``text_paths``: 150 names x 14 templates through the prefix-sharing and the padded text path,
  interleaved in one process, and their largest difference;
* peak resident memory after each part (the process's high-water mark so far, not per part);
* ``--with-toy`` / ``--with-tests``: wall time of the toy demo / the test suite as subprocesses.
Random weights: the cost does not depend on the values. Nothing is asserted.
"""
from __future__ import annotations

import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from functools import partial
from typing import Dict, List

import torch

from ebseg_lite.builder import build_model
from ebseg_lite.data.vocabularies import load_class_names
from ebseg_lite.eval.benchmark import stage_timer
from ebseg_lite.eval.flops import flop_counts, gflop_per_second
from ebseg_lite.inference.outputs import label_map, upsample_masks
from ebseg_lite.modeling.balance import semantic_inference
from ebseg_lite.modeling.text import encode_class_names, get_templates


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


@contextlib.contextmanager
def _env(name: str, value: str):
    """``$name`` set to ``value`` inside the block (for this process and the ones it starts), restored
    after: ``EBSEG_CACHE_DIR`` (a folder, or ``off``), ``OMP_NUM_THREADS`` (``make demo``'s 1)."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _spread(xs: List[float]) -> Dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def library_encoders(predictor, size: int):
    """The two frozen encoders run by their libraries' own ``forward`` at EBSeg's input sizes: a copy of
    the model's open_clip ``VisionTransformer`` with its positional embedding resized to p * size
    (what ``force_image_size`` builds), and a fresh segment-anything ``ImageEncoderViT(img_size=size)``
    with its neck."""
    import copy
    from segment_anything.modeling import ImageEncoderViT
    from ebseg_lite.modeling.clip_dense import clip_grid, resize_pos_embed
    cfg = predictor.cfg
    visual = copy.deepcopy(predictor.model.clip.visual).eval()
    patch = visual.conv1.kernel_size[0]
    clip_size = int(round(size * cfg.clip.input_scale / patch)) * patch
    grid = (clip_size // patch, clip_size // patch)
    with torch.no_grad():
        visual.positional_embedding = torch.nn.Parameter(resize_pos_embed(visual.positional_embedding,
                                                                          clip_grid(visual), grid))
    visual.grid_size = grid
    s = cfg.sam
    sam = ImageEncoderViT(img_size=size, patch_size=s.patch_size, embed_dim=s.embed_dim, depth=s.depth,
                          num_heads=s.num_heads, mlp_ratio=4.0, out_chans=256, qkv_bias=True,
                          norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_abs_pos=True, use_rel_pos=True,
                          window_size=s.window_size, global_attn_indexes=tuple(s.global_attn_indexes)).eval()
    return visual, sam, clip_size


@torch.no_grad()
def encode_vs_library(predictor, size: int = 640, repeat: int = 3, encoders=None) -> Dict[str, object]:
    """Interleaved runs: library CLIP, library SAM, our forward_features; one warm-up round.
    ``encoders``: :func:`library_encoders`'s result, built here when not given."""
    model = predictor.model.eval()
    visual, sam, clip_size = encoders or library_encoders(predictor, size)
    img = torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    c_in, s_in = torch.randn(1, 3, clip_size, clip_size), torch.randn(1, 3, size, size)
    rows = []
    for r in range(repeat + 1):
        row = {}
        for name, fn in (("lib_clip", lambda: visual(c_in)), ("lib_sam", lambda: sam(s_in))):
            w, c = time.perf_counter(), time.process_time()
            fn()
            row[name], row[name + "_cpu"] = time.perf_counter() - w, time.process_time() - c
        with stage_timer(model) as st:
            w, c = time.perf_counter(), time.process_time()
            model.forward_features(img, inference=True)
            row["encode"], row["encode_cpu"] = time.perf_counter() - w, time.process_time() - c
        row.update({f"stage_{k}": v for k, v in st.items()})
        row["ratio"] = row["encode"] / (row["lib_clip"] + row["lib_sam"])
        row["ratio_cpu"] = row["encode_cpu"] / (row["lib_clip_cpu"] + row["lib_sam_cpu"])
        if r > 0:
            rows.append(row)
    return {k: _spread([row[k] for row in rows]) for k in rows[0]} | {"runs": rows, "peak_rss_gb": _rss_gb()}


@torch.no_grad()
def classify_suite(predictor, size: int = 640, num_classes: int = 150, repeat: int = 5) -> Dict[str, object]:
    img = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    enc = predictor.encode(img, keep_intermediates=False)
    names = [f"class {i}" for i in range(num_classes)]
    with _env("EBSEG_CACHE_DIR", "off"):                 # a new vocabulary: the text tower runs, no disk hit
        predictor.clear_text_cache()
        w = time.perf_counter()
        predictor.classify(enc, names).labels
        new = time.perf_counter() - w
    full, low, full_ref, low_ref, same = [], [], [], [], True
    for r in range(repeat):
        ws = (0.3 + 0.01 * r, 0.6, 0.1)                    # a slider move: new weights, cached text
        w = time.perf_counter(); lab = predictor.classify(enc, names, w_seen=ws).labels; full.append(time.perf_counter() - w)
        w = time.perf_counter(); pred = predictor.classify(enc, names, w_seen=ws); mlab = pred.mask_labels
        low.append(time.perf_counter() - w)
        w = time.perf_counter(); ref = label_map(pred.map_probs, upsample_masks(pred.masks, enc))[0]
        full_ref.append(time.perf_counter() - w)
        m = pred.masks[:, :mlab.shape[0], :mlab.shape[1]]
        w = time.perf_counter(); mref = semantic_inference(pred.map_probs, m).argmax(0); low_ref.append(time.perf_counter() - w)
        same = same and torch.equal(lab, ref) and torch.equal(mlab, mref)
    return {"classify_new_vocabulary_labels": new, "classify_cached_full_labels": _spread(full),
            "classify_cached_mask_labels": _spread(low), "dense_full_labels_reference": _spread(full_ref),
            "dense_mask_labels_reference": _spread(low_ref), "labels_equal_reference": same,
            "num_classes": num_classes, "peak_rss_gb": _rss_gb()}


@torch.no_grad()
def text_paths(predictor, vocabulary: str = "ade20k_150", repeat: int = 1) -> Dict[str, object]:
    """Seconds of ``encode_class_names`` through the prefix-sharing path and the padded one, interleaved
    run by run in this process (no cache involved), and the largest difference of their embeddings."""
    clip, tok = predictor.model.clip, predictor.model.tokenizer
    names, templates = load_class_names(vocabulary), get_templates(predictor.cfg.templates)
    shared, padded, diff = [], [], 0.0
    for _ in range(repeat):
        w = time.perf_counter(); a = encode_class_names(clip, tok, names, templates); shared.append(time.perf_counter() - w)
        w = time.perf_counter(); b = encode_class_names(clip, tok, names, templates, shared_prefixes=False)
        padded.append(time.perf_counter() - w)
        diff = max(diff, float((a - b).abs().max()))
    return {"names": len(names), "templates": len(templates), "shared_prefix_seconds": _spread(shared),
            "padded_seconds": _spread(padded), "max_abs_diff": diff, "peak_rss_gb": _rss_gb()}


_WARM = """
import os, sys, time, warnings, json, torch
torch.set_num_threads({threads})
warnings.simplefilter("ignore")
from ebseg_lite import build_model
from ebseg_lite.data.vocabularies import load_class_names
p = build_model({preset!r})
names = load_class_names({vocab!r})
t = time.perf_counter(); p.text_embeddings(names); dt = time.perf_counter() - t
print(json.dumps({{"seconds": dt, "hits": p._disk_cache.hits, "misses": p._disk_cache.misses}}))
"""


def text_suite(preset: str, predictor, vocabularies=("ade20k_150", "ade20k_847")) -> Dict[str, object]:
    """Cold: an empty disk cache in this process. Warm: a new process reading that cache."""
    res = {}
    with tempfile.TemporaryDirectory() as tmp, _env("EBSEG_CACHE_DIR", tmp):
        for vocab in vocabularies:
            names = load_class_names(vocab)
            predictor.clear_text_cache()
            w = time.perf_counter(); predictor.text_embeddings(names); cold = time.perf_counter() - w
            code = _WARM.format(threads=torch.get_num_threads(), preset=preset, vocab=vocab)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
            warm = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {"error": out.stderr[-500:]}
            res[vocab] = {"names": len(names), "cold_seconds": cold, "warm_new_process": warm}
    res["peak_rss_gb"] = _rss_gb()
    return res


def _timed(cmd: List[str], shown: str) -> Dict[str, object]:
    """Wall seconds of ``cmd`` as a subprocess; ``shown`` is the command as the README gives it."""
    w = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    return {"command": shown, "seconds": time.perf_counter() - w, "returncode": out.returncode}


def run_suite(preset: str = "vit_b", size: int = 640, repeat: int = 3, out=None, *, text: bool = True,
              with_toy: bool = False, with_tests: bool = False) -> Dict[str, object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predictor = build_model(preset)
    encoders = library_encoders(predictor, size)                  # built once, timed and counted
    res = {"preset": preset, "size": size, "threads": torch.get_num_threads(), "repeat": repeat,
           "encode": encode_vs_library(predictor, size, repeat, encoders),
           "flops": flop_counts(predictor.model, *encoders, size),
           "classify": classify_suite(predictor, size)}
    if text:
        res["text"] = text_suite(preset, predictor)
        res["text_paths"] = text_paths(predictor)
    if with_toy:   # a fresh report folder: the demo reuses finished runs it finds
        with tempfile.TemporaryDirectory() as tmp, _env("OMP_NUM_THREADS", "1"):
            res["toy_demo"] = _timed([sys.executable, "-m", "ebseg_lite.cli", "toyworld", "demo", "--no-progress",
                                      "--out", os.path.join(tmp, "toyworld_report")],
                                     "OMP_NUM_THREADS=1 ebseg-lite toyworld demo --out <a new folder>")
    if with_tests:
        res["test_suite"] = _timed([sys.executable, "-m", "pytest", "-q", "tests"], "python -m pytest -q tests")
    if out:
        with open(out, "w") as f:
            json.dump(res, f, indent=1)
    return res


def table(res: Dict[str, object]) -> str:
    """The suite as printed rows: figure, median, min, max."""
    lines = [f"{'figure':44s} {'median':>9s} {'min':>9s} {'max':>9s}"]

    def add(name, v):
        if isinstance(v, dict) and "median" in v:
            lines.append(f"{name:44s} {v['median']:9.3f} {v['min']:9.3f} {v['max']:9.3f}")
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            lines.append(f"{name:44s} {v:9.3f}")

    for k, v in res["encode"].items():
        add(f"encode.{k}", v)
    for k, v in res.get("flops", {}).items():
        add(f"gflop.{k}", v)
    for k, v in res["classify"].items():
        add(f"classify.{k}", v)
    for k, v in res.get("text_paths", {}).items():
        add(f"text_paths.{k}", v)
    for vocab, v in res.get("text", {}).items():
        if isinstance(v, dict):
            add(f"text.{vocab}.cold_seconds", v["cold_seconds"])
            add(f"text.{vocab}.warm_new_process_seconds", v["warm_new_process"].get("seconds", float("nan")))
    for k in ("toy_demo", "test_suite"):
        if k in res:
            add(f"{k}.seconds", res[k]["seconds"])
    return "\n".join(lines)


def markdown(res: Dict[str, object], command: str) -> str:
    """The README's speed section from a suite result: every figure with the command that measured it."""
    e, c = res["encode"], res["classify"]
    med = lambda v: v["median"] if isinstance(v, dict) else v
    rng = lambda v, f="{:.2f}": f"{f.format(v['median'])} ({f.format(v['min'])}-{f.format(v['max'])})"
    ms = lambda v: rng({k: 1000 * v[k] for k in ("median", "min", "max")}, "{:.0f}")
    lines = [f"Measured by `{command}` ({res['preset']}, random weights, {res['size']}x{res['size']}, "
             f"{res['threads']} threads, median (min-max) of {res['repeat']} interleaved runs; peak resident "
             f"{max(v.get('peak_rss_gb', 0) for v in res.values() if isinstance(v, dict)):.1f} GB):", "",
             "| figure | seconds |", "|---|---|",
             f"| open_clip `VisionTransformer.forward` (unmodified) | {rng(e['lib_clip'])} |",
             f"| segment-anything `ImageEncoderViT.forward` (unmodified) | {rng(e['lib_sam'])} |",
             f"| `encode` (all of `forward_features`) | {rng(e['encode'])} |",
             f"| **ratio** encode / the two library encoders | **{rng(e['ratio'])}** (CPU time: {rng(e['ratio_cpu'])}) |"]
    lines += [f"| stage `{k[len('stage_'):]}` | {rng(v)} |" for k, v in e.items() if k.startswith("stage_")]
    if "flops" in res:
        f, rate = res["flops"], gflop_per_second(res["flops"], e)
        lib_rate = (f["lib_clip"] + f["lib_sam"]) / (med(e["lib_clip"]) + med(e["lib_sam"]))
        lines += ["", "| arithmetic (PyTorch `FlopCounterMode`) | GFLOP | GFLOP/s at the median time |", "|---|---|---|"]
        lines += [f"| {k} | {f[k]:.1f} | {rate[k]:.0f} |" for k in f if k in rate]
        lines += ["", f"FLOP ratio encode / the two library encoders: **{f['ratio']:.2f}**; the time ratio above "
                      f"is {med(e['ratio']) / f['ratio']:.2f}x it: `encode` runs at {rate['encode']:.0f} GFLOP/s, "
                      f"the libraries at {lib_rate:.0f} GFLOP/s."]
    lines += ["", "| classify (cached vocabulary of %d classes) | ms |" % c["num_classes"], "|---|---|",
              f"| full-resolution `labels` | {ms(c['classify_cached_full_labels'])} |",
              f"| mask-resolution `mask_labels` (the explorer's re-classification) | {ms(c['classify_cached_mask_labels'])} |",
              f"| dense reference, full resolution (eq. 14 at every pixel, argmax) | {ms(c['dense_full_labels_reference'])} |",
              f"| dense reference, mask resolution | {ms(c['dense_mask_labels_reference'])} |",
              f"| new vocabulary (text tower, disk cache off), full labels | {1000 * med(c['classify_new_vocabulary_labels']):.0f} |",
              "", f"Labels equal the dense reference: {c['labels_equal_reference']}."]
    if "text" in res:
        lines += ["", "| text embeddings (all templates) | cold, s | warm, new process, s |", "|---|---|---|"]
        for vocab, v in res["text"].items():
            if isinstance(v, dict):
                warm = v["warm_new_process"].get("seconds")
                lines.append(f"| {vocab} ({v['names']} names) | {v['cold_seconds']:.1f} | "
                             f"{'failed' if warm is None else f'{warm:.2f}'} |")
    if "text_paths" in res:
        t = res["text_paths"]
        lines += ["", f"Text path, {t['names']} names x {t['templates']} templates: prefix-sharing "
                      f"{rng(t['shared_prefix_seconds'], '{:.1f}')} s, padded {rng(t['padded_seconds'], '{:.1f}')} s, "
                      f"largest difference {t['max_abs_diff']:.1e}."]
    for k, what in (("toy_demo", "the toy demo"), ("test_suite", "the test suite")):
        if k in res:
            lines.append(f"\n`{res[k]['command']}` ({what}): {res[k]['seconds']:.0f} s.")
    return "\n".join(lines) + "\n"
