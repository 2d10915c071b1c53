"""Dense CRF refinement (Krahenbuhl & Koltun 2011), the last step of PnP-OVSS's post-processing.

Through the maintained ``pydensecrf2`` package (Philipp Krahenbuhl's C++ mean-field code), as the
official code does through ``pydensecrf``. The energy over labels x_i of the H x W pixels is

    E(x) = sum_i -log P_i(x_i)
         + sum_{i<j} [x_i != x_j] ( w_g exp(-|p_i - p_j|^2 / 2 s_g^2)
                                  + w_b exp(-|p_i - p_j|^2 / 2 s_b^2 - |I_i - I_j|^2 / 2 s_rgb^2) )

with P = softmax over the channels of the blurred maps (official ``densecrf``: ``softmax(mask)`` then
``unary_from_softmax``), 10 mean-field iterations, Gaussian kernel s_g = 3 px, w_g = 7, bilateral
kernel s_b = 50 px, s_rgb = 5, w_b = 10 (the official constants).

Shapes: C channels (classes, background included), H x W pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class CrfConfig:
    iterations: int = 10
    gaussian_sxy: float = 3.0
    gaussian_compat: float = 7.0
    bilateral_sxy: float = 50.0
    bilateral_srgb: float = 5.0
    bilateral_compat: float = 10.0


def _densecrf():
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError as e:
        raise ImportError("the dense CRF needs the pydensecrf2 package: `pip install pydensecrf2` "
                          "(or turn the CRF off: PnPConfig(crf=False))") from e
    return dcrf


def dense_crf(image: np.ndarray, scores: torch.Tensor, cfg: CrfConfig = CrfConfig()) -> torch.Tensor:
    """Mean-field marginals Q (C, H, W) of the dense CRF on unaries ``-log softmax(scores)``.

    Args:
        image: (H, W, 3) uint8, the picture the bilateral kernel compares colours in.
        scores: (C, H, W) float maps (the blurred class maps); the label map is ``Q.argmax(0)``.
    """
    dcrf = _densecrf()
    c, h, w = scores.shape
    if image.shape[:2] != (h, w):
        raise ValueError(f"image is {image.shape[:2]} but the maps are {(h, w)}")
    probs = torch.softmax(scores.double(), 0).numpy()
    unary = np.ascontiguousarray(-np.log(np.clip(probs, 1e-5, 1.0)).reshape(c, -1).astype(np.float32))
    d = dcrf.DenseCRF2D(w, h, c)
    d.setUnaryEnergy(unary)
    d.addPairwiseGaussian(sxy=cfg.gaussian_sxy, compat=cfg.gaussian_compat)
    d.addPairwiseBilateral(sxy=cfg.bilateral_sxy, srgb=cfg.bilateral_srgb,
                           rgbim=np.ascontiguousarray(image.astype(np.uint8)), compat=cfg.bilateral_compat)
    q = np.asarray(d.inference(cfg.iterations), np.float32).reshape(c, h, w)
    return torch.from_numpy(q)
