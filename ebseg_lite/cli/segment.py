"""``ebseg-lite segment IMAGE --classes "cat,sofa"``: one image, your own vocabulary.

Writes an overlay PNG with a legend, a label map PNG (class index per pixel) and a JSON summary.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List

import numpy as np
from PIL import Image

from ebseg_lite.api import get_model
from ebseg_lite.cli.own_data import encoder_sources, preset_choices
from ebseg_lite.data.vocabularies import read_class_file
from ebseg_lite.io.files import atomic_write
from ebseg_lite.io.images import load_image
from ebseg_lite.viz.overlays import save_overlay
from ebseg_lite.vocabulary import parse_class_list


def _classes(args) -> List[str]:
    if args.classes_file:
        return read_class_file(args.classes_file)
    if not args.classes:
        raise ValueError("give the vocabulary with --classes \"cat,sofa\" or --classes-file FILE")
    return parse_class_list(args.classes)


#: the overlay PNG is upscaled (nearest neighbour, by a whole factor) until its short side reaches this
READABLE_SIDE = 384


def overlay_title(pred, source: str = "image", preset: str = "") -> str:
    """``"scene.png | toy | 4 classes (2 new) | official balancing"``."""
    n_new = int((~pred.seen).sum())
    parts = [Path(str(source)).name, preset, f"{len(pred.class_names)} classes ({n_new} new)",
             f"{pred.balancing} balancing"]
    return " | ".join(p for p in parts if p)


def write_outputs(pred, out: Path, image, *, title: str = None) -> dict:
    """Overlay PNG (the image with its regions blended and outlined next to the label map, upscaled to a
    readable size, a legend with seen/new and area per class, a title), label map PNG (class index per
    pixel, the image's size), JSON summary. Returns the summary."""
    out = Path(out)
    image = load_image(image)
    scale = max(1, -(-READABLE_SIDE // min(image.shape[-2:])))  # ceil: 128 px -> x3, 500 px -> x1
    save_overlay(out, image, pred.labels, pred.class_names, title=title or overlay_title(pred),
                 seen=pred.seen.tolist(), side_by_side=True, scale=scale, outline=max(1, scale))
    labels = pred.labels.cpu().numpy()
    label_path = out.with_name(out.stem + "_labels.png")
    dtype = np.uint8 if len(pred.class_names) <= 255 else np.uint16
    atomic_write(label_path, lambda tmp: Image.fromarray(labels.astype(dtype)).save(tmp, format="PNG"))
    areas = np.bincount(labels.ravel(), minlength=len(pred.class_names)) / labels.size
    summary = {
        "classes": [{"name": n, "seen": bool(s), "pixel_fraction": round(float(a), 6),
                     "max_query_prob": round(float(p), 6)}
                    for n, s, a, p in zip(pred.class_names, pred.seen.tolist(), areas,
                                          pred.class_probs[:, :-1].max(0).values.tolist())],
        "balancing": pred.balancing, "weights": pred.weights,
        "overlay": str(out), "labels": str(label_path), "size": list(labels.shape),
    }
    json_path = out.with_suffix(".json")
    atomic_write(json_path, lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1)))
    return summary


def cmd_segment(args) -> int:
    names = _classes(args)
    ckpt = None if args.checkpoint in (None, "none") else args.checkpoint
    preset, clip, sam = encoder_sources(args.preset, args.clip_pretrained, args.sam_checkpoint)
    model = get_model(preset, ckpt, device=args.device, clip_pretrained=clip, sam_checkpoint=sam)
    pred = model.predict(args.image, names, balancing=args.balancing)
    summary = write_outputs(pred, Path(args.out), args.image, title=overlay_title(pred, args.image, args.preset))
    present = sorted((c for c in summary["classes"] if c["pixel_fraction"] > 0), key=lambda c: -c["pixel_fraction"])
    for c in present:
        print(f"{c['name']:30s} {'seen' if c['seen'] else 'new ':4s} {100 * c['pixel_fraction']:6.2f}% of pixels")
    print(f"wrote {summary['overlay']}, {summary['labels']}, {Path(args.out).with_suffix('.json')}")
    return 0


def add_parser(sub) -> None:
    s = sub.add_parser("segment", help="segment an image with your own class names")
    s.add_argument("image")
    s.add_argument("--classes", help='"cat,sofa" (or "road, route; sofa, couch" for synonyms)')
    s.add_argument("--classes-file", help="one class per line")
    s.add_argument("--out", default="out.png", help="overlay PNG; *_labels.png and .json are written beside it")
    s.add_argument("--preset", default="vit_b", choices=preset_choices(),
                   help="a model preset, or the training preset you trained with (cpu_tiny, paper_b, toy)")
    s.add_argument("--checkpoint", default="released",
                   help='"released" (official EBSeg weights), a path, or "none" (random decoder)')
    s.add_argument("--clip-pretrained", default=None, help='open_clip tag ("openai"), file or hf-hub: name')
    s.add_argument("--sam-checkpoint", default=None, help="sam_vit_b_01ec64.pth (or env EBSEG_SAM_CHECKPOINT)")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    s.add_argument("--balancing", default="official", choices=["official", "paper"])
    s.set_defaults(func=cmd_segment)
