"""The toy world's presets: the ``toy`` model and training configs, its tokenizer, templates,
vocabularies and training dataset. :mod:`ebseg_lite.toyworld.plugin` registers them into the core
registries (:mod:`ebseg_lite.registry`). What is defined here:

* model preset ``toy``: a tiny CLIP and SAM pretrained on toy scenes (``ebseg-lite toyworld
  pretrain-clip`` / ``pretrain-sam``), weights in ``data_samples/toyworld`` (or ``$EBSEG_TOY_WEIGHTS``);
* training preset ``toy`` and training dataset ``toyworld`` (seen-class scenes only);
* tokenizer ``toy`` (the compact toy tokenizer), template set ``toy``, vocabularies ``toyworld`` and
  ``toyworld_seen``, the released ``toy`` model (the shipped trained toy EBSeg).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from ebseg_lite.config import ClipConfig, DecoderConfig, EBSegConfig, InferenceConfig, SamConfig
from ebseg_lite.io.files import WeightsUnavailable
from ebseg_lite.toyworld.prompts import TOY_TEMPLATES
from ebseg_lite.toyworld.tokenizer import ToyTokenizer, tokenizer_from_checkpoint
from ebseg_lite.toyworld.world import ToyWorld

#: The toy world's CLIP: 64 px images (8 x 8 tokens of patch 8), 12 narrow blocks (width 64, 4 heads)
#: so that EBSeg's structure fits as in ViT-B; a 256-row token table for the compact toy tokenizer
#: (:mod:`ebseg_lite.toyworld.tokenizer`), context 32 for four-object captions.
TOY_CLIP_CFG: Dict[str, Any] = {
    "embed_dim": 64,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 64, "patch_size": 8, "width": 64, "layers": 12, "head_width": 16},
    "text_cfg": {"context_length": 32, "vocab_size": 256, "width": 64, "heads": 4, "layers": 2},
}
#: Which CLIP blocks (1-based) feed the fusion; the mask-attention head runs the blocks after the last.
#: EBSeg-B takes 3, 6, 9 of ViT-B's 12 and runs its head over 10-12 (the last quarter). The toy CLIP's
#: tokens mix globally sooner, so the toy head runs the last half (7-12) after blocks 2, 4, 6: measured
#: (seeds 0-2, SSC on, the demo's 300 benchmark scenes, 500 steps at SAM scale 0.025, toy CLIP v2.2, toy SAM
#: of 2026-12-07) B alone 45.1 mIoU with the head over 7-12 against 31.3 over 10-12, balanced A+B+D 56.6
#: against 54.6 (``toyworld ablate --table 3`` has both).
TOY_FEATURE_BLOCKS: Tuple[int, ...] = (2, 4, 6)
#: ``SamAutomaticMaskGenerator`` settings for 128 px toy scenes: a point every 8 px; no predicted-IoU
#: filter (the shipped toy SAM's IoU head predicts -0.01 to 0.36 for 90% of the candidates, so SAM's 0.88
#: drops them all) and a loose stability filter. Chosen on 50 validation scenes (seeds 700_000_000 + i),
#: never on the recall test scenes: stability 0.5 -> 40.5% recall, 0.7 -> 40.0%, 0.85 -> 33.2%; a 0.3
#: IoU filter lowers each (the prototype's SAM, shipped until 2026-12-07: 52.6%, 47.4%, 36.8%).
TOY_SAM_GENERATOR: Dict[str, Any] = dict(points_per_side=16, pred_iou_thresh=0.0, stability_score_thresh=0.5,
                                         box_nms_thresh=0.7)

#: What the toy preset multiplies the toy SAM's block outputs by before eq. 1 (``SamConfig.feature_scale``;
#: the official code, and the ``vit_b`` / ``vit_l`` presets, add SAM's raw residual stream: 1). SAM's own
#: outputs do not depend on that stream's scale (a LayerNorm opens every block and follows the neck's
#: bias-free 1x1 conv), so its size is whatever pretraining left: the toy SAM's is 32 to 52 times eq. 1's
#: other addend at initialisation, and the decoder would start from features that are nearly all SAM's,
#: which knows no class.
#: The rule: the scale that gives both addends the same RMS at initialisation, to 2 significant figures
#: (``ebseg-lite toyworld fusion-scale``, :func:`ebseg_lite.toyworld.fusion_scale.balanced_scale`; a test
#: re-derives it). It is chosen from the two addends alone, not from any mIoU. Real SAM's ratio needs its
#: weights and is not measured here. What it changes: README, toy world, reason (2b).
TOY_SAM_FEATURE_SCALE = 0.025

TOY_WEIGHTS_ENV = "EBSEG_TOY_WEIGHTS"

#: The CPU kernels the shipped toy CLIP and SAM were made with (``torch.backends.cpu.get_cpu_capability()``).
#: torch picks its vectorised kernels by CPU (AVX2, AVX-512), and they round differently, so the
#: pretraining commands give the shipped files bit for bit only with ``ATEN_CPU_CAPABILITY=avx2`` set.
#: Measured on an AVX-512 CPU: the toy CLIP's first-step loss is 5.4798422 by default and 5.4798431 (the
#: file's) with avx2; one thread or two, torch 2.14.0 or 2.14.1, make no difference
#: (``data_samples/toyworld/README.md``).
SHIPPED_CPU_CAPABILITY = "AVX2"


def kernel_note() -> str:
    """One line for the pretraining commands: the torch build and CPU kernels in use, and what to set
    when they are not the kernels the shipped toy weights were made with."""
    cap = torch.backends.cpu.get_cpu_capability()
    note = f"torch {torch.__version__}, CPU kernels {cap}"
    if cap != SHIPPED_CPU_CAPABILITY:
        note += (f" (the shipped toy CLIP and SAM were made with {SHIPPED_CPU_CAPABILITY}: "
                 f"set ATEN_CPU_CAPABILITY={SHIPPED_CPU_CAPABILITY.lower()} to reproduce them bit for bit)")
    return note


def toy_weights_dir() -> Path:
    """Folder of the shipped toy CLIP / SAM weights: ``$EBSEG_TOY_WEIGHTS`` or ``<repo>/data_samples/toyworld``."""
    env = os.environ.get(TOY_WEIGHTS_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[2] / "data_samples" / "toyworld"


def toy_sam_config() -> SamConfig:
    """The toy SAM image encoder: patch 8 at 128 px (16 x 16 tokens), four blocks, all global
    attention, so res2..res5 are the four block outputs resized x2, x1, x0.5, x0.25 (strides 4..32)."""
    return SamConfig(embed_dim=96, depth=4, num_heads=4, global_attn_indexes=(0, 1, 2, 3), window_size=8,
                     patch_size=8, pretrain_img_size=128, scales=(2.0, 1.0, 0.5, 0.25))


def toy_decoder_config() -> DecoderConfig:
    return DecoderConfig(conv_dim=64, mask_dim=64, enc_layers=2, enc_heads=4, enc_points=4, enc_ffn=128,
                         hidden_dim=64, num_queries=20, nheads=4, ffn_dim=128, dec_layers=3, gn_groups=32)


def toy() -> EBSegConfig:
    """The toy world's EBSeg: CLIP and SAM pretrained on toy scenes, a small decoder; seen/new
    decided against the toy seen classes."""
    d = toy_weights_dir()
    return EBSegConfig(
        clip=ClipConfig(model_name="ebseg-toy", custom_cfg=TOY_CLIP_CFG, tokenizer="toy",
                        pretrained=str(d / "toy_clip.safetensors"), feature_blocks=TOY_FEATURE_BLOCKS),
        sam=dataclasses.replace(toy_sam_config(), checkpoint=str(d / "toy_sam.safetensors"),
                                feature_scale=TOY_SAM_FEATURE_SCALE),
        decoder=toy_decoder_config(),
        inference=InferenceConfig(short_side=128, max_size=512),
        train_vocabulary="toyworld_seen",
        templates="toy",
        preset="toy",
    )


def check_toy_weights(clip_path: Optional[str], sam_path: Optional[str]) -> None:
    """The toy preset's weights are made on a CPU; say how when they are missing."""
    cmds = {"toy_clip": "pretrain-clip", "toy_sam": "pretrain-sam"}
    for path in (clip_path, sam_path):
        if path and not os.path.isfile(path):
            cmd = next((c for k, c in cmds.items() if k in os.path.basename(path)), "pretrain-clip / pretrain-sam")
            raise WeightsUnavailable(
                f"toy preset weights not found at {path!r}. Make them on a CPU with\n"
                f"    ebseg-lite toyworld {cmd} --out {path} --seed 0\nor point {TOY_WEIGHTS_ENV} "
                "at a folder holding toy_clip.safetensors and toy_sam.safetensors.")


