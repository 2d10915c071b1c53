"""ebseg_lite: a teachable re-implementation of EBSeg (CVPR 2024, open-vocabulary semantic
segmentation with image embedding balancing) on open_clip and segment-anything.

The package is a house of rooms (see the README's layout section):
``modeling/`` the paper's stages (one per file), ``inference/`` the predictor, ``losses/``, ``data/``,
``train/``, ``eval/``, ``io/``; the outer rooms ``viz/`` (pictures), ``notebook/`` (notebook helpers),
``toyworld/`` (the offline miniature, a plug-in) and ``cli/`` are never imported by the core.
"""
from ebseg_lite.api import get_model, segment
from ebseg_lite.builder import build_model, resolve_device
from ebseg_lite.config import EBSegConfig, get_preset
from ebseg_lite.inference.outputs import Encoded, Prediction
from ebseg_lite.inference.predictor import EBSegPredictor
from ebseg_lite.io.checkpoints import load_checkpoint, save_checkpoint
from ebseg_lite.io.files import CheckpointError, WeightsUnavailable
from ebseg_lite.io.official import load_official_state_dict
from ebseg_lite.losses.ssc import ssc_loss
from ebseg_lite.modeling.attn_bias import build_attn_bias, folded_per_head_bias, per_head_bias, pool_bias
from ebseg_lite.modeling.balance import balance, balance_embeddings, semantic_inference
from ebseg_lite.modeling.clip_dense import dense_clip_features, resize_pos_embed
from ebseg_lite.modeling.ebseg import EBSeg
from ebseg_lite.modeling.fusion import FeatureFusion
from ebseg_lite.modeling.mask_attention import clip_mask_attention
from ebseg_lite.modeling.mask_pool import mask_pool
from ebseg_lite.modeling.sam_features import sam_multiscale_features
from ebseg_lite.modeling.text import VILD_TEMPLATES, encode_class_names
from ebseg_lite.shapes import check_shape
from ebseg_lite.vocabulary import seen_mask

__all__ = [
    "CheckpointError", "EBSeg", "EBSegConfig", "EBSegPredictor", "Encoded", "FeatureFusion", "Prediction",
    "VILD_TEMPLATES", "WeightsUnavailable", "balance", "balance_embeddings", "build_attn_bias", "build_model",
    "check_shape", "clip_mask_attention", "dense_clip_features", "encode_class_names", "folded_per_head_bias",
    "get_model", "get_preset", "load_checkpoint", "load_official_state_dict", "mask_pool", "per_head_bias",
    "pool_bias", "resize_pos_embed", "resolve_device", "sam_multiscale_features", "save_checkpoint", "seen_mask",
    "segment", "semantic_inference", "ssc_loss",
]
__version__ = "0.1.0"
