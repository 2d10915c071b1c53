"""The vision-language model PnP-OVSS reads: BLIP's image-text matching (ITM) model, through
transformers' ``BlipForImageTextRetrieval`` (a ViT image tower; a BERT text encoder whose every layer
cross-attends to the image patches; an ITM head on the first text token).

Three ways to get one:

* :func:`load_blip_itm`: real weights, ``Salesforce/blip-itm-large-flickr`` (ViT-L/16, 12 text layers,
  12 heads; the checkpoint the official code loads through LAVIS), from the Hugging Face hub cache or
  a local folder. Offline and not cached, it fails at once with :class:`WeightsUnavailable` saying
  what to download and where.
* :func:`tiny_blip_config` + :func:`build_blip`: a random miniature for tests (seconds on a CPU).
* the toy BLIP pretrained on the toy world (``ebseg_lite.toyworld.toy_blip``, outside the core).

The prompt (official ``"A picture of " + " ".join(names)``) is tokenised word by word
(:func:`encode_prompt`) so that every class knows exactly which word pieces are its own. BERT's
tokeniser splits on white space before WordPiece, so this equals tokenising the whole string.
BLIP's ITM input starts with ``[ENC]`` instead of ``[CLS]`` (LAVIS/BLIP replace the first id; HF's
model leaves that to the caller): we do the same when the tokeniser knows ``[ENC]``.

Shapes: B batch, T text tokens, K classes, S input side, p patch size, h = w = S / p.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ebseg_lite.io.files import WeightsUnavailable

REAL_BLIP = "Salesforce/blip-itm-large-flickr"
#: BLIP's image normalisation (the OpenAI CLIP statistics, LAVIS ``blip_image_eval``).
BLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
BLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PROMPT_PREFIX = "A picture of"
#: the official input side: LAVIS ``blip_itm_large.yaml`` patched to 336 (21 x 21 patches of 16).
OFFICIAL_IMAGE_SIZE = 336


def load_blip_itm(name_or_path: Union[str, Path] = REAL_BLIP, *, device: str = "cpu"):
    """(model, tokenizer) of a BLIP ITM checkpoint: a local folder, or a hub name (cache first).

    Raises:
        WeightsUnavailable: not in the folder / cache and the hub cannot be reached.
    """
    from transformers import AutoTokenizer, BlipForImageTextRetrieval
    path = Path(str(name_or_path)).expanduser()
    local = path.is_dir()
    if not local and (path.suffix or str(name_or_path).startswith((".", "/", "~"))):
        raise WeightsUnavailable(f"BLIP folder {path} does not exist; it should hold config.json, "
                                 "model.safetensors and the tokenizer files of a BLIP ITM checkpoint")
    src = str(path) if local else str(name_or_path)
    attempts = [True] if local or os.environ.get("HF_HUB_OFFLINE") else [True, False]
    err: Optional[Exception] = None
    for only_local in attempts:
        try:
            model = BlipForImageTextRetrieval.from_pretrained(src, local_files_only=only_local)
            tok = AutoTokenizer.from_pretrained(src, local_files_only=only_local)
            return model.to(device).eval(), tok
        except (OSError, ValueError) as e:   # not cached / no network / incomplete folder
            err = e
    raise WeightsUnavailable(
        f"BLIP ITM weights {src!r} are not available here ({type(err).__name__}: {str(err)[:200]}). "
        f"On a machine with internet: `huggingface-cli download {REAL_BLIP} --local-dir <folder>` "
        "(about 1.8 GB), copy <folder> here and pass it as the BLIP path (or fill the hub cache, "
        "$HF_HOME/hub). Offline runs can use the toy BLIP of the toy world instead.") from err


def tiny_blip_config(*, vocab_size: int, image_size: int = 32, patch_size: int = 8, width: int = 32,
                     layers: int = 2, heads: int = 2, vision_layers: Optional[int] = None, max_text: int = 40,
                     pad_id: int = 0, cls_id: int = 2, sep_id: int = 3):
    """A ``BlipConfig`` with both towers at width ``width`` (``layers`` text layers, ``vision_layers``
    image layers, default the same): for tests and the toy BLIP."""
    from transformers import BlipConfig
    text = dict(vocab_size=vocab_size, hidden_size=width, encoder_hidden_size=width,
                intermediate_size=4 * width, num_hidden_layers=layers, num_attention_heads=heads,
                max_position_embeddings=max_text, pad_token_id=pad_id, bos_token_id=cls_id,
                sep_token_id=sep_id, eos_token_id=sep_id)
    vision = dict(hidden_size=width, intermediate_size=4 * width,
                  num_hidden_layers=layers if vision_layers is None else vision_layers,
                  num_attention_heads=heads, image_size=image_size, patch_size=patch_size,
                  initializer_range=0.02)   # HF's vision default (1e-10) assumes loading real weights
    return BlipConfig(text_config=text, vision_config=vision, projection_dim=width,
                      image_text_hidden_size=width)


def build_blip(config, *, seed: int = 0):
    """A randomly initialised ``BlipForImageTextRetrieval`` (eval mode) from ``config``."""
    from transformers import BlipForImageTextRetrieval
    torch.manual_seed(seed)
    return BlipForImageTextRetrieval(config).eval()


def grid_size(model) -> Tuple[int, int, int]:
    """(S, p, h): input side, patch size and patches per side of ``model``'s image tower."""
    vc = model.config.vision_config
    return vc.image_size, vc.patch_size, vc.image_size // vc.patch_size


