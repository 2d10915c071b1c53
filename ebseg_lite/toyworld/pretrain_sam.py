"""Pretrain the full toy SAM: segment-anything's own ``Sam`` at a tiny size (``ImageEncoderViT`` +
``PromptEncoder`` + ``MaskDecoder`` with a ``TwoWayTransformer``), trained class-agnostically on toy
instance masks (stuff regions and things) as SAM is trained (Kirillov et al. 2023, sec. 3 and app. A):
single point prompts (and, for a quarter of the images, jittered boxes), three candidate masks per
prompt of which only the best is back-propagated (BCE + dice), and the IoU head regressed (MSE) on the
IoU each candidate really has, so ``SamAutomaticMaskGenerator`` can rank and filter its proposals.

Like the real SAM (trained on SA-1B, which knows no class names), it sees every kind of region of
the world. EBSeg uses only its image encoder, frozen, as a multi-scale backbone
(:func:`ebseg_lite.io.checkpoints.load_sam_checkpoint` keeps the ``image_encoder.*`` weights); the
whole model is saved so that segment-anything's automatic mask generator runs on toy scenes.

    ebseg-lite toyworld pretrain-sam --out data_samples/toyworld/toy_sam.safetensors --steps 1500 --seed 0
"""
from __future__ import annotations

import math
import time
from functools import partial
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from torch import nn
from tqdm.auto import tqdm

from ebseg_lite.config import SamConfig
from ebseg_lite.io.files import atomic_write
from ebseg_lite.toyworld.presets import TOY_SAM_GENERATOR, toy_sam_config
from ebseg_lite.toyworld.world import ToyWorld

PROMPT_DIM = 64          # width of the prompt encoder / mask decoder (the neck's output)
TRAIN_SEED = 20_000_000  # scene seeds: TRAIN_SEED * (seed + 1) + step * batch + b
EVAL_SEED = 800_000_000  # held-out scenes (point-prompt mIoU and proposal recall)


def build_toy_sam(cfg: Optional[SamConfig] = None) -> Sam:
    """A tiny segment-anything ``Sam`` whose image encoder matches ``build_sam_encoder(cfg)``."""
    cfg = cfg or toy_sam_config()
    grid = cfg.pretrain_img_size // cfg.patch_size
    enc = ImageEncoderViT(
        img_size=cfg.pretrain_img_size, patch_size=cfg.patch_size, embed_dim=cfg.embed_dim, depth=cfg.depth,
        num_heads=cfg.num_heads, mlp_ratio=4.0, out_chans=PROMPT_DIM, qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6), act_layer=nn.GELU, use_abs_pos=True, use_rel_pos=True,
        window_size=cfg.window_size, global_attn_indexes=tuple(cfg.global_attn_indexes))
    pe = PromptEncoder(embed_dim=PROMPT_DIM, image_embedding_size=(grid, grid),
                       input_image_size=(cfg.pretrain_img_size,) * 2, mask_in_chans=16)
    dec = MaskDecoder(num_multimask_outputs=3, transformer_dim=PROMPT_DIM, iou_head_depth=3,
                      iou_head_hidden_dim=PROMPT_DIM,
                      transformer=TwoWayTransformer(depth=2, embedding_dim=PROMPT_DIM, mlp_dim=256, num_heads=4))
    return Sam(enc, pe, dec, pixel_mean=list(cfg.mean), pixel_std=list(cfg.std))


