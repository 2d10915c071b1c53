"""The ``ebseg-lite`` command.

    ebseg-lite segment IMAGE --classes "cat,sofa" --out out.png [--preset vit_b] [--checkpoint PATH]
    ebseg-lite demo --out demo_out
    ebseg-lite download --preset vit_b
    ebseg-lite toyworld pretrain-clip --out data_samples/toyworld/toy_clip.safetensors
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np

REPO_SAMPLES = Path(__file__).resolve().parents[1] / "data_samples"


def _classes(args) -> List[str]:
    from .vocabulary import parse_class_list
    if args.classes_file:
        from .data.class_names import read_class_file
        return read_class_file(args.classes_file)
    if not args.classes:
        raise ValueError("give the vocabulary with --classes \"cat,sofa\" or --classes-file FILE")
    return parse_class_list(args.classes)


def write_outputs(pred, out: Path, image) -> dict:
    """Overlay PNG with legend (on the original ``image``), label map PNG (class index per pixel),
    JSON summary. Returns the summary."""
    from PIL import Image
    from .image_io import load_image
    from .visualize import save_overlay
    from .weights import atomic_write
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
    from .api import get_model
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


def cmd_demo(args) -> int:
    from .api import get_model
    scene = REPO_SAMPLES / "scene.png"
    if scene.is_file():
        image = scene
    else:
        from .samples import make_sample_scene
        image = make_sample_scene(seed=0)
    model = get_model("tiny", None, device=args.device)
    names = ["sky", "grass", "house", "tree", "ball"]
    pred = model.predict(image, names)
    out = Path(args.out) / "demo_overlay.png"
    write_outputs(pred, out, image)
    print("demo: the tiny preset has random weights until the toy world ships trained ones, so the map shows the "
          f"pipeline, not a good segmentation. Wrote {out}")
    return 0


def cmd_download(args) -> int:
    from .official import download_released
    print(download_released(args.preset))
    return 0


def cmd_benchmark(args) -> int:
    if args.train:
        import json
        from .train.bench import train_step_cost
        res = train_step_cost(args.preset, batch=args.batch, size=args.size, steps=args.steps, device=args.device,
                              precision=args.precision, cache_features=args.cache_features)
        if args.out:
            Path(args.out).write_text(json.dumps(res, indent=1))
    else:
        from .benchmark import run
        res = run(args.preset, args.size, args.repeat, args.out)
    for k, v in res.items():
        print(f"{k:28s} {v:.3f}" if isinstance(v, float) else f"{k:28s} {v}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ebseg-lite", description="EBSeg: open-vocabulary semantic segmentation")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("segment", help="segment an image with your own class names")
    s.add_argument("image")
    s.add_argument("--classes", help='"cat,sofa" (or "road, route; sofa, couch" for synonyms)')
    s.add_argument("--classes-file", help="one class per line")
    s.add_argument("--out", default="out.png", help="overlay PNG; *_labels.png and .json are written beside it")
    s.add_argument("--preset", default="vit_b", choices=["tiny", "toy", "vit_b", "vit_l"])
    s.add_argument("--checkpoint", default="released",
                   help='"released" (official EBSeg weights), a path, or "none" (random decoder)')
    s.add_argument("--clip-pretrained", default=None, help='open_clip tag ("openai"), file or hf-hub: name')
    s.add_argument("--sam-checkpoint", default=None, help="sam_vit_b_01ec64.pth (or env EBSEG_SAM_CHECKPOINT)")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    s.add_argument("--balancing", default="official", choices=["official", "paper"])
    s.set_defaults(func=cmd_segment)
    d = sub.add_parser("demo", help="run the pipeline on the sample picture (tiny preset)")
    d.add_argument("--out", default="demo_out")
    d.add_argument("--device", default="cpu")
    d.set_defaults(func=cmd_demo)
    g = sub.add_parser("download", help="fetch the released EBSeg checkpoint (needs internet)")
    g.add_argument("--preset", default="vit_b", choices=["vit_b", "vit_l"])
    g.set_defaults(func=cmd_download)
    from .evaluate import add_parser as add_eval
    add_eval(sub)
    from .toyworld.cli import add_parser as add_toyworld
    add_toyworld(sub)
    from .train.cli import add_parser as add_train
    add_train(sub)
    b = sub.add_parser("benchmark", help="time each inference stage (random weights)")
    b.add_argument("--preset", default="vit_b", choices=["tiny", "toy", "vit_b", "vit_l"])
    b.add_argument("--size", type=int, default=640)
    b.add_argument("--repeat", type=int, default=2)
    b.add_argument("--train", action="store_true", help="time training steps instead (seconds/step, peak memory)")
    b.add_argument("--batch", type=int, default=2, help="--train: images per step")
    b.add_argument("--steps", type=int, default=3, help="--train: timed steps after one warm-up step")
    b.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    b.add_argument("--device", default="auto")
    b.add_argument("--cache-features", action="store_true", help="--train: frozen-feature cache on")
    b.add_argument("--out", default=None, help="write the figures as JSON")
    b.set_defaults(func=cmd_benchmark)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    from .builder import WeightsUnavailable
    from .weights import CheckpointError
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (WeightsUnavailable, CheckpointError, FileNotFoundError, ValueError, KeyError) as e:
        print(f"ebseg-lite: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
