"""``ebseg-lite benchmark``: time each inference stage, or training steps (``--train``)."""
from __future__ import annotations

import json
from pathlib import Path

from ebseg_lite.config import preset_names
from ebseg_lite.eval.benchmark import run
from ebseg_lite.train.bench import train_step_cost


def cmd_benchmark(args) -> int:
    if args.suite:
        from ebseg_lite.eval.benchmark_suite import run_suite, table
        res = run_suite(args.preset, args.size, args.repeat, args.out, text=not args.no_text,
                        with_toy=args.with_toy, with_tests=args.with_tests)
        print(table(res))
        if args.markdown:
            from ebseg_lite.eval.benchmark_suite import markdown
            flags = " ".join(f for f, on in (("--no-text", args.no_text), ("--with-toy", args.with_toy),
                                               ("--with-tests", args.with_tests)) if on)
            cmd = f"ebseg-lite benchmark --suite --preset {args.preset} --size {args.size} --repeat {args.repeat} {flags}"
            Path(args.markdown).write_text(markdown(res, cmd.strip()))
        return 0
    if args.train:
        res = train_step_cost(args.preset, batch=args.batch, size=args.size, steps=args.steps, device=args.device,
                              precision=args.precision, cache_features=args.cache_features)
        if args.out:
            Path(args.out).write_text(json.dumps(res, indent=1))
    else:
        res = run(args.preset, args.size, args.repeat, args.out)
    for k, v in res.items():
        print(f"{k:28s} {v:.3f}" if isinstance(v, float) else f"{k:28s} {v}")
    if not args.train:
        print("(encode against the libraries' own unmodified encoders, measured in the same run: "
              "ebseg-lite benchmark --suite)")
    return 0


def add_parser(sub) -> None:
    b = sub.add_parser("benchmark", help="time each inference stage (random weights)")
    b.add_argument("--preset", default="vit_b", choices=preset_names())
    b.add_argument("--size", type=int, default=640)
    b.add_argument("--repeat", type=int, default=2)
    b.add_argument("--train", action="store_true", help="time training steps instead (seconds/step, peak memory)")
    b.add_argument("--batch", type=int, default=2, help="--train: images per step")
    b.add_argument("--steps", type=int, default=3, help="--train: timed steps after one warm-up step")
    b.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    b.add_argument("--device", default="auto")
    b.add_argument("--cache-features", action="store_true", help="--train: frozen-feature cache on")
    b.add_argument("--suite", action="store_true",
                   help="every speed figure: encode vs the library encoders, classify, text (cold/warm)")
    b.add_argument("--no-text", action="store_true", help="--suite: skip the text-encoding part")
    b.add_argument("--with-toy", action="store_true", help="--suite: also time the toy demo")
    b.add_argument("--with-tests", action="store_true", help="--suite: also time the test suite")
    b.add_argument("--out", default=None, help="write the figures as JSON")
    b.add_argument("--markdown", default=None, help="--suite: write the README's speed section (Markdown) here")
    b.set_defaults(func=cmd_benchmark)
