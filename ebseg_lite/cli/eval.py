"""``ebseg-lite eval``: mIoU overall / seen / new on a benchmark (:mod:`ebseg_lite.eval.loop`).

    ebseg-lite eval --dataset ade20k_150 --checkpoint EBSeg_base.pth --preset vit_b --device cuda
    torchrun --nproc_per_node 2 -m ebseg_lite.cli eval --dataset ade20k_150 --preset vit_b
    ebseg-lite eval --dataset folder:my_data_test --preset toy --checkpoint runs/mine/model.safetensors
    ebseg-lite eval --dataset ade20k_150 --preset vit_b --method sclip    # a seed baseline (ebseg_lite.baselines)
    ebseg-lite eval --dataset voc_20 --preset vit_b --method pnp-ovss --class-source clip
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch.distributed as dist

from ebseg_lite.api import get_model
from ebseg_lite.baselines import METHODS, build_method, sam_mask_generator
from ebseg_lite.cli.own_data import add_on_error, encoder_sources, open_dataset, preset_choices
from ebseg_lite.distributed import init_distributed
from ebseg_lite.eval.loop import evaluate
from ebseg_lite.eval.metrics import format_table
from ebseg_lite.io.files import WeightsUnavailable, atomic_write


def _mask_generator(args, device):
    """SAM's automatic masks for ``--method simseg-sam``: the toy SAM for toy presets, else a full SAM checkpoint."""
    if args.preset.startswith("toy"):
        from ebseg_lite.toyworld.compare import toy_mask_generator
        gen, why = toy_mask_generator()
        if gen is None:
            raise WeightsUnavailable(f"--method simseg-sam: {why}")
        return gen
    path = args.sam_checkpoint or os.environ.get("EBSEG_SAM_CHECKPOINT")
    if not path:
        raise WeightsUnavailable("--method simseg-sam needs SAM's full weights: --sam-checkpoint sam_vit_b_01ec64.pth "
                                 "(or EBSEG_SAM_CHECKPOINT)")
    return sam_mask_generator(path, device=device)


def _pnp_ovss(args, predictor):
    """``--method pnp-ovss``: the segmenter and the CLIP scorer for ``--class-source clip``.

    Toy presets use the shipped toy BLIP and toy CLIP; otherwise BLIP ITM large (``--blip``: a local
    folder or the hub name, offline: a message saying what to download) and the model's own CLIP."""
    from ebseg_lite.baselines.pnp_ovss.blip import REAL_BLIP, load_blip_itm
    from ebseg_lite.baselines.pnp_ovss.classes import ClipScorer
    from ebseg_lite.baselines.pnp_ovss.pipeline import PnPConfig, PnPOVSS
    from ebseg_lite.modeling.text import get_templates
    if args.preset.startswith("toy"):
        from ebseg_lite.toyworld.toy_pnp import toy_clip_scorer, toy_pnp_ovss
        return toy_pnp_ovss(args.blip), toy_clip_scorer()
    model, tok = load_blip_itm(args.blip or REAL_BLIP, device=str(predictor.device))
    clip = predictor.model.clip
    scorer = ClipScorer(clip, predictor.model.tokenizer, get_templates(predictor.cfg.templates),
                        clip.visual.image_size[0])
    # the benchmark vocabularies here carry no background class, so no pixel is left to one
    return PnPOVSS(model, tok, PnPConfig(background="never")), scorer


