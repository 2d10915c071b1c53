"""The predictor: encode an image once, classify it with any vocabulary many times.

As segment-anything's ``SamPredictor`` runs the image encoder once in ``set_image`` and the cheap
decoder per prompt, :class:`EBSegPredictor` runs the encoders, the AdaB decoder, the mask-attention
head and F_clip once (:meth:`encode`), then classifies the masks for a vocabulary and balancing
weights in milliseconds (:meth:`classify`): text embeddings (cached), class logits against
``[T; bg]`` (section 3.4), balancing (eq. 8-13, official or paper form) and the semantic map (eq. 14).
The seen/new rule (which classes are "seen") lives here too.

    predictor = ebseg_lite.build_model("toy")       # an EBSegPredictor; predictor.model is the nn.Module
    enc = predictor.encode(image)                   # the expensive part, once
    pred = predictor.classify(enc, ["cat", "sofa"]) # cheap, any vocabulary
"""
from __future__ import annotations

import contextlib
from typing import List, Optional, Sequence

import torch

from ebseg_lite.data.vocabularies import load_class_names, seen_for
from ebseg_lite.inference.outputs import Encoded, Prediction
from ebseg_lite.inference.text_cache import DiskTextCache, TextCache, text_tower_digest
from ebseg_lite.io.images import load_image, resize_shortest_edge
from ebseg_lite.modeling.balance import (balance, balance_embeddings, class_logits, official_map_probs,
                                         void_probability, with_background, with_void)
from ebseg_lite.modeling.ebseg import EBSeg
from ebseg_lite.modeling.sam_features import resize_level
from ebseg_lite.modeling.text import encode_class_names, get_templates
from ebseg_lite.vocabulary import validate_class_names, warn_unknown_words


