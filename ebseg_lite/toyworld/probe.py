"""Which part of a toy EBSeg's classification fails: embeddings from ground-truth masks.

:func:`oracle_probe` classifies every ground-truth instance of held-out scenes (all 36 classes, the
toy templates) from embeddings computed five ways, so an error can be put on the decoder (its masks,
its A) or on the frozen CLIP (what its mask-attention head and its dense features can say about a
region at all):

* ``B, GT masks``: the mask-attention head (stage 3) with the ground-truth mask as its attention
  bias, ``log(fraction of each CLIP token inside the mask)`` for every head: a perfect decoder's B;
  also with the head started earlier (more blocks under the mask);
* ``D, GT masks``: F_clip (the Surgery stream, stage 4) averaged over the ground-truth mask;
* ``CLIP on the region alone``: CLIP's ordinary image embedding of the image with everything
  outside the mask set to CLIP's mean colour (what a two-stage method such as SimSeg sees);
* ``A / B / D of the best query``: the trained model's own embeddings for the query whose mask
  overlaps the instance best (the decoder's masks are good; is its classification?).
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch
import torch.nn.functional as F

from ebseg_lite.modeling import clip_dense, mask_attention
from ebseg_lite.toyworld.world import ToyWorld


def gt_attention_bias(masks: torch.Tensor, grid, heads: int) -> torch.Tensor:
    """(M, H, W) {0,1} masks -> (1, heads, M, h, w) bias ``log(token fraction in the mask)`` (>= log 1e-4)."""
    frac = F.adaptive_avg_pool2d(masks[None].float(), grid)[0]           # (M, h, w)
    return torch.log(frac.clamp_min(1e-4))[None, None].expand(1, heads, -1, -1, -1)


def masked_region_images(image: torch.Tensor, masks: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """(3, H, W) float image, (M, H, W) masks -> (M, 3, H, W): each region alone on ``mean`` (3, 1, 1)."""
    m = masks[:, None].float()
    return image[None] * m + mean[None] * (1 - m)


@torch.no_grad()
def oracle_probe(predictor, *, n_scenes: int = 60, seed: int = 98, start_blocks: Sequence[int] = (3, 9)) -> Dict[str, float]:
    """Instance accuracy (%) of each way of embedding a ground-truth region, over ``n_scenes``
    held-out test scenes (seed ``seed``, never a training seed). Keys ``"<way>: all"`` and ``"<way>: new"``.

    Args:
        predictor: a trained toy :class:`~ebseg_lite.inference.predictor.EBSegPredictor`.
        start_blocks: extra head starts (blocks already run, 0-based count) for ``B, GT masks``
            besides the model's own (its last feature block).
    """
    world = ToyWorld()
    model = predictor.model.eval()
    vis = model.clip.visual
    text = predictor.text_embeddings(world.class_names)                  # (K, C)
    seen = torch.tensor(world.seen)
    heads = vis.transformer.resblocks[0].attn.num_heads
    own = tuple(model.cfg.clip.feature_blocks)[-1]
    starts = [own] + [s for s in start_blocks if s != own]
    n_blocks = len(vis.transformer.resblocks)
    hits: Dict[str, list] = {}

    def score(name: str, emb: torch.Tensor, labels: torch.Tensor):
        pred = (F.normalize(emb, dim=-1) @ text.T).argmax(-1)
        hits.setdefault(name, []).append(torch.stack([pred == labels, ~seen[labels]]))

    data = world.dataset(n_scenes, seed=seed, split="test", size=128)
    for i in range(n_scenes):
        s = data.scene(i)
        labels = torch.from_numpy(s.instance_labels)
        gt = torch.from_numpy(s.instances)                                # (M, H, W) bool
        image = torch.from_numpy(s.image).permute(2, 0, 1)[None].float()
        out = model.forward_features(image, inference=True)
        clip_in, _ = model.preprocess(image)
        for start in starts:
            dense = out["dense"] if start == own else clip_dense.dense_clip_features(
                vis, clip_in, feature_blocks=(start,), surgery=False)
            bias = gt_attention_bias(gt, dense.grid, heads)
            B, _ = mask_attention.clip_mask_attention(vis, dense, bias, start_block=start, surgery=False)
            score(f"B, GT masks (head over blocks {start + 1}-{n_blocks})", B[0], labels)
        fc = out["F_clip"][0]                                             # (C, h, w)
        gm = F.interpolate(gt[None].float(), size=fc.shape[-2:], mode="bilinear", align_corners=False)[0]
        score("D, GT masks", torch.einsum("mhw,chw->mc", gm, fc), labels)
        mean = model.clip_mean.view(3, 1, 1)
        regions = masked_region_images(image[0], gt, mean)
        r_in, _ = model.preprocess(regions)
        score("CLIP on the region alone (rest mean grey)", model.clip.encode_image(r_in), labels)
        masks = F.interpolate(out["decoder"].masks[-1], size=gt.shape[-2:], mode="bilinear", align_corners=False)[0] > 0
        inter = torch.einsum("nhw,mhw->nm", masks.float(), gt.float())
        union = masks.sum((1, 2))[:, None] + gt.sum((1, 2))[None] - inter
        best = (inter / union.clamp_min(1)).argmax(0)                     # (M,) best query per instance
        for name, emb in (("A", out["decoder"].A[-1][0]), ("B", out["B"][0]), ("D", out["D"][0])):
            score(f"{name} of the best-overlapping query", emb[best], labels)
    result = {}
    for name, parts in hits.items():
        ok, new = torch.cat(parts, dim=1).float()
        result[f"{name}: all"] = float(100 * ok.mean())
        result[f"{name}: new"] = float(100 * (ok * new).sum() / new.sum().clamp_min(1))
    return result
