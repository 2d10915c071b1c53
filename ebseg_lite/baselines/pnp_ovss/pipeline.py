"""PnP-OVSS end to end: BLIP's ITM GradCAM, Salience DropOut, threshold, blur, CRF (Luo et al.,
"Emergent Open-Vocabulary Semantic Segmentation from Off-the-shelf Vision-Language Models",
CVPR 2024; arXiv 2311.17095).

No training. For one image and the names of the classes it contains (the *image-level* class list:
given by the user, from CLIP zero-shot (:mod:`.classes`), or the ground truth in evaluation; the
official code reads GPT-4o's answers), the prompt ``"A picture of <name> <name> ..."`` is matched
against the image and GradCAM of the ITM score at one cross-attention layer and head becomes each
class's map. Expensive part: one ViT + text-encoder forward and backward per Salience DropOut round;
the post-processing reruns in milliseconds (:meth:`PnPOVSS.postprocess`), which the threshold search
and the notebook use.

    seg = PnPOVSS(model, tokenizer, PnPConfig())            # official defaults: layer 7, head 9
    out = seg.segment(image, ["cat", "sofa"])                # out.labels: (H, W) indices into the list

Shapes: K classes, h x w patches, H x W pixels, R rounds.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import List, Optional, Sequence

import numpy as np
import torch

from ebseg_lite.baselines.pnp_ovss.blip import PROMPT_PREFIX, encode_prompt, grid_size, preprocess_image
from ebseg_lite.baselines.pnp_ovss.crf import CrfConfig, dense_crf
from ebseg_lite.baselines.pnp_ovss.dropout import DropoutRound, salience_dropout
from ebseg_lite.baselines.pnp_ovss.gradcam import class_maps, itm_gradcam
from ebseg_lite.baselines.pnp_ovss.postprocess import (BLUR_SCALE, THRESHOLD, add_background, blur_maps,
                                                       blur_sigma, resize_maps, threshold_maps, use_background)


@dataclass(frozen=True)
class PnPConfig:
    """Defaults are the official ones (``Run_seg.sh``: ``--max_att_block_num 8 --prune_att_head 9
    --drop_iter 4 --threshold 0.15 --postprocess blur+crf``); ``layer`` counts from 0."""
    layer: int = 7
    head: int = 9
    drop_rounds: int = 4
    drop_patches: int = 10
    threshold: float = THRESHOLD
    blur_scale: float = BLUR_SCALE
    crf: bool = True
    crf_config: CrfConfig = field(default_factory=CrfConfig)
    background: str = "few"       # "always" | "never" | "few" (see postprocess.use_background)
    prefix: str = PROMPT_PREFIX


@dataclass
class PnPOutput:
    """Every stage of one image (detached). ``labels`` index ``class_names``; -1 = background."""
    class_names: List[str]
    rounds: List[DropoutRound]         # per round: (K, h, w) attention and GradCAM maps, dropped patches
    combined: torch.Tensor             # (K, h, w) G_0 + sum_r G_r
    thresholded: torch.Tensor          # (K, h, w)
    resized: torch.Tensor              # (K, H, W)
    scores: torch.Tensor               # (C, H, W) blurred, C = K (+1 with background first)
    probs: torch.Tensor                # (C, H, W) CRF marginals, or softmax(scores) without CRF
    labels: torch.Tensor               # (H, W) long in -1 .. K-1
    background: bool
    itm_logit: float                   # the first round's positive ITM logit


class PnPOVSS:
    """Segment with a ``BlipForImageTextRetrieval`` and its BERT tokeniser, no training."""

    def __init__(self, model, tokenizer, config: PnPConfig = PnPConfig()):
        self.model, self.tokenizer, self.config = model.eval(), tokenizer, config
        self.size, self.patch, self.grid = grid_size(model)
        tc = model.config.text_config
        if not (0 <= config.layer < tc.num_hidden_layers and 0 <= config.head < tc.num_attention_heads):
            raise ValueError(f"layer {config.layer} / head {config.head} outside the text encoder's "
                             f"{tc.num_hidden_layers} layers x {tc.num_attention_heads} heads")

    def with_config(self, **changes) -> "PnPOVSS":
        return PnPOVSS(self.model, self.tokenizer, replace(self.config, **changes))

    def _round_fn(self, prompt, layers: Sequence[int]):
        def run(x):
            g = itm_gradcam(self.model, x, prompt.input_ids, prompt.attention_mask, layers=layers)
            l, n = self.config.layer, self.config.head
            att = class_maps(g.attention[l][0, n], prompt.spans)           # (K, h, w)
            cam = class_maps(g.gradcam[l][0, n], prompt.spans)             # (K, h, w)
            return att, cam, float(g.itm_logits[0, 1])
        return run

    def maps(self, image: np.ndarray, class_names: Sequence[str]):
        """The expensive part: (combined (K, h, w), rounds) for an (H, W, 3) uint8 image."""
        if not class_names:
            raise ValueError("PnP-OVSS needs at least one class name for the image")
        prompt = encode_prompt(self.tokenizer, class_names, prefix=self.config.prefix,
                               max_length=self.model.config.text_config.max_position_embeddings)
        x = preprocess_image(image, self.size)
        return salience_dropout(self._round_fn(prompt, [self.config.layer]), x,
                                rounds=self.config.drop_rounds, patches=self.config.drop_patches,
                                patch=self.patch)

    def postprocess(self, combined: torch.Tensor, image: np.ndarray, *, threshold: Optional[float] = None):
        """The cheap part: (thresholded, resized, scores, probs, labels, background?) from (K, h, w) maps."""
        cfg = self.config
        size = tuple(image.shape[:2])
        t = cfg.threshold if threshold is None else threshold
        thr = threshold_maps(combined, t)
        up = resize_maps(thr, size)                                        # (K, H, W)
        bg = use_background(cfg.background, combined.shape[0])
        chans = add_background(up) if bg else up                           # (C, H, W)
        scores = blur_maps(chans, blur_sigma(size, cfg.blur_scale))
        probs = dense_crf(image, scores, cfg.crf_config) if cfg.crf else torch.softmax(scores, 0)
        labels = probs.argmax(0) - int(bg)
        return thr, up, scores, probs, labels

    def segment(self, image: np.ndarray, class_names: Sequence[str]) -> PnPOutput:
        """All stages for one (H, W, 3) uint8 image and its class list."""
        combined, rounds = self.maps(image, class_names)
        thr, up, scores, probs, labels = self.postprocess(combined, image)
        return PnPOutput(list(class_names), rounds, combined, thr, up, scores, probs, labels,
                         scores.shape[0] > combined.shape[0], rounds[0].itm_logit)


def to_vocabulary_ids(labels: torch.Tensor, class_ids: Sequence[int], fill: int) -> torch.Tensor:
    """(H, W) indices into an image's class list (-1 background) -> ids of the dataset vocabulary;
    background becomes ``fill`` (e.g. the ignore value, or the dataset's background id)."""
    lut = torch.tensor(list(class_ids) + [fill], dtype=torch.long)   # index -1 -> the last entry
    return lut[labels]
