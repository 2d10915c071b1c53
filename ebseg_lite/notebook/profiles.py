"""What every notebook's first cells share: the profile, seeding, the model, the vocabulary, images.

Two profiles from one parameters cell (papermill can override ``PROFILE``):

* ``toy`` (default on a CPU): the toy world (``ebseg_lite.toyworld``), the shipped toy CLIP / SAM and a
  toy EBSeg trained on the seen classes (made and cached on first use when missing); seconds per cell.
* ``full`` (a GPU and real weights): EBSeg-B with the released checkpoint (``EBSEG_CHECKPOINT_DIR`` or
  the Hugging Face hub), ADE20K-150 names, your own images; datasets from ``EBSEG_DATA``.

    PROFILE = None                      # parameters cell: None = choose, or "toy" / "full"
    P = setup(PROFILE)
    model = load_model(P)
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch

PROFILE_ENV = "EBSEG_PROFILE"
REPO = Path(__file__).resolve().parents[1]


@dataclass
class Profile:
    name: str                  # "toy" | "full"
    device: str
    preset: str                # model preset: "toy" | "vit_b"
    class_names: List[str] = field(default_factory=list)
    seen: List[bool] = field(default_factory=list)
    seed: int = 0

    @property
    def is_toy(self) -> bool:
        return self.name == "toy"


def default_profile() -> str:
    """``$EBSEG_PROFILE`` if set, else ``full`` with a GPU, else ``toy``."""
    env = os.environ.get(PROFILE_ENV)
    if env:
        return env
    return "full" if torch.cuda.is_available() else "toy"


def seed_everything(seed: int = 0) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _inline_figures() -> None:
    """In Jupyter, show returned ``matplotlib.figure.Figure`` objects as pictures (the inline backend)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is not None and hasattr(ip, "run_line_magic"):
        ip.run_line_magic("matplotlib", "inline")


def setup(profile: Optional[str] = None, *, seed: int = 0) -> Profile:
    """Choose the profile, seed every RNG, show figures inline, and return the profile's vocabulary and device."""
    _inline_figures()
    name = profile or default_profile()
    if name not in ("toy", "full"):
        raise ValueError(f"profile must be 'toy' or 'full', got {name!r}")
    seed_everything(seed)
    if name == "toy":
        from ebseg_lite.toyworld import ToyWorld
        w = ToyWorld()
        return Profile("toy", "cpu", "toy", list(w.class_names), list(w.seen), seed)
    from ebseg_lite.data.benchmarks import benchmark_vocabulary
    vocab = benchmark_vocabulary("ade20k_150")  # the official prompts and seen mask (67 of 150)
    names, seen = list(vocab.names), list(vocab.seen_flags)
    return Profile("full", "cuda" if torch.cuda.is_available() else "cpu", "vit_b", names, seen, seed)


def load_model(p: Profile, *, trained: bool = True, ssc: bool = True):
    """The profile's model in eval mode.

    toy: the toy EBSeg trained on the seen classes (``trained=False``: frozen toy encoders and a
    random decoder). full: EBSeg-B with the released weights (offline: a message saying what to download).
    """
    if p.is_toy:
        if trained:
            from ebseg_lite.toyworld.experiments import toy_model
            return toy_model(ssc=ssc, seed=p.seed)
        from ebseg_lite.builder import build_model
        return build_model("toy", seed=p.seed)
    from ebseg_lite.api import get_model
    return get_model("vit_b", "released", device=p.device)


def sample_images(p: Profile, n: int = 4, *, seed: int = 99) -> List[Tuple[torch.Tensor, Optional[torch.Tensor]]]:
    """(image (3, H, W) uint8, label (H, W) or None) pairs: toy test-split scenes (every class equally
    often, so new classes show), or the shipped sample picture plus images from
    ``$EBSEG_NOTEBOOK_IMAGES`` (a folder) in the full profile."""
    if p.is_toy:
        from ebseg_lite.toyworld.experiments import held_out_scenes
        ds = held_out_scenes(n, seed=seed, split="test")
        return [(ds[i]["image"], ds[i]["label"]) for i in range(n)]
    from ebseg_lite.io.images import load_image
    paths = [REPO / "data_samples" / "scene.png"]
    folder = os.environ.get("EBSEG_NOTEBOOK_IMAGES")
    if folder:
        paths += sorted(q for q in Path(folder).iterdir() if q.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return [(load_image(q), None) for q in paths[:n]]
