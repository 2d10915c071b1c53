"""PnP-OVSS on the toy world: the shipped toy BLIP with the values its label-free search found, the
toy CLIP as the search's judge and as the ``clip`` class-list source (issue 17).

    seg = toy_pnp_ovss()                                   # data_samples/toyworld/toy_blip.safetensors
    out = seg.segment(scene.image, ["red striped", "grass"])
"""
from __future__ import annotations

import json
import time

from ebseg_lite.baselines.pnp_ovss.pipeline import PnPConfig, PnPOVSS
from ebseg_lite.toyworld.toy_blip import (EVAL_SEED, TOY_DROP_PATCHES, load_toy_blip, pretrain_blip, read_summary,
                                          save_toy_blip, toy_tokenizer)
from ebseg_lite.toyworld.world import ToyWorld


def toy_pnp_ovss(path=None, **overrides) -> PnPOVSS:
    """PnP-OVSS over the shipped toy BLIP with the layer / head / threshold its label-free search
    found (stored in the file), official rounds, the toy's patch count, no background class."""
    from ebseg_lite.toyworld.presets import toy_weights_dir
    path = path or toy_weights_dir() / "toy_blip.safetensors"
    model, tok = load_toy_blip(path)
    best = read_summary(path).get("search", {}).get("best", {})
    cfg = dict(layer=best.get("layer", model.config.text_config.num_hidden_layers - 1), head=best.get("head", 0),
               threshold=best.get("threshold", 0.15), drop_patches=TOY_DROP_PATCHES, background="never")
    return PnPOVSS(model, tok, PnPConfig(**{**cfg, **overrides}))


def toy_clip_scorer():
    """The shipped toy CLIP as a :class:`ClipScorer` ("toy" templates, its 64 px input)."""
    from ebseg_lite.baselines.pnp_ovss.classes import ClipScorer
    from ebseg_lite.toyworld.presets import TOY_TEMPLATES, toy_weights_dir
    from ebseg_lite.toyworld.pretrain_clip import load_toy_clip
    clip, ctok = load_toy_clip(toy_weights_dir() / "toy_clip.safetensors")
    return ClipScorer(clip, ctok, TOY_TEMPLATES, clip.visual.image_size[0])


def search_toy(seg: PnPOVSS, world: ToyWorld, *, images: int = 24, n_iter: int = 34, seed: int = 0) -> dict:
    """The label-free search on *training-split* scenes (seen classes only, their image-level lists:
    the official search also knows each image's classes), rewarded by the shipped toy CLIP."""
    from ebseg_lite.baselines.pnp_ovss.search import search_pnp
    scorer = toy_clip_scorer()
    scenes = [world.scene(EVAL_SEED + 50_000 + i, split="train") for i in range(images)]
    names = [[world.class_names[c] for c in s.classes] for s in scenes]
    trials = search_pnp(seg, [s.image for s in scenes], names, scorer, n_iter=n_iter, seed=seed)
    return {"best": trials[0][0], "best_reward": trials[0][1], "max_reward": sum(len(n) for n in names),
            "images": images, "n_iter": n_iter, "seed": seed, "trials": [[p, r] for p, r in trials]}



def make_toy_blip(out, *, search: bool = True, **pretrain) -> dict:
    """``ebseg-lite toyworld pretrain-blip``: pretrain (:func:`pretrain_blip`), search, write ``out``."""
    model, vocab, summary = pretrain_blip(**pretrain)
    if search:
        t0 = time.time()
        seg = PnPOVSS(model, toy_tokenizer(vocab), PnPConfig(layer=0, head=0, drop_patches=TOY_DROP_PATCHES,
                                                             background="never"))
        summary["search"] = search_toy(seg, ToyWorld(), seed=summary["seed"])
        summary["search"]["seconds"] = round(time.time() - t0, 1)
    if out:
        save_toy_blip(model, vocab, out, summary)
    return summary


#: compare-table rows, one per source of the image-level class lists (see baselines.pnp_ovss.classes)
PNP_SOURCES = ("gt", "clip")
PNP_NOTE = ("pnp-ovss/<source>: PnP-OVSS segments only the classes each image is said to hold: gt = the ground "
            "truth's classes (image-level labels, a head start the other rows do not get), clip = toy-CLIP "
            "zero-shot lists (probability >= 0.1). Toy BLIP, layer / head / threshold from its label-free search.")


def pnp_rows(dataset, seen, *, sources=PNP_SOURCES, clip_threshold: float = 0.1, progress: bool = False) -> dict:
    """Rows ``pnp-ovss/<source>`` for ``toyworld compare``: mIoU (all / seen / new), seconds per image,
    the class source and how good its lists were (precision / recall of the classes, percent).

    PnP-OVSS segments only the classes an image is said to contain, so it cannot run through
    ``predict(image, all_names)`` like the other methods; "gt" is told the ground truth's classes.
    """
    from ebseg_lite.baselines.pnp_ovss.evaluate import evaluate_pnp
    seg, rows = toy_pnp_ovss(), {}
    for src in sources:
        r = evaluate_pnp(seg, dataset, source=src, scorer=toy_clip_scorer() if src == "clip" else None,
                         clip_threshold=clip_threshold, seen=seen, progress=progress)
        rows[f"pnp-ovss/{src}"] = {k: r[k] for k in ("mIoU", "mIoU_seen", "mIoU_new", "class_source",
                                                     "class_precision", "class_recall", "peak_rss_mib")}
        rows[f"pnp-ovss/{src}"]["sec_per_image"] = r["seconds_per_image"]
    return rows


def search_existing(path) -> dict:
    """Run the label-free search on an already pretrained toy BLIP file and store it there (the same
    as :func:`make_toy_blip`'s search, for a file pretrained with ``search=False``)."""
    from safetensors.torch import load_file
    model, tok = load_toy_blip(path)
    summary = read_summary(path)
    t0 = time.time()
    seg = PnPOVSS(model, tok, PnPConfig(layer=0, head=0, drop_patches=TOY_DROP_PATCHES, background="never"))
    summary["search"] = search_toy(seg, ToyWorld(), seed=summary.get("seed", 0))
    summary["search"]["seconds"] = round(time.time() - t0, 1)
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        vocab = json.loads(f.metadata()["vocab"])
    model.load_state_dict(load_file(str(path)), strict=True)      # the file's exact tensors
    save_toy_blip(model, vocab, path, summary)
    return summary
