"""Loading, resizing and padding images the way EBSeg's test pipeline does.

EBSeg (like FC-CLIP and Mask2Former) resizes a test image with detectron2's ``ResizeShortestEdge``
(short side 640, long side at most 2560, PIL bilinear) and pads the batch to a multiple of 32 so that
the SAM and CLIP token grids divide evenly. This file re-implements those two steps by hand (they are
small, and detectron2 is not a dependency) plus a forgiving ``load_image``.

Shapes follow ``ebseg_lite.shapes``: an image is (3, H, W) uint8 RGB, a batch (B, C, H, W) float.

Conversion rules of ``load_image`` (every input ends as (3, H, W) uint8 RGB):

* grayscale (PIL "L"/"1", arrays (H, W) or (H, W, 1)) -> replicated to three channels;
* alpha (PIL "RGBA"/"LA"/"PA", palette images with a transparent colour, arrays (H, W, 4)) ->
  composited onto a **white** background, ``out = a * rgb + (1 - a) * 255``;
* palette ("P") images -> expanded through their palette;
* 16-bit (PIL "I;16*", "I" with values in [0, 65535], uint16 arrays) -> ``round(x * 255 / 65535)``,
  i.e. scaled by the full 16-bit range, not by the image's own maximum (a dark image stays dark);
* float arrays / tensors (PIL "F" too) -> accepted when every value is in [0, 1] and scaled by 255;
  floats outside [0, 1] (say 0..255) are rejected with a message, because guessing the range is
  how silently wrong pictures happen;
* CMYK, YCbCr and other PIL modes -> ``PIL.Image.convert("RGB")``;
* EXIF orientation is applied to files and to PIL images that still carry the tag.
"""
from __future__ import annotations

import math
import os
import pathlib
from typing import Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray, torch.Tensor]

ACCEPTED_FORMS = (
    "accepted inputs: a file path (str or pathlib.Path); a PIL image of any mode; a numpy array "
    "(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) of dtype uint8, uint16 or float in [0, 1]; "
    "a torch tensor (3, H, W), (1, H, W), (4, H, W) or (H, W) of the same dtypes"
)


def load_image(image: ImageLike) -> torch.Tensor:
    """Load anything image-like as a (3, H, W) uint8 RGB tensor (rules in the module docstring).

    Args:
        image: a path, a PIL image, a numpy array (H, W[, c]) or a torch tensor ([c,] H, W).
    Returns:
        (3, H, W) uint8 tensor, RGB, contiguous, on the CPU.
    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: unreadable/corrupt file, unsupported shape/dtype/mode, empty image.
    """
    if isinstance(image, (str, os.PathLike)):
        image = _open_file(pathlib.Path(image))
    if isinstance(image, Image.Image):
        arr = _pil_to_array(image)
    elif isinstance(image, torch.Tensor):
        arr = _tensor_to_array(image)
    elif isinstance(image, np.ndarray):
        arr = image
    else:
        raise ValueError(f"cannot load an image from {type(image).__name__}; {ACCEPTED_FORMS}")
    rgb = _array_to_rgb(arr)  # (H, W, 3) uint8
    return torch.from_numpy(rgb.transpose(2, 0, 1).copy())  # (3, H, W), never shares the input's memory


def read_image(path) -> torch.Tensor:
    """A dataset's image file as (3, H, W) uint8 RGB: :func:`load_image` on a path (one reader for
    the model, the datasets and the CLI)."""
    return load_image(pathlib.Path(path))


def _open_file(path: pathlib.Path) -> Image.Image:
    if not path.exists():
        raise FileNotFoundError(f"image file not found: '{path}' (check the path and the working folder "
                                f"{os.getcwd()!r})")
    if path.is_dir():
        raise ValueError(f"'{path}' is a folder, not an image file; pass the path of one image")
    try:
        with Image.open(path) as im:
            im.load()  # decode now so that truncated files fail here, not later
            return ImageOps.exif_transpose(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"could not read '{path}' as an image ({type(err).__name__}: {err}); "
                         f"the file is corrupt or not an image format PIL knows (PNG, JPEG, ...)") from None


