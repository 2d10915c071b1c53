"""Dataclass configs, one per concern, and the core presets ``tiny``, ``vit_b`` and ``vit_l``.

Values follow the official EBSeg configs (configs/ebseg/ebseg_{b,l}.yaml of slonetime/EBSeg) and
``../shared/ebseg-spec.md``. ``tiny`` is a random-initialised miniature for tests, CI and notebooks
on a CPU. Presets live in :mod:`ebseg_lite.registry`; the toy world registers ``toy`` itself
(:mod:`ebseg_lite.toyworld.presets`). A preset is a plain function returning an
:class:`EBSegConfig`; override fields with ``dataclasses.replace`` or the ``**overrides`` of
:func:`ebseg_lite.build_model`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from ebseg_lite import registry


@dataclass
class ClipConfig:
    """The frozen CLIP (open_clip). Token grids after ``feature_blocks`` (1-based) feed fusion;
    the mask-attention head runs the blocks after the last of them (stage 3)."""
    model_name: str = "ViT-B-16"           # open_clip architecture name
    pretrained: Optional[str] = None       # tag ("openai"), local file, or "hf-hub:org/repo"
    quick_gelu: bool = True                # OpenAI CLIP uses QuickGELU (official: open_clip 2.20 OpenAI arch)
    custom_cfg: Optional[Dict[str, Any]] = None  # open_clip model cfg for miniature CLIPs (tiny)
    tokenizer: str = "open_clip"           # "open_clip" or a registered tokenizer name ("toy")
    input_scale: float = 0.5               # p: CLIP sees the image scaled by p (0.5 -> 320 for 640)
    feature_blocks: Tuple[int, ...] = (3, 6, 9)
    surgery_start: Optional[int] = None    # first block of the Surgery stream; None -> layers // 6
    mean: Tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: Tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class SamConfig:
    """The frozen SAM image encoder (segment-anything ``ImageEncoderViT``, neck unused)."""
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    global_attn_indexes: Tuple[int, ...] = (2, 5, 8, 11)
    window_size: int = 14
    patch_size: int = 16
    pretrain_img_size: int = 1024          # pos_embed is 64x64 for 1024 / 16, resized to the input
    checkpoint: Optional[str] = None       # sam_vit_b_01ec64.pth; or env EBSEG_SAM_CHECKPOINT
    scales: Tuple[float, ...] = (4.0, 2.0, 1.0, 0.5)   # res2..res5 = strides 4, 8, 16, 32
    mean: Tuple[float, float, float] = (123.675, 116.28, 103.53)
    std: Tuple[float, float, float] = (58.395, 57.12, 57.375)
    #: False: the paper's "w/o SAM" ablation (table 7). SAM does not run; res2..res5 are zeros of
    #: its shapes, so eq. 1 leaves only the CLIP terms (res3..res5) and res2 carries nothing.
    enabled: bool = True
    #: SAM's block outputs are multiplied by this before eq. 1 (all four levels). 1 = the paper and the
    #: official code, which add SAM's raw residual stream. SAM itself never sees this scale (its neck
    #: starts with a bias-free 1x1 conv and a LayerNorm), so it is whatever pretraining left; where it
    #: is far above the LayerNorm-ed CLIP term's (std 1/sqrt(3) at initialisation), the sum is mostly
    #: SAM's and the decoder starts almost without CLIP's semantics. The ``toy`` preset sets the scale that
    #: balances the two (0.025, ``toyworld.presets.TOY_SAM_FEATURE_SCALE``); ``toyworld demo --sam-feature-scale``.
    #: Saved with trained weights; ``build_model(checkpoint=...)`` takes it from there.
    feature_scale: float = 1.0


@dataclass
class DecoderConfig:
    """Pixel decoder (Mask2Former MSDeformAttn encoder + FPN) and the AdaB transformer decoder."""
    conv_dim: int = 256
    mask_dim: int = 256
    enc_layers: int = 6
    enc_heads: int = 8
    enc_points: int = 4
    enc_ffn: int = 1024
    enc_init: str = "official"             # "official": xavier on every >1-dim encoder parameter | "torch"
    hidden_dim: int = 256
    num_queries: int = 100
    nheads: int = 8
    ffn_dim: int = 2048
    dec_layers: int = 9                    # + the initial queries = 10 supervised outputs
    gn_groups: int = 32


@dataclass
class InferenceConfig:
    """Test-time protocol and balancing (paper eq. 8-14; official weights by default)."""
    short_side: int = 640
    max_size: int = 2560
    size_divisibility: int = 32
    balancing: str = "official"            # "official" (geometric on probabilities) | "paper" (arithmetic on embeddings)
    w_seen: Tuple[float, float, float] = (0.21, 0.7, 0.09)   # A, B, D for seen classes
    w_new: Tuple[float, float, float] = (0.0, 0.7, 0.3)      # A, B, D for new classes
    paper_abg: Tuple[float, float, float] = (0.2, 0.7, 0.0)  # paper's a, b, g (eq. 9-13)
    surgery_bias: str = "official"         # "official" (aliased learned bias) | "plain" (what the code meant)
    precision: str = "fp32"                # "fp32" | "bf16" (CUDA autocast)


@dataclass
class EBSegConfig:
    clip: ClipConfig = field(default_factory=ClipConfig)
    sam: SamConfig = field(default_factory=SamConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    train_vocabulary: str = "coco_stuff_171"   # names against which seen/new is decided
    templates: str = "vild"
    preset: str = "custom"

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "EBSegConfig":
        def tup(x):  # JSON turns tuples into lists
            return tuple(x) if isinstance(x, list) else x
        sub = {"clip": ClipConfig, "sam": SamConfig, "decoder": DecoderConfig, "inference": InferenceConfig}
        kw = {}
        for k, v in d.items():
            if k in sub:
                kw[k] = sub[k](**{kk: tup(vv) for kk, vv in v.items()})
            else:
                kw[k] = v
        return cls(**kw)


TINY_CLIP_CFG: Dict[str, Any] = {
    "embed_dim": 64,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 64, "patch_size": 8, "width": 64, "layers": 6, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}


def tiny() -> EBSegConfig:
    """A miniature of every stage: forward on a 128x128 image in well under a second on a CPU."""
    return EBSegConfig(
        clip=ClipConfig(model_name="ebseg-tiny", custom_cfg=TINY_CLIP_CFG, feature_blocks=(2, 3, 4)),
        sam=SamConfig(embed_dim=64, depth=8, num_heads=2, global_attn_indexes=(1, 3, 5, 7),
                      window_size=4, patch_size=16, pretrain_img_size=128),
        decoder=DecoderConfig(conv_dim=64, mask_dim=64, enc_layers=2, enc_heads=4, enc_points=4,
                              enc_ffn=128, hidden_dim=64, num_queries=20, nheads=4, ffn_dim=128,
                              dec_layers=3, gn_groups=32),
        inference=InferenceConfig(short_side=128, max_size=512),
        preset="tiny",
    )


def vit_b() -> EBSegConfig:
    """EBSeg-B: open_clip ViT-B-16 + SAM ViT-B (the paper's main model)."""
    return EBSegConfig(preset="vit_b")


def vit_l() -> EBSegConfig:
    """EBSeg-L: open_clip ViT-L-14-336 (p = 0.7, 448 -> 32x32 tokens) + SAM ViT-B."""
    return EBSegConfig(
        clip=ClipConfig(model_name="ViT-L-14-336", input_scale=0.7, feature_blocks=(6, 12, 18)),
        inference=InferenceConfig(w_seen=(0.28, 0.6, 0.12), w_new=(0.0, 0.6, 0.4)),
        preset="vit_l",
    )


for _name, _fn in {"tiny": tiny, "vit_b": vit_b, "vit_l": vit_l}.items():
    registry.register("preset", _name, _fn)


def preset_names():
    """Every registered model preset (the toy world's ``toy`` among them)."""
    return registry.names("preset")


def get_preset(name: str) -> EBSegConfig:
    """A fresh :class:`EBSegConfig` for a registered preset name."""
    if not registry.has("preset", name):
        raise ValueError(f"unknown preset {name!r}; choose one of {preset_names()}")
    return registry.lookup("preset", name)()
