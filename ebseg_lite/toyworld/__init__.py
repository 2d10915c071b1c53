"""The toy world: procedural scenes, a toy CLIP and a toy SAM pretrained on them (issue #5).
See ``ebseg_lite/toyworld/README.md``."""
from ebseg_lite.toyworld.dataset import ToyDataset
from ebseg_lite.toyworld.scene import IGNORE, Scene
from ebseg_lite.toyworld.world import CAPTION_TEMPLATES, ToyWorld

__all__ = ["ToyWorld", "Scene", "ToyDataset", "CAPTION_TEMPLATES", "IGNORE"]