def _pil_to_array(im: Image.Image) -> np.ndarray:
    """PIL image of any mode -> numpy array (H, W[, c]) in a dtype ``_array_to_rgb`` accepts."""
    if im.width == 0 or im.height == 0:
        raise ValueError(f"the image is empty (size {im.width} x {im.height}); give an image with pixels")
    if im.getexif().get(0x0112, 1) != 1:  # orientation tag still present
        im = ImageOps.exif_transpose(im)
    mode = im.mode
    if mode.startswith("I;16") or mode == "F":
        return np.asarray(im)  # (H, W) uint16 / float32
    if mode == "I":
        arr = np.asarray(im)  # (H, W) int32
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ValueError(f"32-bit integer image with values in [{arr.min()}, {arr.max()}]: only 16-bit "
                             "data (0..65535) is supported; rescale it to uint8 first")
        return arr.astype(np.uint16)
    if mode == "P" or (mode in ("L", "RGB") and "transparency" in im.info):  # colour-key transparency
        mode = "RGBA" if "transparency" in im.info or getattr(im.palette, "mode", "") == "RGBA" else "RGB"
        im = im.convert(mode)
    elif mode in ("PA", "RGBa", "La"):
        im = im.convert("RGBA")
    elif mode == "1":
        im = im.convert("L")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        try:
            im = im.convert("RGB")
        except (ValueError, OSError) as err:
            raise ValueError(f"cannot convert a PIL image of mode {mode!r} to RGB ({err}); "
                             "convert it yourself, e.g. with PIL.ImageCms") from None
    return np.asarray(im)  # (H, W), (H, W, 2), (H, W, 3) or (H, W, 4) uint8


def _tensor_to_array(t: torch.Tensor) -> np.ndarray:
    """Channels-first tensor ([c,] H, W) -> channels-last numpy array (H, W[, c])."""
    t = t.detach().cpu()
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    if t.dim() == 3:
        if t.shape[0] not in (1, 3, 4):
            hint = " (it looks channels-last: use t.permute(2, 0, 1))" if t.shape[-1] in (1, 3, 4) else ""
            raise ValueError(f"tensor of shape {tuple(t.shape)} has {t.shape[0]} channels{hint}; {ACCEPTED_FORMS}")
        t = t.permute(1, 2, 0)
    elif t.dim() != 2:
        raise ValueError(f"tensor of shape {tuple(t.shape)} is not an image; {ACCEPTED_FORMS}")
    if t.dtype == getattr(torch, "uint16", None):  # torch >= 2.3 has a (limited) uint16
        return t.to(torch.int32).numpy().astype(np.uint16)
    return t.numpy()


def _array_to_rgb(arr: np.ndarray) -> np.ndarray:
    """Numpy array (H, W[, c]) of uint8/uint16/float -> (H, W, 3) uint8 RGB."""
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (2, 3, 4)):
        hint = " (it looks channels-first: use arr.transpose(1, 2, 0))" if arr.ndim == 3 and arr.shape[0] in (3, 4) else ""
        raise ValueError(f"array of shape {arr.shape} is not an image{hint}; {ACCEPTED_FORMS}")
    if arr.size == 0:
        raise ValueError(f"the image is empty (shape {arr.shape}); give an image with pixels")
    arr = _to_uint8(arr)
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=-1)  # (H, W, 3)
    if arr.shape[-1] == 2:  # gray + alpha
        arr = np.concatenate([np.repeat(arr[..., :1], 3, axis=-1), arr[..., 1:]], axis=-1)  # (H, W, 4)
    if arr.shape[-1] == 4:  # composite onto white: rgb * a + 255 * (1 - a), in integers
        rgb, a = arr[..., :3].astype(np.uint32), arr[..., 3:].astype(np.uint32)
        arr = ((rgb * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)
    return arr


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 2:  # uint16, either byte order
        return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)  # 65535 -> 255
    if np.issubdtype(arr.dtype, np.floating):
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        if np.isnan(arr).any() or lo < 0.0 or hi > 1.0:
            raise ValueError(f"float image with values in [{lo:g}, {hi:g}]: float images must lie in [0, 1]; "
                             "for 0..255 data cast to uint8 first (arr.astype(np.uint8))")
        return np.round(arr * 255.0).astype(np.uint8)
    raise ValueError(f"unsupported dtype {arr.dtype}; {ACCEPTED_FORMS}")


