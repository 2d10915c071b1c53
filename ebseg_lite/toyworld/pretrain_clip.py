"""Pretrain the toy CLIP: open_clip's own ``CLIP`` class at a tiny size, trained contrastively with
open_clip's ``ClipLoss`` on toy scenes and their captions (the toy "web").

Every class, seen or new, appears in this pretraining, as in the real setting where CLIP's web data
covers ADE20K's classes that COCO-Stuff lacks. Scenes are drawn at 128 px and shown to CLIP at 64 px
(2x2 averages, which is exactly what EBSeg's bilinear x0.5 resize does), because the toy EBSeg feeds
CLIP the image scaled by p = 0.5.

    ebseg-lite toyworld pretrain-clip --out data_samples/toyworld/toy_clip.safetensors --steps 1500 --seed 0
"""
from __future__ import annotations

import copy
import json
import math
import time
from typing import Dict, Optional, Sequence

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ebseg_lite.config import ClipConfig
from ebseg_lite.toyworld.presets import TOY_CLIP_CFG
from ebseg_lite.toyworld.prompts import TOY_TEMPLATES
from ebseg_lite.modeling.text import encode_class_names
from ebseg_lite.io.files import atomic_write

from ebseg_lite.toyworld.tokenizer import ToyTokenizer, tokenizer_metadata
from ebseg_lite.toyworld.world import ToyWorld

POOL_SEED = 10_000_000      # scene seeds of the pretraining pool: POOL_SEED * (seed + 1) + i
EVAL_SEED = 900_000_000     # held-out scenes for zero-shot accuracy


def build_toy_clip(cfg: Optional[dict] = None) -> torch.nn.Module:
    cfg = copy.deepcopy(cfg or TOY_CLIP_CFG)
    return open_clip.CLIP(**cfg)


def half_size(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, H/2, W/2, 3) uint8 by 2x2 averaging."""
    n, h, w, c = images.shape
    x = images.reshape(n, h // 2, 2, w // 2, 2, c).astype(np.float32).mean(axis=(2, 4))
    return np.round(x).astype(np.uint8)


def to_clip_input(images: np.ndarray) -> torch.Tensor:
    """(N, h, w, 3) uint8 -> (N, 3, h, w) float, CLIP-normalised (converted per batch: uint8 storage)."""
    cc = ClipConfig()
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    mean, std = torch.tensor(cc.mean).view(1, 3, 1, 1), torch.tensor(cc.std).view(1, 3, 1, 1)
    return (x - mean) / std


def make_pool(world: ToyWorld, n: int, *, seed: int, size: int = 128, progress: bool = True):
    """``n`` test-split scenes (all classes) at ``size``, halved for CLIP. Returns (images, class ids)."""
    imgs, labels = [], []
    for i in tqdm(range(n), desc="toy web", disable=not progress, leave=False):
        s = world.scene(POOL_SEED * (seed + 1) + i, size=size, split="test")
        imgs.append(s.image)
        labels.append(s.instance_labels)
    return half_size(np.stack(imgs)), labels


@torch.no_grad()
def zero_shot_accuracy(model, tokenizer, world: ToyWorld, *, per_class: int = 10, seed: int = 0,
                       size: int = 128) -> Dict[str, float]:
    """Zero-shot classification of held-out single-object scenes with the "toy" prompts.

    Things: one object on one random stuff, classified among all thing names (chance 1/30).
    Stuff: one random small object on one stuff, classified among all stuff names (chance 1/6).
    Returns accuracies overall and for seen / new classes, in [0, 1].
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
        x = to_clip_input(half_size(np.stack(imgs)))
        img = F.normalize(model.encode_image(x), dim=-1)
        pred = (img @ text.T).argmax(-1).numpy()
        truth = np.asarray(truth)
        seen = np.asarray([world.seen[ids[t]] for t in truth])
        ok = pred == truth
        res[f"{kind}_acc"] = float(ok.mean())
        res[f"{kind}_acc_seen"] = float(ok[seen].mean())
        res[f"{kind}_acc_new"] = float(ok[~seen].mean())
        res[f"{kind}_chance"] = 1.0 / len(ids)
    return res


def pretrain_clip(out: Optional[str], *, steps: int = 1500, batch_size: int = 256, lr: float = 2e-3,
                  seed: int = 0, pool_size: int = 12000, warmup: int = 100, eval_per_class: int = 10,
                  max_minutes: Optional[float] = None, init: Optional[str] = None, progress: bool = True) -> Dict[str, float]:
    """Contrastive pretraining of the toy CLIP; writes safetensors (tokenizer in the metadata).

    ``max_minutes`` bounds the training time: the cosine schedule then follows whichever of step
    count and elapsed time is further along, and training stops when either runs out (the summary
    records the steps actually done; rerun with ``--steps`` set to that count for an exact replay).
    ``init`` continues from a toy CLIP file (a second stage with a fresh schedule).
    Returns a summary: final loss, wall time, zero-shot accuracies (see :func:`zero_shot_accuracy`).
    """
    t0 = time.time()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    world = ToyWorld()
    model = build_toy_clip()
    if init:
        from safetensors.torch import load_file
        model.load_state_dict(load_file(str(init)), strict=True)
    tok = ToyTokenizer.from_world(world, context_length=TOY_CLIP_CFG["text_cfg"]["context_length"],
                                  vocab_size=TOY_CLIP_CFG["text_cfg"]["vocab_size"])
    images, labels = make_pool(world, pool_size, seed=seed, progress=progress)
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

    def lr_at(step: int) -> float:
        return lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * progress_frac(step)))
    loss_fn = open_clip.ClipLoss()
    model.train()
    losses = []
    bar = tqdm(range(steps), desc="pretrain toy CLIP", disable=not progress)
    done = 0
    for step in bar:
        if progress_frac(step) >= 1.0:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        idx = rng.integers(len(images), size=batch_size)
        batch = images[idx]
        flip = rng.random(batch_size) < 0.5
        batch[flip] = batch[flip, :, ::-1]
        x = to_clip_input(batch)
        text = tok([world.caption_for(labels[i], rng) for i in idx])
        img_f, txt_f, scale = model(x, text)
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
    t_train = time.time() - t0
    summary = {"final_loss": float(np.mean(losses[-20:])), "first_loss": losses[0], "steps": done,
               "max_steps": steps, "max_minutes": max_minutes,
               "batch_size": batch_size, "lr": lr, "warmup": warmup, "seed": seed, "pool_size": pool_size,
               "init": str(init) if init else None,
               "data_seconds": round(t_data, 1), "train_seconds": round(t_train, 1)}
    summary.update(zero_shot_accuracy(model, tok, world, per_class=eval_per_class, seed=seed))
    summary["total_seconds"] = round(time.time() - t0, 1)
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


def format_summary(summary: dict, keys: Sequence[str] = ("thing_acc", "thing_acc_seen", "thing_acc_new",
                                                          "stuff_acc", "stuff_acc_seen", "stuff_acc_new")) -> str:
    return ", ".join(f"{k} {100 * summary[k]:.1f}%" for k in keys if k in summary)
