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

:func:`query_vs_map` separates a query's classification from eq. 14's map: for every ground-truth
instance, is the best-overlapping query's class right, and is the map's majority label over the
instance right? Where the first holds and the second fails, *other* queries covering the same
region (duplicates not yet pushed to "no object") carry another class into the map.

:func:`mask_oracle_miou` asks the converse: the model's own masks, each query told its true class
(the ground-truth class covering most of its mask), through the same eq. 14 and evaluator. It is the
mIoU any way of classifying these masks could reach, the ceiling of every row of the demo's table.
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


def oracle_class_probs(mask_logits: torch.Tensor, label: torch.Tensor, num_classes: int, *,
                       ignore_value: int = 255) -> torch.Tensor:
    """Each query's true class as a one-hot row: the ground-truth class covering most of the pixels
    where its mask is on (sigmoid > 0.5); a query whose mask covers no labelled pixel gets a zero row
    (it adds nothing to eq. 14).

    Args:
        mask_logits: (N, H, W) mask logits at the label's size.  label: (H, W) class ids.
    Returns:
        (N, K) class probabilities for :func:`~ebseg_lite.modeling.balance.semantic_inference`.
    """
    on = (mask_logits > 0).flatten(1).float()                             # (N, H*W)
    valid = (label != ignore_value).flatten()
    onehot = F.one_hot(label.flatten().clamp(max=num_classes - 1), num_classes).float() * valid[:, None]  # (H*W, K)
    votes = on @ onehot                                                   # (N, K) pixels of each class
    probs = F.one_hot(votes.argmax(-1), num_classes).float()
    return probs * (votes.sum(-1, keepdim=True) > 0)


@torch.no_grad()
def mask_oracle_miou(predictor, dataset, *, seen=None) -> Dict[str, float]:
    """mIoU (all / seen / new, %) of the model's own masks when every query is given its true class
    (:func:`oracle_class_probs`), labels by eq. 14 as in every mode. ``seen``: (K,) bool, default the
    toy world's split."""
    from ebseg_lite.eval.metrics import SemSegEvaluator
    from ebseg_lite.inference.outputs import label_map, upsample_masks
    names = list(dataset.class_names)
    seen = torch.tensor(ToyWorld().seen) if seen is None else torch.as_tensor(seen)
    ev = SemSegEvaluator(len(names), seen=seen.numpy())
    for i in range(len(dataset)):
        item = dataset[i]
        enc = predictor.encode(item["image"], keep_intermediates=False)
        masks = upsample_masks(enc.masks, enc)                            # (N, H, W) logits
        probs = oracle_class_probs(masks, item["label"], len(names), ignore_value=dataset.ignore_value)
        ev.update(label_map(probs, masks)[0], item["label"])
    r = ev.compute()
    return {k: float(r[k]) for k in ("mIoU", "mIoU_seen", "mIoU_new")}


def best_queries(masks: torch.Tensor, instances: torch.Tensor) -> torch.Tensor:
    """The query whose mask (logits > 0) has the highest IoU with each instance.

    Args:
        masks: (N, H, W) mask logits.  instances: (M, H, W) bool.
    Returns:
        (M,) int64 query indices.
    """
    on, gt = (masks > 0).flatten(1).float(), instances.flatten(1).float()
    inter = gt @ on.T                                                     # (M, N)
    union = gt.sum(1, keepdim=True) + on.sum(1)[None] - inter
    return (inter / union.clamp_min(1)).argmax(1)


def majority_labels(labels: torch.Tensor, instances: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The most frequent predicted class over each instance's pixels.

    Args:
        labels: (H, W) predicted class ids (num_classes or more = void).  instances: (M, H, W) bool.
    Returns:
        (M,) int64 class ids (num_classes when void wins).
    """
    onehot = F.one_hot(labels.clamp(0, num_classes).flatten(), num_classes + 1).float()  # (H*W, K+1)
    return (instances.flatten(1).float() @ onehot).argmax(1)


@torch.no_grad()
def matched_predictions(predictor, modes: Dict[str, dict], *, n_scenes: int, seed: int):
    """The instance probes' loop: each fresh test-split scene (every class equally often) encoded once
    and classified once per mode.

    Yields:
        ``(truth (M,), instances (M, H, W) bool, best (M,) query per instance, {mode: Prediction})``.
    """
    from ebseg_lite.inference.outputs import upsample_masks
    world = ToyWorld()
    names, seen = world.class_names, torch.tensor(world.seen)
    data = world.dataset(n_scenes, seed=seed, split="test", size=128)
    for i in range(n_scenes):
        s = data.scene(i)
        truth, gt = torch.from_numpy(s.instance_labels), torch.from_numpy(s.instances)
        enc = predictor.encode(torch.from_numpy(s.image).permute(2, 0, 1), keep_intermediates=False)
        best = best_queries(upsample_masks(enc.masks, enc), gt)
        yield truth, gt, best, {m: predictor.classify(enc, names, seen=seen, **kw) for m, kw in modes.items()}


@torch.no_grad()
def query_vs_map(predictor, modes: Dict[str, dict], *, n_scenes: int = 60, seed: int = 98) -> Dict[str, Dict[str, float]]:
    """Per mode, instance accuracy (%) on seen and on new classes of held-out test scenes, two ways:
    ``query_*`` the best-overlapping query's class (its row of the mode's class probabilities),
    ``map_*`` the majority label of the mode's eq. 14 map over the instance; ``query_seen_names``
    the best query's class among the seen names only (seen instances): what it says when the new
    names that share a word with its class are not in the vocabulary.

    Args:
        modes: {name: classify kwargs}, e.g. :data:`~ebseg_lite.toyworld.modes.MODES`.
    Returns:
        {mode: {"query_seen", "query_new", "map_seen", "map_new", "query_seen_names"}}.
    """
    world = ToyWorld()
    names, seen = world.class_names, torch.tensor(world.seen)
    seen_ids = torch.nonzero(seen).flatten()
    hits = {m: {"query": [], "map": [], "seen_names": []} for m in modes}
    is_new = []
    for truth, gt, best, preds in matched_predictions(predictor, modes, n_scenes=n_scenes, seed=seed):
        is_new.append(~seen[truth])
        for m, pred in preds.items():
            hits[m]["query"].append(pred.class_probs[best, :len(names)].argmax(-1) == truth)
            hits[m]["map"].append(majority_labels(pred.labels.cpu(), gt, len(names)) == truth)
            hits[m]["seen_names"].append(seen_ids[pred.class_probs[best][:, seen_ids].argmax(-1)] == truth)
    new = torch.cat(is_new)
    pct = lambda ok, sel: float(100 * ok[sel].float().mean()) if bool(sel.any()) else float("nan")
    out = {}
    for m, h in hits.items():
        q, mp, sn = torch.cat(h["query"]), torch.cat(h["map"]), torch.cat(h["seen_names"])
        out[m] = {"query_seen": pct(q, ~new), "query_new": pct(q, new), "map_seen": pct(mp, ~new), "map_new": pct(mp, new),
                  "query_seen_names": pct(sn, ~new)}
    return out
