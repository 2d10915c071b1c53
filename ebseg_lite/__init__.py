"""ebseg_lite: a teachable re-implementation of EBSeg (CVPR 2024, open-vocabulary semantic
segmentation with image embedding balancing) on open_clip and segment-anything."""
from .attn_bias import build_attn_bias, folded_per_head_bias, per_head_bias, pool_bias
from .api import get_model, segment
from .balance import balance, balance_embeddings, semantic_inference
from .builder import WeightsUnavailable, build_model, resolve_device
from .clip_dense import dense_clip_features, resize_pos_embed
from .config import EBSegConfig, get_preset
from .fusion import FeatureFusion
from .mask_attention import clip_mask_attention
from .mask_pool import mask_pool
from .model import EBSeg
from .outputs import Encoded, Prediction
from .sam_features import sam_multiscale_features
from .shapes import check_shape
from .ssc import ssc_loss
from .text import VILD_TEMPLATES, encode_class_names
from .vocabulary import seen_mask
from .weights import CheckpointError, load_checkpoint, save_checkpoint

__version__ = "0.1.0"