def cmd_eval(args) -> int:
    info = init_distributed(args.device)
    device = info.device
    try:
        ckpt = None if args.checkpoint in (None, "none") else args.checkpoint
        preset, clip, sam = encoder_sources(args.preset)  # a training preset name stands for its model
        model = get_model(preset, ckpt, device=device, clip_pretrained=clip, sam_checkpoint=sam)
        if args.method == "pnp-ovss":
            from ebseg_lite.baselines.pnp_ovss.evaluate import evaluate_pnp
            segmenter, scorer = _pnp_ovss(args, model)
            ds = open_dataset(args.dataset, args.data_root, on_error="skip" if args.skip_bad else args.on_error)
            seen = model.resolve_seen(list(ds.class_names)).numpy()
            res = evaluate_pnp(segmenter, ds, source=args.class_source, scorer=scorer, seen=seen, limit=args.limit)
            res["method"] = args.method
            if info.rank == 0:
                print(f"PnP-OVSS, image-level classes from: {args.class_source}")
                print(format_table(res, ds.class_names, max_rows=args.rows))
                if args.out:
                    atomic_write(args.out, lambda tmp: Path(tmp).write_text(json.dumps(res, indent=1, default=float)))
                    print(f"wrote {args.out}")
            return 0
        if args.method != "ebseg":
            if args.sliding:
                raise ValueError("--sliding is EBSeg-lite's option; the dense-CLIP methods slide by their own protocol")
            gen = _mask_generator(args, model.device) if args.method == "simseg-sam" else None
            model = build_method(args.method, model, mask_generator=gen)
        ds = open_dataset(args.dataset, args.data_root, on_error="skip" if args.skip_bad else args.on_error)
        res = evaluate(model, ds, limit=args.limit, balancing=args.balancing, sliding=args.sliding,
                       window=args.window, stride=args.stride)
        res["method"] = args.method
        res["num_skipped"] = getattr(ds, "num_skipped", 0)
        if info.rank == 0:
            print(format_table(res, ds.class_names, max_rows=args.rows))
            if args.out:
                atomic_write(args.out, lambda tmp: Path(tmp).write_text(json.dumps(res, indent=1, default=float)))
                print(f"wrote {args.out}")
    finally:
        if info.started:
            dist.destroy_process_group()
    return 0


def add_parser(sub):
    e = sub.add_parser("eval", help="mIoU (overall / seen / new) on a benchmark")
    e.add_argument("--dataset", required=True, help="e.g. ade20k_150, ade20k_847, pcontext_59, pcontext_459, voc_20, "
                   "or folder:DIR for your own data (DIR/images, DIR/labels, DIR/classes.txt)")
    e.add_argument("--data-root", default=None, help="detectron2-layout root (else $EBSEG_DATA / $DETECTRON2_DATASETS)")
    e.add_argument("--preset", default="vit_b", choices=preset_choices(),
                   help="a model preset, or the training preset you trained with (cpu_tiny, paper_b, toy)")
    e.add_argument("--checkpoint", default="released", help='"released", a path, or "none"')
    e.add_argument("--device", default="auto", help="auto, cpu, cuda (under torchrun: cuda:LOCAL_RANK)")
    e.add_argument("--balancing", default="official", choices=["official", "paper"])
    e.add_argument("--limit", type=int, default=None, help="first N images only")
    e.add_argument("--rows", type=int, default=20, help="per-class rows to print")
    e.add_argument("--skip-bad", action="store_true", help="the same as --on-error skip")
    add_on_error(e)
    e.add_argument("--sliding", action="store_true",
                   help="sliding-window inference (an option; the official protocol is whole-image)")
    e.add_argument("--window", type=int, default=None, help="sliding window side (default: the test short side)")
    e.add_argument("--stride", type=int, default=None, help="sliding stride (default: 2/3 of the window)")
    e.add_argument("--method", default="ebseg", choices=list(METHODS) + ["pnp-ovss"],
                   help="EBSeg-lite or a seed baseline on the same CLIP, vocabulary and evaluator")
    e.add_argument("--class-source", default="gt", choices=["gt", "clip"],
                   help="--method pnp-ovss: each image's class list from the ground truth or CLIP zero-shot")
    e.add_argument("--blip", default=None, help="--method pnp-ovss: BLIP ITM weights (a folder or hub name; "
                   "default Salesforce/blip-itm-large-flickr, toy presets: the shipped toy BLIP)")
    e.add_argument("--sam-checkpoint", default=None, help="full SAM weights for --method simseg-sam "
                   "(else $EBSEG_SAM_CHECKPOINT; toy presets: the toy SAM)")
    e.add_argument("--out", default=None, help="write the results as JSON")
    e.set_defaults(func=cmd_eval)
