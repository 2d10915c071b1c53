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
from ebseg_lite.config import preset_names
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


def write_outputs(pred, out: Path, image) -> dict:
    """Overlay PNG with legend (on the original ``image``), label map PNG (class index per pixel),
    JSON summary. Returns the summary."""
    out = Path(out)
    image = load_image(image)
    save_overlay(out, image, pred.labels, pred.class_names, title="ebseg_lite")
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
    model = get_model(args.preset, ckpt, device=args.device, clip_pretrained=args.clip_pretrained,
                      sam_checkpoint=args.sam_checkpoint)
    pred = model.predict(args.image, names, balancing=args.balancing)
    summary = write_outputs(pred, Path(args.out), args.image)
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
    s.add_argument("--preset", default="vit_b", choices=preset_names())
    s.add_argument("--checkpoint", default="released",
                   help='"released" (official EBSeg weights), a path, or "none" (random decoder)')
    s.add_argument("--clip-pretrained", default=None, help='open_clip tag ("openai"), file or hf-hub: name')
    s.add_argument("--sam-checkpoint", default=None, help="sam_vit_b_01ec64.pth (or env EBSEG_SAM_CHECKPOINT)")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    s.add_argument("--balancing", default="official", choices=["official", "paper"])
    s.set_defaults(func=cmd_segment)