def encoder_figures(folder: Optional[Path] = None) -> Dict[str, Any]:
    """The toy encoders' own measurements, as their pretraining stored them in the files' metadata
    (``summary``): the toy CLIP's zero-shot accuracy on held-out single-object scenes, % of things
    and of stuff, and the toy SAM's automatic-mask recall (% of instances with a proposal of IoU >= 0.5).
    A figure the file does not hold is None."""
    import json
    from ebseg_lite.io.checkpoints import checkpoint_metadata
    folder = Path(folder or toy_weights_dir())
    summary = {}
    for name in ("toy_clip", "toy_sam"):
        path = folder / f"{name}.safetensors"
        try:
            summary[name] = json.loads(checkpoint_metadata(path).get("summary", "{}"))
        except (OSError, ValueError):
            summary[name] = {}
    pct = lambda d, k: None if d.get(k) is None else round(100 * float(d[k]), 1)
    return {"toy_clip_zero_shot": {"things": pct(summary["toy_clip"], "thing_acc"),
                                   "stuff": pct(summary["toy_clip"], "stuff_acc")},
            "sam_proposal_recall": pct(summary["toy_sam"], "proposal_recall"),
            "encoder_source": {n: str(folder / f"{n}.safetensors") for n in ("toy_clip", "toy_sam")}}