class EBSegPredictor:
    """Inference around an :class:`~ebseg_lite.modeling.ebseg.EBSeg` module.

    Args:
        model: the EBSeg ``nn.Module`` (its weights are shared, not copied).
    """

    def __init__(self, model: EBSeg):
        self.model = model
        self._text_cache = TextCache()
        self._disk_cache = DiskTextCache()   # $EBSEG_CACHE_DIR (default ~/.cache/ebseg_lite); "off" disables
        self._tower_digest = (None, None)    # (weights_version, digest of the text tower)
        self._names_checked: set = set()     # vocabularies already checked for words the tokenizer cannot spell

    # ----------------------------------------------------------------- conveniences
    @property
    def cfg(self):
        return self.model.cfg

    @property
    def device(self) -> torch.device:
        return self.model.device

    def to(self, device) -> "EBSegPredictor":
        self.model.to(device)
        return self

    def eval(self) -> "EBSegPredictor":
        self.model.eval()
        return self

    def __repr__(self) -> str:
        return f"EBSegPredictor(preset={self.cfg.preset!r}, device={self.device})"

    @property
    def train_class_names(self) -> List[str]:
        """The training vocabulary that decides seen/new (the model's, else ``cfg.train_vocabulary``)."""
        if self.model.train_class_names is None:
            self.model.train_class_names = load_class_names(self.cfg.train_vocabulary)
        return self.model.train_class_names

    @train_class_names.setter
    def train_class_names(self, names: Sequence[str]):
        self.model.train_class_names = validate_class_names(names)

    def _autocast(self, precision: Optional[str]):
        precision = precision or self.cfg.inference.precision
        if precision == "fp32":
            return contextlib.nullcontext()
        if precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")

    # ----------------------------------------------------------------- image side
    @torch.no_grad()
    def encode(self, image, *, keep_intermediates: bool = True, resize: bool = True,
               precision: Optional[str] = None) -> Encoded:
        """Run the encoders, decoder, mask-attention head and F_clip once for one image.

        Args:
            image: a path, PIL image, (H, W, 3) uint8 array or (3, H, W) uint8 tensor.
            keep_intermediates: keep CLIP/SAM grids and per-layer masks for inspection.
            resize: resize to the test short side (640 for the paper presets) first.
        """
        model, inf = self.model, self.cfg.inference
        img = load_image(image)
        orig = tuple(img.shape[-2:])
        if resize:
            img, _ = resize_shortest_edge(img, inf.short_side, inf.max_size)
        # Switching modes walks every sub-module (about 35 ms per call for the toy model, a third of
        # its encode), so it happens only when some module is in training mode.
        was_training = model.training
        toggle = any(m.training for m in model.modules())
        if toggle:
            model.eval()
        try:
            with self._autocast(precision):
                out = model.forward_features(img[None], inference=True)
        finally:
            if toggle:
                model.train(was_training)
        dec = out["decoder"]
        f32 = lambda t: t[0].detach().float()
        enc = Encoded(
            image=img, orig_size=orig, input_size=tuple(img.shape[-2:]), padded_size=out["padded_size"],
            clip_grid=out["dense"].grid, A=f32(dec.A[-1]), B=f32(out["B"]), D=f32(out["D"]),
            masks=f32(dec.masks[-1]), F_clip=f32(out["F_clip"]), attn_bias=f32(out["attn_bias_pooled"]),
            A_per_layer=torch.stack([f32(a) for a in dec.A]),
        )
        if keep_intermediates:
            enc.masks_per_layer = torch.stack([f32(m) for m in dec.masks])
            enc.clip_feats = {k: f32(v) for k, v in out["dense"].feats.items()}
            fused = dict(out["fused"], res2=resize_level(out["fused"]["res2"], out["res2_scale"] or 1))
            enc.sam_feats = {k: f32(v) for k, v in fused.items()}             # res2 at stride 4
            enc.mask_features = f32(out["mask_features"])
        return enc

    # ----------------------------------------------------------------- vocabulary side
    def text_embeddings(self, class_names: Sequence[str]) -> torch.Tensor:
        """(K, C) cached text embeddings of a vocabulary (the preset's template set, 14 ViLD prompts)."""
        names = tuple(validate_class_names(class_names))
        templates = get_templates(self.cfg.templates)
        key = (names, templates, self.model.weights_version)
        if names not in self._names_checked:   # once per vocabulary, cached embeddings or not
            self._names_checked.add(names)
            warn_unknown_words(self.model.tokenizer, names)
        return self._text_cache.get(key, lambda: self._disk_text(names, templates))

    def _disk_text(self, names, templates) -> torch.Tensor:
        clip, tok = self.model.clip, self.model.tokenizer
        make = lambda: encode_class_names(clip, tok, names, templates)
        if self._disk_cache._folder() is None:
            return make()
        if self._tower_digest[0] != self.model.weights_version:
            self._tower_digest = (self.model.weights_version, text_tower_digest(clip))
        emb = self._disk_cache.get(weights=self._tower_digest[1], tokenizer=tok, names=names, templates=templates,
                                   make=make)
        return emb.to(self.device)

    def clear_text_cache(self) -> None:
        self._text_cache.clear()

    def resolve_seen(self, class_names: Sequence[str], seen=None) -> torch.Tensor:
        """(K,) bool: given explicitly, else the official mask for an official benchmark vocabulary and the
        synonym rule for any other list (:func:`ebseg_lite.data.vocabularies.seen_for`)."""
        if seen is None:
            return seen_for(class_names, self.train_class_names)
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
        if balancing not in ("official", "paper"):
            raise ValueError(f"balancing must be 'official' or 'paper', got {balancing!r}")
        w_seen, w_new = tuple(w_seen or inf.w_seen), tuple(w_new or inf.w_new)
        a, b, g = tuple(paper_abg or inf.paper_abg)
        text = self.text_embeddings(names)
        k = len(names)
        seen_t = self.resolve_seen(names, seen)
        cls_w = with_background(text, self.model.bg_embed.detach().float())  # (K+1, C)
        scale = self.model.clip.logit_scale.detach().float().exp()
        logits = {n: class_logits(getattr(encoded, n), cls_w, scale) for n in ("A", "B", "D")}  # (N, K+1)
        probs = {n: l[..., :k].softmax(-1) for n, l in logits.items()}                           # (N, K)
        p_void = void_probability(logits["A"])
        if balancing == "official":
            fused = balance(probs["A"], probs["B"], probs["D"], seen_t, w_seen=w_seen, w_new=w_new)
        else:
            fused = balance_embeddings(encoded.A, encoded.B, encoded.D, text, seen_t, a=a, b=b, g=g,
                                       logit_scale=scale)[0]
        class_probs = with_void(fused, p_void)           # (N, K+1)
        map_probs = official_map_probs(class_probs)      # (N, K)
        # labels and score are computed on first read (Prediction.labels / .score)
        return Prediction(
            class_names=names, seen=seen_t, class_probs=class_probs, probs=probs,
            p_void=p_void, logits=logits, text=text, A=encoded.A, B=encoded.B, D=encoded.D, masks=encoded.masks,
            balancing=balancing, weights={"w_seen": w_seen, "w_new": w_new, "paper_abg": (a, b, g)},
            encoded=encoded, map_probs=map_probs)

    def predict(self, image, class_names: Sequence[str], *, seen=None, **kwargs) -> Prediction:
        """``classify(encode(image), class_names)``."""
        enc_kw = {k: kwargs.pop(k) for k in ("keep_intermediates", "resize", "precision") if k in kwargs}
        return self.classify(self.encode(image, **enc_kw), class_names, seen=seen, **kwargs)
