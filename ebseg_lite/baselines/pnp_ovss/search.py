"""Label-free hyper-parameter search for PnP-OVSS (the paper's weakly-supervised reward).

Which layer and head of the text encoder localise best is not known in advance for a new model. The
reward needs no masks: for each image and each class k of its list, cut the image with the predicted
mask of k and let CLIP judge. The *positive* image keeps only the pixels of k (the rest black), the
*negative* one blacks out the pixels of k; a good mask makes CLIP find k more likely in the first:

    reward = sum over images, classes k of  [ p_clip(k | image * m_k) > p_clip(k | image * (1 - m_k)) ]

(official ``get_clipsim_for_pnmask``: CLIP ViT-L/14-336, softmax over the image's classes at
temperature 0.01, ``pos_win_sum``). The official search runs Gradient-Free-Optimizers'
``RandomAnnealingOptimizer`` for 34 iterations over layer, head (0-11) and the minimum attention
(0.05-0.45 in steps of 0.1), with one Salience DropOut round; here a seeded random search over the
same kind of grid (:func:`random_search`), also with one round. One forward and backward per image
gives every layer and head (:func:`cache_gradcams`), so a trial costs only post-processing and CLIP.

Shapes: K classes, nh heads, T tokens, h x w patches, H x W pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch

from ebseg_lite.baselines.pnp_ovss.blip import encode_prompt, preprocess_image
from ebseg_lite.baselines.pnp_ovss.dropout import combine_rounds
from ebseg_lite.baselines.pnp_ovss.gradcam import class_maps, itm_gradcam


def masked_pair(image: np.ndarray, mask: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(positive, negative) images: the (H, W, 3) image with pixels outside / inside ``mask`` black."""
    m = mask.astype(bool)[..., None]
    return np.where(m, image, 0).astype(np.uint8), np.where(m, 0, image).astype(np.uint8)


def weak_reward(scorer, image: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> int:
    """Classes of the list whose positive image CLIP scores above the negative one.

    Args:
        scorer: has ``probs(images (N, H, W, 3) uint8, names) -> (N, K)`` (:class:`.classes.ClipScorer`).
        labels: (H, W) predicted indices into ``class_names`` (-1 background).
    """
    k = len(class_names)
    pairs = [masked_pair(image, labels == i) for i in range(k)]
    batch = np.stack([p for p, _ in pairs] + [n for _, n in pairs])             # (2K, H, W, 3)
    p = scorer.probs(batch, class_names)                                        # (2K, K)
    idx = torch.arange(k)
    return int((p[idx, idx] > p[k + idx, idx]).sum())


def random_search(objective: Callable[[Dict], float], space: Dict[str, Sequence], *, n_iter: int,
                  seed: int = 0) -> List[Tuple[Dict, float]]:
    """Evaluate ``objective`` on ``n_iter`` distinct points of the grid ``space`` drawn without
    replacement (seeded). Returns ``(params, value)`` trials, best first (ties: drawn first)."""
    keys = list(space)
    sizes = [len(space[k]) for k in keys]
    total = int(np.prod(sizes))
    flat = np.random.default_rng(seed).permutation(total)[:min(n_iter, total)]
    trials = []
    for f in flat:
        params, rest = {}, int(f)
        for k, s in zip(reversed(keys), reversed(sizes)):
            params[k] = space[k][rest % s]
            rest //= s
        trials.append(({k: params[k] for k in keys}, float(objective(params))))
    order = sorted(range(len(trials)), key=lambda i: -trials[i][1])
    return [trials[i] for i in order]


@dataclass
class CachedImage:
    image: np.ndarray                        # (H, W, 3) uint8
    class_names: List[str]
    maps: Dict[int, torch.Tensor]            # layer -> (nh, K, h, w) GradCAM class maps


def cache_gradcams(segmenter, image: np.ndarray, class_names: Sequence[str], layers: Sequence[int]) -> CachedImage:
    """One ITM forward + backward: GradCAM class maps of every head at ``layers``."""
    prompt = encode_prompt(segmenter.tokenizer, class_names, prefix=segmenter.config.prefix)
    g = itm_gradcam(segmenter.model, preprocess_image(image, segmenter.size), prompt.input_ids,
                    prompt.attention_mask, layers=layers)
    maps = {l: torch.stack([class_maps(g.gradcam[l][0, n], prompt.spans) for n in range(g.gradcam[l].shape[1])])
            for l in layers}
    return CachedImage(image, list(class_names), maps)


def search_pnp(segmenter, images: Sequence[np.ndarray], class_lists: Sequence[Sequence[str]], scorer, *,
               thresholds: Sequence[float] = (0.05, 0.15, 0.25, 0.35, 0.45), n_iter: int = 34,
               seed: int = 0) -> List[Tuple[Dict, float]]:
    """Random search over (layer, head, threshold) of ``segmenter``'s BLIP with :func:`weak_reward`
    summed over ``images``. Returns the trials, best first; ``trials[0][0]`` are the found values."""
    tc = segmenter.model.config.text_config
    layers = list(range(tc.num_hidden_layers))
    cached = [cache_gradcams(segmenter, im, names, layers) for im, names in zip(images, class_lists)]

    def objective(p: Dict) -> float:
        total = 0
        for c in cached:
            combined = combine_rounds(c.maps[p["layer"]][p["head"]][None])      # one round: 2 G_0
            labels = segmenter.postprocess(combined, c.image, threshold=p["threshold"])[-1]
            total += weak_reward(scorer, c.image, labels.numpy(), c.class_names)
        return total

    space = {"layer": layers, "head": list(range(tc.num_attention_heads)), "threshold": list(thresholds)}
    return random_search(objective, space, n_iter=n_iter, seed=seed)