def sample_prompts(scenes, rng: np.random.Generator, per_image: int,
                   box_prob: float = 0.25) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Per scene: ``per_image`` random instances and, for each, a random pixel centre inside it or (with
    probability ``box_prob`` per scene, as SAM mixes box and point prompts) its jittered box.
    Returns [(prompts (P, 2) points as (x, y) or (P, 4) boxes as (x0, y0, x1, y1), masks (P, H, W) bool)]."""
    out = []
    for s in scenes:
        k = rng.integers(len(s.instances), size=per_image)
        boxes = rng.random() < box_prob
        pts = []
        for i in k:
            ys, xs = np.nonzero(s.instances[i])
            if boxes:
                pts.append(np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]) + rng.normal(0, 2, 4))
            else:
                j = rng.integers(len(ys))
                pts.append((xs[j] + 0.5, ys[j] + 0.5))
        out.append((np.asarray(pts, np.float32), s.instances[k]))
    return out


def predict_masks(sam: Sam, images: np.ndarray, prompts) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """Three candidate mask logits at image size, and their predicted IoUs, per prompt.

    Args:
        images: (B, H, W, 3) uint8; prompts: from :func:`sample_prompts`.
    Returns:
        list of B pairs: logits (P, 3, H, W), predicted IoU (P, 3).
    """
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    x = (x - sam.pixel_mean) / sam.pixel_std                      # (B, 3, H, W)
    emb = sam.image_encoder(x)                                     # (B, PROMPT_DIM, h, w)
    dense_pe = sam.prompt_encoder.get_dense_pe()
    outs = []
    for b, (pts, _) in enumerate(prompts):
        if pts.shape[1] == 4:                                      # (P, 4) boxes
            sparse, dense = sam.prompt_encoder(points=None, boxes=torch.from_numpy(pts), masks=None)
        else:
            coords = torch.from_numpy(pts)[:, None, :]             # (P, 1, 2)
            labels = torch.ones(len(pts), 1, dtype=torch.int64)    # foreground points
            sparse, dense = sam.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        low, iou = sam.mask_decoder(image_embeddings=emb[b:b + 1], image_pe=dense_pe, sparse_prompt_embeddings=sparse,
                                    dense_prompt_embeddings=dense, multimask_output=True)  # (P, 3, 4h, 4w), (P, 3)
        outs.append((F.interpolate(low, size=images.shape[1:3], mode="bilinear", align_corners=False), iou))
    return outs


def sam_loss(logits: torch.Tensor, iou_pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SAM's training loss on one image's prompts: per prompt, BCE + dice of the best of the three
    candidates, plus the MSE of the predicted IoUs against the candidates' true IoUs.

    Args:
        logits: (P, 3, H, W); iou_pred: (P, 3); target: (P, H, W) in {0, 1}.
    """
    t = target[:, None].expand_as(logits)                           # (P, 3, H, W)
    bce = F.binary_cross_entropy_with_logits(logits, t, reduction="none").mean((2, 3))
    p = logits.sigmoid()
    dice = 1 - (2 * (p * t).sum((2, 3)) + 1) / (p.sum((2, 3)) + t.sum((2, 3)) + 1)
    per = bce + dice                                                # (P, 3)
    best = per.argmin(1)
    with torch.no_grad():
        hard, truth = logits > 0, t > 0.5
        iou = (hard & truth).sum((2, 3)).float() / (hard | truth).sum((2, 3)).float().clamp(min=1)
    return per.gather(1, best[:, None]).mean() + F.mse_loss(iou_pred, iou)


def _iou(pred: np.ndarray, truth: np.ndarray) -> float:
    return float((pred & truth).sum() / max((pred | truth).sum(), 1))


@torch.no_grad()
def point_prompt_miou(sam: Sam, world: ToyWorld, *, n_scenes: int = 50, seed: int = 0, size: int = 128) -> Dict[str, float]:
    """Mean IoU over held-out point prompts (one per instance, every instance of every scene; the
    candidate with the highest predicted IoU, as ``SamPredictor`` users pick it), and a trivial
    baseline: a disc around the point with the median instance area."""
    sam.eval()
    rng = np.random.default_rng(EVAL_SEED + seed)
    ious, base = [], []
    scenes = [world.scene(EVAL_SEED + seed * 100_000 + i, size=size) for i in range(n_scenes)]
    r = math.sqrt(np.median(np.concatenate([s.instances.sum((1, 2)) for s in scenes])) / math.pi)
    yy, xx = np.mgrid[0:size, 0:size]
    for s in scenes:
        pts = []
        for m in s.instances:
            ys, xs = np.nonzero(m)
            j = rng.integers(len(ys))
            pts.append((xs[j] + 0.5, ys[j] + 0.5))
        pts = np.asarray(pts, np.float32)
        logits, iou = predict_masks(sam, s.image[None], [(pts, s.instances)])[0]
        pick = logits[torch.arange(len(pts)), iou.argmax(1)]      # (P, H, W)
        for (x, y), lg, m in zip(pts, pick, s.instances):
            ious.append(_iou(lg.numpy() > 0, m))
            base.append(_iou((xx - x) ** 2 + (yy - y) ** 2 <= r * r, m))
    return {"point_miou": float(np.mean(ious)), "point_baseline_miou": float(np.mean(base)), "eval_prompts": len(ious)}


