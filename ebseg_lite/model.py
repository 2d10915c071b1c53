"""EBSeg (Fig. 2): frozen CLIP + frozen SAM, feature fusion, AdaB decoder, CLIP mask attention,
frozen embeddings D, balancing. ``encode`` runs the image side once; ``classify`` re-classifies
for any vocabulary and balancing weights in milliseconds; ``predict = classify(encode(.))``.

Inference does each piece of work once (the official code runs the per-head attention bias and the
mask-attention head for all 10 decoder outputs although only the last is used): one bias, one head
run that also yields F_clip, one mask pooling.
"""
from __future__ import annotations

import contextlib
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from . import clip_dense, mask_attention, sam_features
from .attn_bias import pool_bias
from .balance import (balance, balance_embeddings, class_logits, official_map_probs,
                      void_probability, with_void)
from .config import EBSegConfig
from .fusion import FeatureFusion
from .image_io import load_image, pad_to_multiple, resize_shortest_edge
from .mask_pool import mask_pool
from .outputs import Encoded, Prediction, label_map, upsample_masks
from .pixel_decoder import PixelDecoder
from .text import TEMPLATE_SETS, TextCache, encode_class_names
from .transformer_decoder import AdaBDecoder
from .vocabulary import seen_mask, validate_class_names


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
        self.fusion = FeatureFusion(width, cfg.sam.embed_dim)
        self.pixel_decoder = PixelDecoder(cfg.sam.embed_dim, cfg.decoder)
        self.decoder = AdaBDecoder(cfg.decoder, self.embed_dim, self.clip_heads)
        self.bg_embed = nn.Parameter(torch.randn(1, self.embed_dim) * self.embed_dim ** -0.5)
        for name, vals, scale in (("clip_mean", cfg.clip.mean, 255.0), ("clip_std", cfg.clip.std, 255.0),
                                  ("sam_mean", cfg.sam.mean, 1.0), ("sam_std", cfg.sam.std, 1.0)):
            self.register_buffer(name, torch.tensor(vals).view(3, 1, 1) * scale, persistent=False)
        self._text_cache = TextCache()
        self._train_names: Optional[List[str]] = None
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

    @property
    def train_class_names(self) -> List[str]:
        """The training vocabulary that decides seen/new (COCO-Stuff-171 unless set)."""
        if self._train_names is None:
            from .data.class_names import load_class_names
            self._train_names = load_class_names(self.cfg.train_vocabulary)
        return self._train_names

    @train_class_names.setter
    def train_class_names(self, names: Sequence[str]):
        self._train_names = validate_class_names(names)

    def _autocast(self, precision: Optional[str]):
        precision = precision or self.cfg.inference.precision
        if precision == "fp32":
            return contextlib.nullcontext()
        if precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")

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

    def frozen_features(self, images: torch.Tensor, *, inference: bool = True) -> Dict[str, object]:
        """The two frozen encoders (stage 1 before fusion): dense CLIP and multi-scale SAM.

        Their weights never train; only the two positional embeddings may (see ``freeze_encoders``).
        When those are frozen too, this output is a pure function of the image and a training run
        may cache it (``ebseg_lite.train.feature_cache``).

        Returns:
            {"dense": ClipDense (Surgery stream only at inference), "sam": {"res2".."res5": (B, E, h_s, w_s)},
             "padded_size": (Hp, Wp)}.
        """
        cfg = self.cfg
        clip_in, sam_in = self.preprocess(images)
        dense = clip_dense.dense_clip_features(self.clip.visual, clip_in, feature_blocks=tuple(cfg.clip.feature_blocks),
                                               surgery=inference, surgery_start=cfg.clip.surgery_start)
        sam = sam_features.sam_multiscale_features(self.sam, sam_in, global_attn_indexes=cfg.sam.global_attn_indexes,
                                                   scales=cfg.sam.scales)
        return {"dense": dense, "sam": sam, "padded_size": tuple(sam_in.shape[-2:])}

    def forward_features(self, images: Optional[torch.Tensor] = None, *, inference: bool = True,
                         frozen: Optional[Dict[str, object]] = None) -> Dict[str, object]:
        """All stages on a batch. Inference: one bias, one head run (B and F_clip), D.
        Training: the bias and B for every decoder output, no Surgery stream, no D.

        Args:
            images: (B, 3, H, W) uint8 (or float 0..255); may be None when ``frozen`` is given.
            frozen: precomputed ``frozen_features(images)`` (a feature cache) instead of running the encoders.
        Returns:
            dict with "dense", "sam", "fused", "mask_features", "decoder" and, at inference,
            "B", "F_clip", "D", "attn_bias_pooled"; in training "B_per_layer".
        """
        cfg = self.cfg
        if frozen is None:
            if images is None:
                raise ValueError("forward_features needs images or precomputed frozen features")
            frozen = self.frozen_features(images, inference=inference)
        dense, sam = frozen["dense"], frozen["sam"]
        visual = self.clip.visual
        blocks = tuple(cfg.clip.feature_blocks)
        fused = self.fusion(sam, [dense.feats[b] for b in blocks])
        with torch.autocast(device_type=self.device.type, enabled=False):  # as the official pixel decoder
            mask_features, memories = self.pixel_decoder({k: v.float() for k, v in fused.items()})
        dec = self.decoder(memories, mask_features, bias_for="last" if inference else "all")
        out = {"padded_size": frozen["padded_size"], "dense": dense, "sam": sam, "fused": fused,
               "mask_features": mask_features, "decoder": dec}
        head = dict(start_block=blocks[-1], surgery_bias=cfg.inference.surgery_bias)
        if inference:
            pooled = pool_bias(dec.attn_bias[-1], dense.grid, "max")
            B, f_clip = mask_attention.clip_mask_attention(visual, dense, pooled, surgery=True, **head)
            out.update(B=B, F_clip=f_clip, D=mask_pool(dec.masks[-1], f_clip), attn_bias_pooled=pooled)
        else:
            out["B_per_layer"] = [mask_attention.clip_mask_attention(visual, dense, pool_bias(b, dense.grid, "max"),
                                                                     surgery=False, **head)[0]
                                  for b in dec.attn_bias]
        return out

    def forward(self, images: Optional[torch.Tensor] = None, frozen: Optional[Dict[str, object]] = None):
        """Training forward (what DistributedDataParallel calls): ``forward_features(inference=False)``."""
        return self.forward_features(images, inference=False, frozen=frozen)

    @torch.no_grad()
    def encode(self, image, *, keep_intermediates: bool = True, resize: bool = True,
               precision: Optional[str] = None) -> Encoded:
        """Run the encoders, decoder, mask-attention head and F_clip once for one image.

        Args:
            image: a path, PIL image, (H, W, 3) uint8 array or (3, H, W) uint8 tensor.
            keep_intermediates: keep CLIP/SAM grids and per-layer masks for inspection.
            resize: resize to the test short side (640 for the paper presets) first.
        """
        img = load_image(image)
        orig = tuple(img.shape[-2:])
        if resize:
            img, _ = resize_shortest_edge(img, self.cfg.inference.short_side, self.cfg.inference.max_size)
        size = tuple(img.shape[-2:])
        was_training = self.training
        self.eval()
        try:
            with self._autocast(precision):
                out = self.forward_features(img[None], inference=True)
        finally:
            self.train(was_training)
        dec = out["decoder"]
        f32 = lambda t: t[0].detach().float()
        enc = Encoded(
            image=img, orig_size=orig, input_size=size,
            padded_size=out["padded_size"],
            clip_grid=out["dense"].grid, A=f32(dec.A[-1]), B=f32(out["B"]), D=f32(out["D"]),
            masks=f32(dec.masks[-1]), F_clip=f32(out["F_clip"]), attn_bias=f32(out["attn_bias_pooled"]),
            A_per_layer=torch.stack([f32(a) for a in dec.A]),
        )
        if keep_intermediates:
            enc.masks_per_layer = torch.stack([f32(m) for m in dec.masks])
            enc.clip_feats = {k: f32(v) for k, v in out["dense"].feats.items()}
            enc.sam_feats = {k: f32(v) for k, v in out["fused"].items()}
            enc.mask_features = f32(out["mask_features"])
        return enc

    # ----------------------------------------------------------------- vocabulary side
    def text_embeddings(self, class_names: Sequence[str]) -> torch.Tensor:
        """(K, C) cached text embeddings of a vocabulary (14 ViLD templates)."""
        names = tuple(validate_class_names(class_names))
        templates = TEMPLATE_SETS[self.cfg.templates]
        return self._text_cache.get(names, lambda: encode_class_names(self.clip, self.tokenizer, names, templates))

    def resolve_seen(self, class_names: Sequence[str], seen=None) -> torch.Tensor:
        """(K,) bool: given explicitly, or by the synonym rule against the training vocabulary."""
        if seen is None:
            return seen_mask(class_names, self.train_class_names)
        seen = torch.as_tensor(seen, dtype=torch.bool).flatten()
        if seen.numel() != len(class_names):
            raise ValueError(f"seen has {seen.numel()} entries for {len(class_names)} classes; give one bool per class")
        return seen

    @torch.no_grad()
    def classify(self, encoded: Encoded, class_names: Sequence[str], *, seen=None,
                 balancing: Optional[str] = None, w_seen=None, w_new=None, paper_abg=None) -> Prediction:
        """Classify the encoded masks with a vocabulary. No image encoder runs here.

        Args:
            class_names: K names ("road, route" = one class with synonyms).
            seen: (K,) bool or None (synonym rule against the training vocabulary).
            balancing: "official" (geometric, default) or "paper" (arithmetic, eq. 9-13).
            w_seen, w_new: (wA, wB, wD) for the official form.  paper_abg: (a, b, g) for the paper form.
        """
        inf = self.cfg.inference
        names = validate_class_names(class_names)
        balancing = balancing or inf.balancing
        w_seen, w_new = tuple(w_seen or inf.w_seen), tuple(w_new or inf.w_new)
        a, b, g = tuple(paper_abg or inf.paper_abg)
        text = self.text_embeddings(names)
        k = len(names)
        seen_t = self.resolve_seen(names, seen)
        cls_w = torch.cat([text, F.normalize(self.bg_embed.detach().float(), dim=-1)])  # (K+1, C)
        scale = self.clip.logit_scale.detach().float().exp()
        logits = {n: class_logits(getattr(encoded, n), cls_w, scale) for n in ("A", "B", "D")}
        probs = {n: l[..., :k].softmax(-1) for n, l in logits.items()}
        p_void = void_probability(logits["A"])
        if balancing == "official":
            fused = balance(probs["A"], probs["B"], probs["D"], seen_t, w_seen=w_seen, w_new=w_new)
        elif balancing == "paper":
            fused = balance_embeddings(encoded.A, encoded.B, encoded.D, text, seen_t, a=a, b=b, g=g, logit_scale=scale)[0]
        else:
            raise ValueError(f"balancing must be 'official' or 'paper', got {balancing!r}")
        class_probs = with_void(fused, p_void)
        map_probs = official_map_probs(class_probs)
        labels, score = label_map(map_probs, upsample_masks(encoded.masks, encoded))
        return Prediction(
            class_names=names, seen=seen_t, labels=labels, score=score, class_probs=class_probs, probs=probs,
            p_void=p_void, logits=logits, text=text, A=encoded.A, B=encoded.B, D=encoded.D, masks=encoded.masks,
            balancing=balancing, weights={"w_seen": w_seen, "w_new": w_new, "paper_abg": (a, b, g)},
            encoded=encoded, _map_probs=map_probs)

    def predict(self, image, class_names: Sequence[str], *, seen=None, **kwargs) -> Prediction:
        """``classify(encode(image), class_names)``."""
        enc_kw = {k: kwargs.pop(k) for k in ("keep_intermediates", "resize", "precision") if k in kwargs}
        return self.classify(self.encode(image, **enc_kw), class_names, seen=seen, **kwargs)