def shortest_edge_size(h: int, w: int, short: int = 640, max_size: Optional[int] = 2560) -> Tuple[int, int]:
    """Output (h', w') of detectron2's ``ResizeShortestEdge`` for an (h, w) image.

    The short side becomes ``short``; if the long side would then exceed ``max_size`` the whole image
    is scaled so that the long side is ``max_size`` instead. Sizes are rounded with ``int(x + 0.5)``.
    """
    if h <= 0 or w <= 0 or short <= 0:
        raise ValueError(f"sizes must be positive, got image {h} x {w} and short={short}")
    scale = short / min(h, w)
    new_h, new_w = (short, scale * w) if h < w else (scale * h, short)
    if max_size is not None and max(new_h, new_w) > max_size:
        cap = max_size / max(new_h, new_w)
        new_h, new_w = new_h * cap, new_w * cap
    return max(1, int(new_h + 0.5)), max(1, int(new_w + 0.5))


def resize_shortest_edge(image: ImageLike, short: int = 640,
                         max_size: Optional[int] = 2560) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """Resize like detectron2's ``ResizeShortestEdge`` (PIL bilinear), as EBSeg's test loader does.

    Args:
        image: (3, H, W) uint8 tensor, or anything ``load_image`` accepts.
        short: target length of the short side (640 in the paper's evaluation).
        max_size: cap on the long side (2560); ``None`` for no cap.
    Returns:
        resized: (3, h', w') uint8 tensor; the input tensor itself when (h', w') == (H, W).
        size: (h', w').
    """
    if not (isinstance(image, torch.Tensor) and image.dtype == torch.uint8 and image.dim() == 3
            and image.shape[0] == 3):
        image = load_image(image)  # (3, H, W) uint8
    h, w = image.shape[-2:]
    new_h, new_w = shortest_edge_size(h, w, short, max_size)
    if (new_h, new_w) == (h, w):
        return image, (h, w)
    pil = Image.fromarray(image.permute(1, 2, 0).cpu().numpy())
    out = np.asarray(pil.resize((new_w, new_h), Image.Resampling.BILINEAR))  # (h', w', 3)
    return torch.from_numpy(out.copy()).permute(2, 0, 1).contiguous(), (new_h, new_w)


def pad_to_multiple(x: torch.Tensor, multiple: int = 32,
                    value: float = 0.0) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """Pad a batch at the bottom and right so H and W become multiples of ``multiple``.

    Args:
        x: (B, C, H, W) tensor (normally float, already normalised).
        multiple: 32 in EBSeg (the SAM/CLIP patch grids must divide the padded size).
        value: fill value of the padding.
    Returns:
        padded: (B, C, H', W') with H' = ceil(H / multiple) * multiple (``x`` itself if no padding).
        size: the original (H, W), to crop predictions back.
    """
    if x.dim() != 4:
        raise ValueError(f"pad_to_multiple expects a (B, C, H, W) batch, got shape {tuple(x.shape)}; "
                         "add a batch axis with x[None]")
    if int(multiple) != multiple or multiple < 1:
        raise ValueError(f"multiple must be a positive integer, got {multiple!r}")
    h, w = x.shape[-2:]
    pad_h = math.ceil(h / multiple) * multiple - h
    pad_w = math.ceil(w / multiple) * multiple - w
    if pad_h == 0 and pad_w == 0:
        return x, (h, w)
    return F.pad(x, (0, pad_w, 0, pad_h), value=value), (h, w)  # (B, C, H', W')
