"""The ``ebseg-lite toyworld`` command group (pretraining the toy CLIP and the toy SAM).

    ebseg-lite toyworld pretrain-clip --out data_samples/toyworld/toy_clip.safetensors --seed 0
    ebseg-lite toyworld pretrain-sam --out data_samples/toyworld/toy_sam.safetensors --seed 0

To add a command: write ``add_<name>(group)`` that calls ``group.add_parser(...)`` and sets
``func``, and list it in ``COMMANDS``.
"""
from __future__ import annotations

import json


def cmd_pretrain_clip(args) -> int:
    from .pretrain_clip import format_summary, pretrain_clip
    s = pretrain_clip(args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      pool_size=args.pool_size, eval_per_class=args.eval_per_class, max_minutes=args.max_minutes,
                      warmup=args.warmup, init=args.init)
    print(json.dumps(s, indent=1))
    print(f"toy CLIP: {s['steps']} steps in {s['train_seconds']:.0f} s; zero-shot {format_summary(s)}; wrote {args.out}")
    return 0


def cmd_pretrain_sam(args) -> int:
    from .pretrain_sam import pretrain_sam
    s = pretrain_sam(args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                     eval_scenes=args.eval_scenes, max_minutes=args.max_minutes)
    print(json.dumps(s, indent=1))
    print(f"toy SAM: {s['steps']} steps in {s['train_seconds']:.0f} s; point-prompt mIoU {100 * s['miou']:.1f}% "
          f"(baseline {100 * s['baseline_miou']:.1f}%); wrote {args.out}")
    return 0


def add_pretrain_clip(group):
    p = group.add_parser("pretrain-clip", help="pretrain the toy CLIP contrastively on toy scenes + captions")
    p.add_argument("--out", required=True, help="safetensors file to write")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup", type=int, default=100, help="linear lr warm-up steps")
    p.add_argument("--init", default=None, help="continue from this toy CLIP file (a second stage)")
    p.add_argument("--pool-size", type=int, default=12000, help="pre-drawn scenes sampled from (uint8)")
    p.add_argument("--eval-per-class", type=int, default=10, help="held-out single-object scenes per class")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and anneal the lr) by this wall time")
    p.set_defaults(func=cmd_pretrain_clip)


def add_pretrain_sam(group):
    p = group.add_parser("pretrain-sam", help="pretrain the toy SAM on toy instance masks with point prompts")
    p.add_argument("--out", required=True, help="safetensors file to write (image encoder weights)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-scenes", type=int, default=100, help="held-out scenes for point-prompt mIoU")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and anneal the lr) by this wall time")
    p.set_defaults(func=cmd_pretrain_sam)


def add_demo(group):
    from .pipeline import add_demo as add
    add(group)


COMMANDS = [add_pretrain_clip, add_pretrain_sam, add_demo]


def add_parser(sub):
    """Register ``ebseg-lite toyworld ...`` on the main parser's subparsers."""
    t = sub.add_parser("toyworld", help="the toy world: pretrain the toy CLIP and SAM, train and evaluate EBSeg on it")
    group = t.add_subparsers(dest="toy_command", required=True)
    for add in COMMANDS:
        add(group)
    return group
