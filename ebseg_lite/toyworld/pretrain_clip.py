"""Pretrain the toy CLIP: open_clip's own ``CLIP`` class, 12 narrow blocks, trained contrastively with
open_clip's ``ClipLoss`` on toy scenes and their captions (the toy "web").

Every class, seen or new, appears in this pretraining, as in the real setting where CLIP's web data
covers ADE20K's classes that COCO-Stuff lacks. Scenes are drawn at 128 px and shown to CLIP at 64 px
(2x2 averages, which is exactly what EBSeg's bilinear x0.5 resize does), because the toy EBSeg feeds
CLIP the image scaled by p = 0.5.

The toy web has two habits of the real one that make a small batch informative:
* close-ups: 40% of its photos show one thing, 30% two, 20% three, 10% four;
* near-duplicates: every photo comes with a *twin*, the same layout with one thing's pattern (3 in 4)
  or colour changed, and the caption changed accordingly. Both go into the same batch, so
  ``ClipLoss`` can only tell them apart by the pattern or colour words. Without twins, colour, stuff
  and the number of things already single out a caption in a batch and the loss falls to 0.3 while
  patterns stay near chance (measured: 36% pattern right after 300 steps, see data_samples/toyworld).

    ebseg-lite toyworld pretrain-clip --out data_samples/toyworld/toy_clip.safetensors --steps 600 --seed 0
"""
from __future__ import annotations

import copy
import json
import math
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ebseg_lite.config import ClipConfig
from ebseg_lite.io.files import atomic_write
from ebseg_lite.modeling.text import encode_class_names
from ebseg_lite.toyworld.presets import TOY_CLIP_CFG
from ebseg_lite.toyworld.prompts import TOY_TEMPLATES
from ebseg_lite.toyworld.tokenizer import ToyTokenizer, tokenizer_metadata
from ebseg_lite.toyworld.world import ToyWorld

POOL_SEED = 10_000_000      # scene seeds of the pretraining pool: POOL_SEED * (seed + 1) + i
EVAL_SEED = 900_000_000     # held-out scenes for zero-shot accuracy
CLOSE_UP = (0.4, 0.3, 0.2, 0.1)   # share of web photos with 1, 2, 3, 4 things
TWIN_PATTERN = 0.75               # a twin changes a pattern (else a colour)


def build_toy_clip(cfg: Optional[dict] = None, *, patch_dropout: float = 0.0) -> torch.nn.Module:
    """open_clip's ``CLIP`` at the toy size. ``patch_dropout`` > 0 (pretraining only) drops that share
    of the patch tokens of every training image (open_clip's ``PatchDropout``, FLIP's recipe); it has
    no weights and is inactive in eval mode, so the saved file loads into the plain configuration."""
    cfg = copy.deepcopy(cfg or TOY_CLIP_CFG)
    if patch_dropout:
        cfg["vision_cfg"]["patch_dropout"] = float(patch_dropout)
    return open_clip.CLIP(**cfg)