@torch.no_grad()
def proposal_recall(sam: Sam, world: ToyWorld, *, n_scenes: int = 50, seed: int = 0, size: int = 128,
                    iou: float = 0.5, **generator) -> Dict[str, float]:
    """Class-agnostic recall of ``SamAutomaticMaskGenerator``: the share of ground-truth instances
    (stuff regions and things) of held-out scenes with a proposal of IoU >= ``iou``. Generator
    settings default to ``TOY_SAM_GENERATOR``; also returns the mean number of proposals per scene."""
    from segment_anything import SamAutomaticMaskGenerator
    gen = SamAutomaticMaskGenerator(sam.eval(), **{**TOY_SAM_GENERATOR, **generator})
    hits, total, counts = 0, 0, []
    for i in range(n_scenes):
        s = world.scene(EVAL_SEED + 50_000 + seed * 100_000 + i, size=size)
        props = [p["segmentation"] for p in gen.generate(s.image)]
        counts.append(len(props))
        for m in s.instances:
            total += 1
            hits += bool(props) and max(_iou(p, m) for p in props) >= iou
    return {"proposal_recall": hits / max(total, 1), "recall_instances": total,
            "proposals_per_scene": float(np.mean(counts))}


def pretrain_sam(out: Optional[str], *, steps: int = 1500, batch_size: int = 8, prompts_per_image: int = 12,
                 box_prob: float = 0.25, lr: float = 2e-3, seed: int = 0, warmup: int = 50, eval_scenes: int = 50,
                 max_minutes: Optional[float] = None, progress: bool = True) -> Dict[str, float]:
    """Train the toy SAM on fresh test-split scenes (all classes); write the whole ``Sam`` as
    safetensors. ``max_minutes`` works as in :func:`~ebseg_lite.toyworld.pretrain_clip.pretrain_clip`."""
    t0, c0 = time.time(), time.process_time()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    world = ToyWorld()
    sam = build_toy_sam()
    opt = torch.optim.AdamW(sam.parameters(), lr=lr, weight_decay=0.01)
    budget = max_minutes * 60 if max_minutes else None

    def frac(step: int) -> float:
        f = step / steps
        return min(max(f, (time.time() - t0) / budget) if budget else f, 1.0)

    losses, done = [], 0
    sam.train()
    bar = tqdm(range(steps), desc="pretrain toy SAM", disable=not progress)
    for step in bar:
        if frac(step) >= 1.0:
            break
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * frac(step)))
        scenes = [world.scene(TRAIN_SEED * (seed + 1) + step * batch_size + b) for b in range(batch_size)]
        prompts = sample_prompts(scenes, rng, prompts_per_image, box_prob)
        outs = predict_masks(sam, np.stack([s.image for s in scenes]), prompts)
        loss = torch.stack([sam_loss(lg, io, torch.from_numpy(m).float()) for (lg, io), (_, m) in zip(outs, prompts)]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done = step + 1
        losses.append(float(loss.detach()))
        if not math.isfinite(losses[-1]):
            raise FloatingPointError(f"toy SAM loss became {losses[-1]} at step {step}")
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    summary = {"final_loss": float(np.mean(losses[-20:])), "first_loss": losses[0], "steps": done,
               "max_steps": steps, "max_minutes": max_minutes, "batch_size": batch_size,
               "prompts_per_image": prompts_per_image, "box_prob": box_prob, "lr": lr, "seed": seed,
               "train_seconds": round(time.time() - t0, 1)}
    summary.update(point_prompt_miou(sam, world, n_scenes=eval_scenes, seed=seed))
    summary.update(proposal_recall(sam, world, n_scenes=eval_scenes, seed=seed))
    summary["total_seconds"] = round(time.time() - t0, 1)
    summary["cpu_seconds"] = round(time.process_time() - c0, 1)
    if out:
        save_toy_sam(sam, out, summary)
    return summary


def save_toy_sam(sam: Sam, path, summary: Optional[dict] = None):
    """The whole ``Sam`` (``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*``) as safetensors."""
    import dataclasses
    import json
    from safetensors.torch import save_file
    sd = {k: v.detach().cpu().contiguous() for k, v in sam.state_dict().items()}
    meta = {"format": "ebseg_lite.toy_sam", "sam_config": json.dumps(dataclasses.asdict(toy_sam_config())),
            "summary": json.dumps(summary or {})}
    return atomic_write(path, lambda tmp: save_file(sd, tmp, metadata=meta))


def load_toy_sam(path) -> Sam:
    """The full toy ``Sam`` from a file written by :func:`pretrain_sam` (eval mode)."""
    from ebseg_lite.io.files import read_state_dict
    sam = build_toy_sam()
    sam.load_state_dict(read_state_dict(path), strict=True)
    return sam.eval()