def preprocess_image(image: Union[np.ndarray, torch.Tensor], size: int) -> torch.Tensor:
    """(H, W, 3) uint8 array or (3, H, W) uint8 tensor -> (1, 3, S, S) BLIP-normalised float
    (bicubic resize to a square, as LAVIS ``blip_image_eval``; aspect ratio not kept)."""
    x = torch.as_tensor(np.asarray(image)) if isinstance(image, np.ndarray) else image
    if x.ndim == 3 and x.shape[-1] == 3 and x.shape[0] != 3:
        x = x.permute(2, 0, 1)
    x = x.float().unsqueeze(0) / 255.0                                         # (1, 3, H, W)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    mean = torch.tensor(BLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(BLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@dataclass
class Prompt:
    """A tokenised PnP-OVSS prompt. ``spans[k] = (start, end)``: class k's word pieces are
    ``input_ids[0, start:end]``."""
    text: str
    input_ids: torch.Tensor          # (1, T) long
    attention_mask: torch.Tensor     # (1, T) long
    spans: List[Tuple[int, int]]
    class_names: List[str]


def _pieces(tokenizer, text: str) -> List[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def special_ids(tokenizer) -> Tuple[int, int]:
    """(first id, sep id): ``[ENC]`` when the tokeniser knows it (BLIP's ITM input), else ``[CLS]``."""
    first = tokenizer.cls_token_id
    enc = tokenizer.convert_tokens_to_ids("[ENC]")
    if enc is not None and enc != tokenizer.unk_token_id:
        first = enc
    return int(first), int(tokenizer.sep_token_id)


def encode_prompt(tokenizer, class_names: Sequence[str], *, prefix: str = PROMPT_PREFIX,
                  max_length: Optional[int] = None) -> Prompt:
    """``"<prefix> name_1 name_2 ..."`` as ids ``[ENC] prefix name_1 ... [SEP]`` with each class's span.

    Raises ``ValueError`` when the prompt does not fit ``max_length`` (the official code asks for
    ``max_length`` large enough: it sets 500) or a name has no word piece.
    """
    first, sep = special_ids(tokenizer)
    ids = [first] + _pieces(tokenizer, prefix)
    spans = []
    for name in class_names:
        p = _pieces(tokenizer, name)
        if not p:
            raise ValueError(f"class name {name!r} gives no word piece")
        spans.append((len(ids), len(ids) + len(p)))
        ids += p
    ids.append(sep)
    if max_length is not None and len(ids) > max_length:
        raise ValueError(f"the prompt has {len(ids)} tokens, more than the text encoder's {max_length}; "
                         "pass fewer classes per image")
    t = torch.tensor([ids], dtype=torch.long)
    return Prompt(f"{prefix} " + " ".join(class_names), t, torch.ones_like(t), spans, list(class_names))