def half_size(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, H/2, W/2, 3) uint8 by 2x2 averaging."""
    n, h, w, c = images.shape
    x = images.reshape(n, h // 2, 2, w // 2, 2, c).astype(np.float32).mean(axis=(2, 4))
    return np.round(x).astype(np.uint8)


def to_clip_input(images: np.ndarray) -> torch.Tensor:
    """(N, h, w, 3) uint8 -> (N, 3, h, w) float, CLIP-normalised (converted per batch: uint8 storage)."""
    cc = ClipConfig()
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    mean, std = torch.tensor(cc.mean).view(1, 3, 1, 1), torch.tensor(cc.std).view(1, 3, 1, 1)
    return (x - mean) / std


def twin_things(world: ToyWorld, things: List[int], rng: np.random.Generator) -> List[int]:
    """``things`` with one of them given another pattern (probability ``TWIN_PATTERN``) or colour."""
    out = list(things)
    k = int(rng.integers(len(out)))
    colour, pattern = world.thing_attributes(out[k])
    if rng.random() < TWIN_PATTERN:
        pattern = [p for p in world.patterns if p != pattern][int(rng.integers(len(world.patterns) - 1))]
    else:
        colour = [c for c in world.colours if c != colour][int(rng.integers(len(world.colours) - 1))]
    out[k] = world.class_names.index(f"{colour} {pattern}")
    return out


def make_pool(world: ToyWorld, n_pairs: int, *, seed: int, size: int = 128,
              progress: bool = True) -> Tuple[np.ndarray, List[np.ndarray]]:
    """``2 n_pairs`` web photos (all classes) at ``size``, halved for CLIP: photo 2i and its twin 2i + 1
    share one layout. Returns (images (2 n_pairs, size/2, size/2, 3) uint8, class ids per photo).

    Photo pair i: scene ``POOL_SEED * (seed + 1) + i`` with 1-4 things (``CLOSE_UP``) picks the classes
    that stay visible; both photos are then drawn from the layout seed ``that + 7 * n_pairs`` with those
    classes fixed (the twin with one changed), so they differ only in that thing's look (when the
    redraw hides a thing, 4% of pairs, the twin keeps one fewer and is a looser near-duplicate)."""
    imgs, labels = [], []
    for i in tqdm(range(n_pairs), desc="toy web", disable=not progress, leave=False):
        s_id = POOL_SEED * (seed + 1) + i
        n = int(np.random.default_rng([s_id, 3]).choice(len(CLOSE_UP), p=CLOSE_UP)) + 1
        pick = world.scene(s_id, size=size, split="test", num_objects=n)
        rng = np.random.default_rng([s_id, 2])
        ids = [int(c) for c in pick.instance_labels]
        things, stuff = [c for c in ids if c < world.num_things], [c for c in ids if c >= world.num_things]
        layout = s_id + 7 * n_pairs
        first = world.scene(layout, size=size, things=things, stuff=stuff, num_objects=len(things))
        twin = twin_things(world, [int(c) for c in first.instance_labels if c < world.num_things], rng)
        stuff = [int(c) for c in first.instance_labels if c >= world.num_things]
        second = world.scene(layout, size=size, things=twin, stuff=stuff, num_objects=len(twin))
        for s in (first, second):
            imgs.append(s.image)
            labels.append(s.instance_labels)
    return half_size(np.stack(imgs)), labels


@torch.no_grad()
def zero_shot_accuracy(model, tokenizer, world: ToyWorld, *, per_class: int = 10, seed: int = 0,
                       size: int = 128) -> Dict[str, float]:
    """Zero-shot classification of held-out single-object scenes with the "toy" prompts.

    Things: one object on one random stuff, classified among all thing names (chance 1/30); also the
    share of predictions with the right colour / the right pattern. Stuff: one random object on one
    stuff, classified among all stuff names (chance 1/6). Accuracies in [0, 1], overall, seen, new.
    """
    model.eval()
    rng = np.random.default_rng(EVAL_SEED + seed)
    res = {}
    for kind, ids in (("thing", world.thing_ids), ("stuff", world.stuff_ids)):
        text = encode_class_names(model, tokenizer, [world.class_names[i] for i in ids], TOY_TEMPLATES)
        imgs, truth = [], []
        for k, cid in enumerate(ids):
            for j in range(per_class):
                other = int(rng.choice(world.stuff_ids if kind == "thing" else world.thing_ids))
                things, stuff = ([cid], [other]) if kind == "thing" else ([other], [cid])
                s = world.scene(EVAL_SEED + seed * 100_000 + cid * 1000 + j, size=size, things=things, stuff=stuff)
                imgs.append(s.image)
                truth.append(k)
        img = F.normalize(model.encode_image(to_clip_input(half_size(np.stack(imgs)))), dim=-1)
        pred = (img @ text.T).argmax(-1).numpy()     # (n,) index into ids
        truth = np.asarray(truth)
        seen = np.asarray([world.seen[ids[t]] for t in truth])
        ok = pred == truth
        res[f"{kind}_acc"] = float(ok.mean())
        res[f"{kind}_acc_seen"] = float(ok[seen].mean())
        res[f"{kind}_acc_new"] = float(ok[~seen].mean())
        res[f"{kind}_chance"] = 1.0 / len(ids)
        if kind == "thing":
            attr = [world.thing_attributes(ids[i]) for i in range(len(ids))]
            res["colour_acc"] = float(np.mean([attr[p][0] == attr[t][0] for p, t in zip(pred, truth)]))
            res["pattern_acc"] = float(np.mean([attr[p][1] == attr[t][1] for p, t in zip(pred, truth)]))
    return res


def pretrain_clip(out: Optional[str], *, steps: int = 600, batch_size: int = 128, lr: float = 2e-3,
                  seed: int = 0, pool_pairs: int = 3000, warmup: int = 100, eval_per_class: int = 10,
                  max_minutes: Optional[float] = None, init: Optional[str] = None, patch_dropout: float = 0.0,
                  progress: bool = True) -> Dict[str, float]:
    """Contrastive pretraining of the toy CLIP on twin batches; writes safetensors (tokenizer in the metadata).

    Each step draws ``batch_size / 2`` photo pairs (a photo and its twin) from the pool, flips each
    photo horizontally at random, and captions it afresh (random template and order).
    ``max_minutes`` bounds the training time: the cosine schedule then follows whichever of step
    count and elapsed time is further along (such a run does not reproduce step for step).
    ``init`` continues from a toy CLIP file (a second stage with a fresh schedule).
    ``patch_dropout``: share of patch tokens dropped per training image (FLIP). Measured on the
    12-block toy CLIP after 600 steps: 0.5 lowers zero-shot things from 82% to 69% but makes the patch
    tokens more local, so the mask-attention head classifies a ground-truth region better
    (:func:`ebseg_lite.toyworld.probe.oracle_probe`, head over blocks 7-12: 22% -> 41%).
    Returns a summary: losses, seconds (wall and CPU), zero-shot accuracies (:func:`zero_shot_accuracy`).
    """
    if batch_size % 2:
        raise ValueError(f"batch_size must be even (photo + twin pairs), got {batch_size}")
    t0, c0 = time.time(), time.process_time()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    world = ToyWorld()
    model = build_toy_clip(patch_dropout=patch_dropout)
    if init:
        from safetensors.torch import load_file
        model.load_state_dict(load_file(str(init)), strict=True)
    text_cfg = TOY_CLIP_CFG["text_cfg"]
    tok = ToyTokenizer.from_world(world, context_length=text_cfg["context_length"], vocab_size=text_cfg["vocab_size"])
    images, labels = make_pool(world, pool_pairs, seed=seed, progress=progress)
    t_data = time.time() - t0
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.98), eps=1e-6)
    budget = max_minutes * 60 if max_minutes else None
    t_start = time.time()

    def progress_frac(step: int) -> float:
        frac = step / steps
        if budget:
            frac = max(frac, (time.time() - t_start) / budget)
        return min(frac, 1.0)

    loss_fn = open_clip.ClipLoss()
    model.train()
    losses, done = [], 0
    bar = tqdm(range(steps), desc="pretrain toy CLIP", disable=not progress)
    for step in bar:
        if progress_frac(step) >= 1.0:
            break
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * progress_frac(step)))
        first = 2 * rng.integers(len(images) // 2, size=batch_size // 2)
        idx = np.stack([first, first + 1], 1).reshape(-1)            # (batch,) photo, twin, photo, twin ...
        batch = images[idx]
        flip = rng.random(batch_size) < 0.5
        batch[flip] = batch[flip, :, ::-1]
        text = tok([world.caption_for(labels[i], rng) for i in idx])
        img_f, txt_f, scale = model(to_clip_input(batch), text)
        loss = loss_fn(img_f, txt_f, scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done = step + 1
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(float(loss.detach()))
        if not math.isfinite(losses[-1]):
            raise FloatingPointError(f"toy CLIP loss became {losses[-1]} at step {step}")
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    summary = {"final_loss": float(np.mean(losses[-20:])), "first_loss": losses[0], "steps": done,
               "max_steps": steps, "max_minutes": max_minutes, "batch_size": batch_size, "lr": lr,
               "warmup": warmup, "seed": seed, "pool_pairs": pool_pairs, "init": str(init) if init else None,
               "patch_dropout": patch_dropout,
               "data_seconds": round(t_data, 1), "train_seconds": round(time.time() - t0, 1)}
    summary.update(zero_shot_accuracy(model, tok, world, per_class=eval_per_class, seed=seed))
    summary["total_seconds"] = round(time.time() - t0, 1)
    summary["cpu_seconds"] = round(time.process_time() - c0, 1)
    if out:
        save_toy_clip(model, tok, out, summary)
    return summary


def save_toy_clip(model, tok: ToyTokenizer, path, summary: Optional[dict] = None):
    from safetensors.torch import save_file
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": "ebseg_lite.toy_clip", "open_clip_cfg": json.dumps(TOY_CLIP_CFG),
            "summary": json.dumps(summary or {})}
    meta.update(tokenizer_metadata(tok))
    return atomic_write(path, lambda tmp: save_file(sd, tmp, metadata=meta))


def load_toy_clip(path):
    """(model, tokenizer) from a file written by :func:`pretrain_clip`."""
    from safetensors.torch import load_file
    from ebseg_lite.toyworld.tokenizer import tokenizer_from_checkpoint
    model = build_toy_clip()
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval(), tokenizer_from_checkpoint(path)


def format_summary(summary: dict, keys: Sequence[str] = ("thing_acc", "thing_acc_seen", "thing_acc_new", "colour_acc",
                                                          "pattern_acc", "stuff_acc", "stuff_acc_seen", "stuff_acc_new")) -> str:
    return ", ".join(f"{k} {100 * summary[k]:.1f}%" for k in keys if k in summary)
