"""The training recipe as a dataclass, with named presets (``../shared/ebseg-spec.md``, "Training recipe").

    paper_b    the official EBSeg-B recipe: AdamW 1e-4, wd 0.05, poly 0.9, 120k iterations, batch 16,
               640 crops, gradient clipping 0.01 (whole model), mixed precision, SSC weight 10
    paper_l    the same for EBSeg-L (lr 8e-5)
    cpu_tiny   the tiny model on fixture data on a CPU: seconds per step, for tests and CI
    toy        registered by the toy world plug-in: 128 px scenes, frozen encoders, cached features

A preset is a plain function; change fields with ``dataclasses.replace`` or ``--set key=value``.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

from ebseg_lite import registry


@dataclass
class TrainConfig:
    # ---- model
    preset: str = "vit_b"                    # ebseg_lite model preset
    clip_pretrained: Optional[str] = "openai"
    sam_checkpoint: Optional[str] = None     # else $EBSEG_SAM_CHECKPOINT
    model_overrides: Dict[str, Any] = field(default_factory=dict)   # e.g. {"decoder": {"num_queries": 50}}
    train_pos_embed: bool = True             # EBSeg trains CLIP's and SAM's positional embeddings
    # ---- data
    dataset: str = "coco_stuff_171_train"    # a benchmark name, "folder:/path", or "toyworld"
    data_root: Optional[str] = None          # else $EBSEG_DATA / $DETECTRON2_DATASETS
    augment: str = "official"                # "official" (resize 320..960, 640 crop, jitter, flip) | "none"
    crop_size: int = 640
    min_short: int = 320
    max_short: int = 960
    num_workers: int = 4
    # ---- optimisation (official: AdamW, poly 0.9, clip 0.01 over the whole model)
    max_iters: int = 120_000
    batch_size: int = 16                     # global batch = batch_size (split over processes) x grad_accum
    grad_accum: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.05
    weight_decay_rule: str = "official"      # "official" (fusion LayerNorm2d decayed) | "all_norms" (train/optim.py)
    betas: tuple = (0.9, 0.999)
    poly_power: float = 0.9
    clip_grad: float = 0.01                  # L2 norm of all gradients together; 0 = off
    precision: str = "bf16"                  # "fp32" | "bf16" | "fp16" (fp16 uses a GradScaler)
    # ---- losses (Mask2Former + SSC)
    ce_weight: float = 2.0 * 0.75
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1
    num_points: int = 12544
    ssc_weight: float = 10.0                 # lambda; 0 turns SSC off
    ssc_form: str = "official"               # "official" (MSE on s^2-scaled A) | "paper" (abs. diff. of cosines)
    ssc_empty: str = "official"              # image without matched segments: "official" (batch SSC -> 0) | "skip"
    ssc_on: str = "A"                        # embeddings under SSC (paper table 5): "A" (official) | "B" | "both"
    ssc_layers: int = 1                      # decoder outputs under SSC, counted from the last: 1 (official), 3; 0 = all
    train_sam: bool = False                  # paper table 7 "SAM trained": SAM's encoder weights train too
    # ---- bookkeeping
    seed: int = 0
    out_dir: str = "runs/ebseg"
    log_every: int = 20
    ckpt_every: int = 5000
    keep_checkpoints: int = 2                # numbered checkpoints kept besides last.pt
    cache_features: bool = False             # cache frozen CLIP/SAM features (needs train_pos_embed=False, augment="none")
    tensorboard: bool = True
    device: str = "auto"
    name: str = "custom"

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training config keys {unknown}")
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return cls(**d)

    def validate(self) -> "TrainConfig":
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be fp32, bf16 or fp16, got {self.precision!r}")
        if self.augment not in ("official", "none"):
            raise ValueError(f"augment must be 'official' or 'none', got {self.augment!r}")
        if self.ssc_form not in ("official", "paper"):
            raise ValueError(f"ssc_form must be 'official' or 'paper', got {self.ssc_form!r}")
        if self.ssc_empty not in ("official", "skip"):
            raise ValueError(f"ssc_empty must be 'official' or 'skip', got {self.ssc_empty!r}")
        if self.ssc_on not in ("A", "B", "both"):
            raise ValueError(f"ssc_on must be 'A', 'B' or 'both', got {self.ssc_on!r}")
        if self.ssc_layers < 0:
            raise ValueError(f"ssc_layers counts decoder outputs from the last (0 = all), got {self.ssc_layers}")
        if self.train_sam and self.cache_features:
            raise ValueError("train_sam trains SAM's encoder, so its features cannot be cached: set cache_features=False")
        if self.weight_decay_rule not in ("official", "all_norms"):
            raise ValueError(f"weight_decay_rule must be 'official' or 'all_norms', got {self.weight_decay_rule!r}")
        for name in ("max_iters", "batch_size", "grad_accum", "log_every", "ckpt_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.cache_features and (self.train_pos_embed or self.augment != "none"):
            raise ValueError("cache_features needs frozen positional embeddings (train_pos_embed=False) and "
                             "augment='none': otherwise the encoder features change from step to step")
        return self


def paper_b() -> TrainConfig:
    """The official EBSeg-B recipe on COCO-Stuff-171 (2 x A100-80G, about two days)."""
    return TrainConfig(preset="vit_b", precision="fp16", name="paper_b")  # SOLVER.AMP: fp16 + GradScaler


def paper_l() -> TrainConfig:
    """The official EBSeg-L recipe (lr 8e-5; 4 x A100-80G)."""
    return TrainConfig(preset="vit_l", clip_pretrained="openai", lr=8e-5, precision="fp16", name="paper_l")


def cpu_tiny() -> TrainConfig:
    """The tiny random model on small fixture data on a CPU (tests, CI)."""
    return TrainConfig(preset="tiny", clip_pretrained=None, dataset="folder", augment="none", crop_size=128,
                       max_iters=20, batch_size=2, lr=1e-3, precision="fp32", num_points=256, num_workers=0,
                       log_every=1, ckpt_every=10, tensorboard=False, device="cpu", name="cpu_tiny")


TRAIN_PRESETS: Dict[str, Callable[[], TrainConfig]] = {"paper_b": paper_b, "paper_l": paper_l, "cpu_tiny": cpu_tiny}
for _name, _fn in TRAIN_PRESETS.items():
    registry.register("train_preset", _name, _fn)


def train_preset_names():
    """Every registered training preset (plug-ins' included, e.g. the toy world's ``toy``)."""
    return registry.names("train_preset")


def get_train_preset(name: str) -> TrainConfig:
    if not registry.has("train_preset", name):
        raise ValueError(f"unknown training preset {name!r}; choose one of {train_preset_names()}")
    return registry.lookup("train_preset", name)()


def apply_sets(cfg: TrainConfig, sets) -> TrainConfig:
    """``["lr=3e-4", "max_iters=100"]`` -> fields replaced (values parsed as JSON when possible)."""
    types = {f.name: f.type for f in dataclasses.fields(cfg)}
    kw = {}
    for item in sets or []:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        if key not in types:
            raise ValueError(f"unknown training config key {key!r}; known: {sorted(types)}")
        try:
            val = json.loads(raw)
        except json.JSONDecodeError:
            val = raw
        kw[key] = val
    out = dataclasses.replace(cfg, **kw)
    if isinstance(out.betas, list):
        out.betas = tuple(out.betas)
    return out
