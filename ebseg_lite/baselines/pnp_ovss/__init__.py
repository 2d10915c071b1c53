"""PnP-OVSS (Luo et al., CVPR 2024): training-free segmentation from BLIP's image-text-matching
cross-attention, GradCAM, Salience DropOut, blur and a dense CRF. See :mod:`.pipeline`."""
from ebseg_lite.baselines.pnp_ovss.blip import (REAL_BLIP, build_blip, encode_prompt, load_blip_itm,
                                                tiny_blip_config)
from ebseg_lite.baselines.pnp_ovss.pipeline import PnPConfig, PnPOutput, PnPOVSS, to_vocabulary_ids

__all__ = ["PnPConfig", "PnPOutput", "PnPOVSS", "to_vocabulary_ids", "REAL_BLIP", "build_blip",
           "encode_prompt", "load_blip_itm", "tiny_blip_config"]
