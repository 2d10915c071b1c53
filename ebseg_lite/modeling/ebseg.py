"""EBSeg (Fig. 2), the ``nn.Module``: frozen CLIP + frozen SAM, feature fusion, AdaB decoder, CLIP
mask attention, frozen embeddings D. Forward only: encoding an image once and classifying it
with any vocabulary live in :class:`ebseg_lite.inference.predictor.EBSegPredictor` (as
segment-anything keeps ``SamPredictor`` apart from ``Sam``).

Inference does each piece of work once (the official code runs the per-head attention bias and the
mask-attention head for all 10 decoder outputs although only the last is used): one bias, one head
run that also yields F_clip, one mask pooling.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ebseg_lite.config import EBSegConfig
from ebseg_lite.io.images import pad_to_multiple
from ebseg_lite.modeling import clip_dense, mask_attention, sam_features
from ebseg_lite.modeling.attn_bias import pool_bias
from ebseg_lite.modeling.fusion import FeatureFusion
from ebseg_lite.modeling.mask_pool import mask_pool
from ebseg_lite.modeling.pixel_decoder import PixelDecoder
from ebseg_lite.modeling.transformer_decoder import AdaBDecoder


class EBSeg(nn.Module):
    def __init__(self, cfg: EBSegConfig, clip_model: nn.Module, tokenizer, sam_encoder: nn.Module):
        super().__init__()
        self.cfg = cfg
        self.clip = clip_model
        self.tokenizer = tokenizer
        self.sam = sam_encoder
        visual = clip_model.visual
        width = visual.conv1.out_channels
        self.embed_dim = visual.proj.shape[1]
        self.clip_heads = visual.transformer.resblocks[0].attn.num_heads
        self.fusion = FeatureFusion(width, cfg.sam.embed_dim, sam_scale=cfg.sam.feature_scale)
        self.pixel_decoder = PixelDecoder(cfg.sam.embed_dim, cfg.decoder)
        self.decoder = AdaBDecoder(cfg.decoder, self.embed_dim, self.clip_heads)
        self.bg_embed = nn.Parameter(torch.randn(1, self.embed_dim) * self.embed_dim ** -0.5)
        for name, vals, scale in (("clip_mean", cfg.clip.mean, 255.0), ("clip_std", cfg.clip.std, 255.0),
                                  ("sam_mean", cfg.sam.mean, 1.0), ("sam_std", cfg.sam.std, 1.0)):
            self.register_buffer(name, torch.tensor(vals).view(3, 1, 1) * scale, persistent=False)
        #: the training vocabulary that decides seen/new; None -> ``cfg.train_vocabulary``
        #: (set from a checkpoint's metadata by ``load_checkpoint``).
        self.train_class_names: Optional[List[str]] = None
        #: bumped whenever weights are loaded, so cached text embeddings of older weights are not reused.
        self.weights_version = 0
        self.freeze_encoders()

    # ----------------------------------------------------------------- set-up
    def freeze_encoders(self):
        """Freeze CLIP and SAM except their positional embeddings (trainable in EBSeg)."""
        for n, p in self.clip.named_parameters():
            p.requires_grad = n == "visual.positional_embedding"
        for n, p in self.sam.named_parameters():
            p.requires_grad = n == "pos_embed"

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()  # frozen towers stay in eval mode (no dropout)
        self.sam.eval()
        return self

    @property
    def device(self) -> torch.device:
        return self.clip_mean.device

    # ----------------------------------------------------------------- image side
    def preprocess(self, images: torch.Tensor):
        """(B, 3, H, W) uint8 -> CLIP input (B, 3, p*Hp, p*Wp), SAM input (B, 3, Hp, Wp): each
        normalised with its own mean/std, zero-padded to a multiple of 32 (official order)."""
        x = images.to(self.device).float()
        div = self.cfg.inference.size_divisibility
        clip_in, _ = pad_to_multiple((x - self.clip_mean) / self.clip_std, div)
        sam_in, _ = pad_to_multiple((x - self.sam_mean) / self.sam_std, div)
        clip_in = F.interpolate(clip_in, scale_factor=self.cfg.clip.input_scale, mode="bilinear", align_corners=False)
        return clip_in, sam_in

    def frozen_features(self, images: torch.Tensor, *, inference: bool = True,
                        defer_res2: bool = False) -> Dict[str, object]:
        """The two frozen encoders (stage 1 before fusion): dense CLIP and multi-scale SAM.

        Their weights never train; only the two positional embeddings may (see ``freeze_encoders``).
        When those are frozen too, this output is a pure function of the image and a training run
        may cache it (``ebseg_lite.train.feature_cache``).

        Args:
            defer_res2: leave SAM's res2 at its block's stride; the pixel decoder resizes it after its
                1x1 lateral conv (``res2_scale`` in the output says by how much).
        Returns:
            {"dense": ClipDense (Surgery stream only at inference), "sam": {"res2".."res5": (B, E, h_s, w_s)},
             "padded_size": (Hp, Wp), "res2_scale": None, or the factor still to apply to res2}.
        """
        cfg = self.cfg
        clip_in, sam_in = self.preprocess(images)
        dense = clip_dense.dense_clip_features(self.clip.visual, clip_in, feature_blocks=tuple(cfg.clip.feature_blocks),
                                               surgery=inference, surgery_start=cfg.clip.surgery_start)
        if cfg.sam.enabled:
            sam = sam_features.sam_multiscale_features(self.sam, sam_in, global_attn_indexes=cfg.sam.global_attn_indexes,
                                                       scales=cfg.sam.scales, defer_res2=defer_res2)
        else:  # the "w/o SAM" ablation: only CLIP's terms of eq. 1 reach the pixel decoder
            sam = sam_features.zero_features(sam_in, embed_dim=cfg.sam.embed_dim, patch_size=cfg.sam.patch_size,
                                             scales=cfg.sam.scales, defer_res2=defer_res2)
        return {"dense": dense, "sam": sam, "padded_size": tuple(sam_in.shape[-2:]),
                "res2_scale": cfg.sam.scales[0] if defer_res2 else None}

    def forward_features(self, images: Optional[torch.Tensor] = None, *, inference: bool = True,
                         frozen: Optional[Dict[str, object]] = None) -> Dict[str, object]:
        """All stages on a batch. Inference: one bias, one head run (B and F_clip), D.
        Training: the bias and B for every decoder output (one head run for all of them,
        :func:`~ebseg_lite.modeling.mask_attention.clip_mask_attention_layers`), no Surgery stream, no D.

        Args:
            images: (B, 3, H, W) uint8 (or float 0..255); may be None when ``frozen`` is given.
            frozen: precomputed ``frozen_features(images)`` (a feature cache) instead of running the encoders.
        Returns:
            dict with "dense", "sam", "fused", "mask_features", "decoder", "res2_scale" and, at inference,
            "B", "F_clip", "D", "attn_bias_pooled"; in training "B_per_layer". At inference (from images)
            res2 in "sam" and "fused" stays at its SAM block's stride and the pixel decoder resizes it after
            its 1x1 lateral conv (the same map up to float rounding, 16x fewer pixels through the conv);
            ``sam_features.resize_level(res2, out["res2_scale"])`` gives the stride-4 map.
        """
        cfg = self.cfg
        if frozen is None:
            if images is None:
                raise ValueError("forward_features needs images or precomputed frozen features")
            frozen = self.frozen_features(images, inference=inference, defer_res2=inference)
        dense, sam = frozen["dense"], frozen["sam"]
        visual = self.clip.visual
        blocks = tuple(cfg.clip.feature_blocks)
        fused = self.fusion(sam, [dense.feats[b] for b in blocks])
        with torch.autocast(device_type=self.device.type, enabled=False):  # as the official pixel decoder
            mask_features, memories = self.pixel_decoder({k: v.float() for k, v in fused.items()},
                                                         res2_scale=frozen.get("res2_scale"))
        dec = self.decoder(memories, mask_features, bias_for="last" if inference else "all")
        out = {"padded_size": frozen["padded_size"], "dense": dense, "sam": sam, "fused": fused,
               "mask_features": mask_features, "decoder": dec, "res2_scale": frozen.get("res2_scale")}
        head = dict(start_block=blocks[-1], surgery_bias=cfg.inference.surgery_bias)
        if inference:
            pooled = pool_bias(dec.attn_bias[-1], dense.grid, "max")
            B, f_clip = mask_attention.clip_mask_attention(visual, dense, pooled, surgery=True, **head)
            out.update(B=B, F_clip=f_clip, D=mask_pool(dec.masks[-1], f_clip), attn_bias_pooled=pooled)
        else:
            out["B_per_layer"] = mask_attention.clip_mask_attention_layers(
                visual, dense, [pool_bias(b, dense.grid, "max") for b in dec.attn_bias], start_block=blocks[-1])
        return out

    def forward(self, images: Optional[torch.Tensor] = None, frozen: Optional[Dict[str, object]] = None):
        """Training forward (what DistributedDataParallel calls): ``forward_features(inference=False)``."""
        return self.forward_features(images, inference=False, frozen=frozen)