def toy_tokenizer(clip_cfg: Dict[str, Any], weights: Optional[str]):
    """The compact toy tokenizer, rebuilt from the weights file's metadata when there is one."""
    if weights and os.path.isfile(weights):
        return tokenizer_from_checkpoint(weights)
    text = clip_cfg["text_cfg"]
    return ToyTokenizer.from_world(context_length=text["context_length"], vocab_size=text["vocab_size"])


class SeenVocabulary(torch.utils.data.Dataset):
    """Training scenes labelled in the training vocabulary: the K_seen seen classes, ids remapped to
    0..K_seen-1 (as EBSeg trains with COCO-Stuff's 171 names only; new names are never in its softmax)."""

    def __init__(self, dataset, world: ToyWorld):
        self.dataset = dataset
        self.class_names = world.seen_names
        self.ignore_value = dataset.ignore_value
        lut = torch.full((256,), 255, dtype=torch.int64)
        for new_id, old_id in enumerate(i for i, s in enumerate(world.seen) if s):
            lut[old_id] = new_id
        self._lut = lut

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.dataset[i])
        if bool(((self._lut[item["label"]] == 255) & (item["label"] != 255)).any()):
            raise ValueError(f"{item.get('file_name')}: a training scene holds a new class")
        item["label"], item["class_names"] = self._lut[item["label"]], self.class_names
        return item


def toy_train_dataset(cfg):
    """``dataset="toyworld"`` for the trainer: 2000 seen-class scenes drawn from ``1000 + cfg.seed``."""
    world = ToyWorld()
    return SeenVocabulary(world.dataset(2000, seed=1000 + cfg.seed, split="train", size=cfg.crop_size, keep=True), world)


def toy_train_preset():
    """EBSeg-lite on the toy world's seen classes with the pretrained toy encoders, frozen features cached."""
    from ebseg_lite.train.config import TrainConfig
    return TrainConfig(preset="toy", clip_pretrained=None, dataset="toyworld", augment="none", crop_size=128,
                       train_pos_embed=False, cache_features=True, max_iters=400, batch_size=8, lr=1e-3,
                       weight_decay=0.05, precision="fp32", num_points=1024, num_workers=0, log_every=10,
                       ckpt_every=200, tensorboard=False, device="cpu", name="toy")
