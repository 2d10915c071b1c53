"""The prompt templates of the toy CLIP (its pretraining captions use the same phrasing)."""
from typing import Tuple

#: Prompts for the toy world's CLIP, matching its pretraining captions.
TOY_TEMPLATES: Tuple[str, ...] = (
    "a photo of a {}.",
    "there is a {} in the scene.",
    "a picture of a {}.",
)
