"""The ``ebseg-lite toyworld`` command group: pretrain the toy CLIP and SAM, train and evaluate.

    ebseg-lite toyworld pretrain-clip --out data_samples/toyworld/toy_clip.safetensors --steps 3000 --patch-dropout 0.5 --pool-pairs 8000 --seed 0
    ebseg-lite toyworld pretrain-sam --out data_samples/toyworld/toy_sam.safetensors --steps 1500 --seed 0
    ebseg-lite toyworld pretrain-blip --out data_samples/toyworld/toy_blip.safetensors --seed 0
    ebseg-lite toyworld demo --out toyworld_report --seeds 3
    ebseg-lite toyworld ablate --table all --seeds 3
    ebseg-lite toyworld length --steps 300,600,1000,1500 --seeds 3
    ebseg-lite toyworld fusion-scale --reports DIR ...

To add a command: write ``add_<name>(group)`` that calls ``group.add_parser(...)`` and sets
``func``, and list it in ``COMMANDS``.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from ebseg_lite.toyworld.experiments import ToyRun, run_demo, run_name
from ebseg_lite.toyworld.presets import TOY_SAM_FEATURE_SCALE, kernel_note, toy_weights_dir


def cmd_pretrain_clip(args) -> int:
    from ebseg_lite.toyworld.pretrain_clip import format_summary, pretrain_clip
    s = pretrain_clip(args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      pool_pairs=args.pool_pairs, eval_per_class=args.eval_per_class, max_minutes=args.max_minutes,
                      warmup=args.warmup, init=args.init, patch_dropout=args.patch_dropout)
    print(json.dumps(s, indent=1))
    print(f"toy CLIP: {s['steps']} steps in {s['train_seconds']:.0f} s; zero-shot {format_summary(s)}; wrote {args.out}\n"
          f"{kernel_note()}")
    return 0


def cmd_pretrain_sam(args) -> int:
    from ebseg_lite.toyworld.pretrain_sam import pretrain_sam
    s = pretrain_sam(args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                     prompts_per_image=args.prompts_per_image, eval_scenes=args.eval_scenes,
                     max_minutes=args.max_minutes)
    print(json.dumps(s, indent=1))
    print(f"toy SAM: {s['steps']} steps in {s['train_seconds']:.0f} s; point-prompt mIoU {100 * s['point_miou']:.1f}% "
          f"(baseline {100 * s['point_baseline_miou']:.1f}%), automatic-mask recall {100 * s['proposal_recall']:.1f}%; wrote {args.out}"
          f"\n{kernel_note()}")
    return 0


def add_pretrain_clip(group):
    p = group.add_parser("pretrain-clip", help="pretrain the toy CLIP contrastively on toy scenes + captions")
    p.add_argument("--out", required=True, help="safetensors file to write")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=128, help="even: photo + twin pairs")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup", type=int, default=100, help="linear lr warm-up steps")
    p.add_argument("--init", default=None, help="continue from this toy CLIP file (a second stage)")
    p.add_argument("--pool-pairs", type=int, default=8000, help="pre-drawn photo + twin pairs sampled from (uint8)")
    p.add_argument("--patch-dropout", type=float, default=0.5,
                   help="share of patch tokens dropped per training image (FLIP); 0 turns it off")
    p.add_argument("--eval-per-class", type=int, default=10, help="held-out single-object scenes per class")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and anneal the lr) by this wall time")
    p.set_defaults(func=cmd_pretrain_clip)


def add_pretrain_sam(group):
    p = group.add_parser("pretrain-sam", help="pretrain the toy SAM on toy instance masks with point prompts")
    p.add_argument("--out", required=True, help="safetensors file to write (the whole Sam)")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--prompts-per-image", type=int, default=12)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-scenes", type=int, default=50, help="held-out scenes for point-prompt mIoU and recall")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and anneal the lr) by this wall time")
    p.set_defaults(func=cmd_pretrain_sam)


def cmd_pretrain_blip(args) -> int:
    from ebseg_lite.toyworld.toy_pnp import make_toy_blip, search_existing
    if args.search_only:
        s = search_existing(args.out)["search"]
        print(f"label-free search on {args.out}: {s['best']}, reward {s['best_reward']} / {s['max_reward']}")
        return 0
    s = make_toy_blip(args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      pool_size=args.pool_size, word_itm=args.word_itm, search=not args.no_search)
    print(json.dumps({k: v for k, v in s.items() if k != "search"}, indent=1))
    if "search" in s:
        print(f"label-free search: {s['search']['best']}, reward {s['search']['best_reward']} / {s['search']['max_reward']}")
    print(f"toy BLIP: {s['steps']} steps in {s['train_seconds']:.0f} s; retrieval R@1 {100 * s['retrieval_r1']:.1f}%, "
          f"ITM accuracy {100 * s['itm_acc']:.1f}%; wrote {args.out}")
    return 0


def add_pretrain_blip(group):
    p = group.add_parser("pretrain-blip", help="pretrain the toy BLIP (ITC + ITM) for PnP-OVSS, then its label-free search")
    p.add_argument("--out", required=True, help="safetensors file to write")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pool-size", type=int, default=4000, help="pre-drawn scenes sampled from (uint8)")
    p.add_argument("--word-itm", type=float, default=1.0, help="weight of the word-level matching loss (0: BLIP's losses only)")
    p.add_argument("--no-search", action="store_true", help="skip the label-free layer / head / threshold search")
    p.add_argument("--search-only", action="store_true", help="only run the search on the existing --out file, store it there")
    p.set_defaults(func=cmd_pretrain_blip)


def _seed_range(args, command: str) -> tuple:
    """``--first-seed`` and ``--seeds`` as the tuple of training seeds (refusing a negative first seed or no seed)."""
    if args.first_seed < 0 or args.seeds < 1:
        raise SystemExit(f"ebseg-lite toyworld {command}: --first-seed must be >= 0 and --seeds >= 1 "
                         f"(got {args.first_seed} and {args.seeds})")
    return tuple(range(args.first_seed, args.first_seed + args.seeds))


def _scale_overrides(args, command: str):
    """``--sam-feature-scale`` as model overrides (None for the toy preset's own), refusing one that is not positive."""
    if not args.sam_feature_scale > 0:
        raise SystemExit(f"ebseg-lite toyworld {command}: --sam-feature-scale must be positive (got {args.sam_feature_scale})")
    return {"sam": {"feature_scale": args.sam_feature_scale}} if args.sam_feature_scale != TOY_SAM_FEATURE_SCALE else None


def cmd_demo(args) -> int:
    """``ebseg-lite toyworld demo``: the report folder, and optionally the shipped seed-0 models."""
    run = ToyRun(steps=args.steps, batch_size=args.batch_size, lr=args.lr, train_scenes=args.train_scenes,
                 test_scenes=args.test_scenes)
    seeds = _seed_range(args, "demo")
    if args.ship and 0 not in seeds:
        raise SystemExit("ebseg-lite toyworld demo: --ship copies the seed-0 models; leave out --first-seed "
                         f"{args.first_seed} or --ship")
    overrides = _scale_overrides(args, "demo")
    if args.ship and overrides:
        raise SystemExit("ebseg-lite toyworld demo: --ship stores models of the toy preset; leave out "
                         "--sam-feature-scale or --ship")
    metrics = run_demo(args.out, seeds=seeds, run=run, progress=not args.no_progress, workers=args.workers,
                       model_overrides=overrides)
    print((Path(args.out) / "table.txt").read_text())
    zs = metrics["toy_clip_zero_shot"]
    print(f"toy CLIP zero-shot: things {zs['things']}%, stuff {zs['stuff']}%; toy SAM proposal recall "
          f"{metrics['sam_proposal_recall']}% (measured at pretraining, stored in the weights files); "
          f"SHA-256 {', '.join(f'{k} {v}' for k, v in metrics['encoder_digest'].items())}")
    for tag, g in metrics.get("affinity_gap", {}).items():
        print(f"affinity gap |A cosine - text cosine| ({tag}): seen {g['seen']:.3f}, new {g['new']:.3f}")
    premise = next((r for r in metrics.get("readings", []) if r["claim"].startswith("A is the best")), None)
    if premise is not None and not premise["holds"]:
        print("A is not (yet) the best on seen classes at this length: `ebseg-lite toyworld length` follows A, B and D "
              "over longer trainings (notebook 08, section 4; README, toy world (2)); `ebseg-lite toyworld fusion-scale` "
              "shows how much louder SAM's term of the fusion is than CLIP's (notebook 02, section 5; README (2b))")
    print(f"report in {args.out}/ (metrics.json, table.txt, predictions.png, per_class_iou.png, affinity.png); "
          f"{metrics['seconds']:.0f} s")
    if args.ship:
        for tag in ("ssc", "no_ssc"):
            src = Path(args.out) / "runs" / f"{tag}_seed0" / "model.safetensors"
            dst = toy_weights_dir() / f"{run_name(tag == 'ssc', 0, run)}.safetensors"
            shutil.copyfile(src, dst)
            print(f"shipped {dst}")
    return 0


def _run_arguments(p, *, test_scenes: int = ToyRun.test_scenes) -> None:
    """The sizes and process options that demo, ablate and length share."""
    p.add_argument("--batch-size", type=int, default=ToyRun.batch_size)
    p.add_argument("--train-scenes", type=int, default=ToyRun.train_scenes)
    p.add_argument("--test-scenes", type=int, default=test_scenes)
    p.add_argument("--workers", type=int, default=None, help="training and evaluation processes (default: one per core)")
    p.add_argument("--sam-feature-scale", type=float, default=TOY_SAM_FEATURE_SCALE,
                   help="multiply SAM's features by this before the fusion (eq. 1); 1 = the official code, "
                        f"{TOY_SAM_FEATURE_SCALE:g} = the toy preset's (the addends' RMS balanced)")
    p.add_argument("--no-progress", action="store_true")


def add_demo(group) -> None:
    d = group.add_parser("demo", help="train on the seen classes, evaluate every way of classifying, write a report")
    d.add_argument("--out", default="toyworld_report")
    d.add_argument("--seeds", type=int, default=3, help="training seeds (the table gives mean +- std)")
    d.add_argument("--first-seed", type=int, default=0,
                   help="seeds FIRST .. FIRST+SEEDS-1 (default 0: the shipped models' seeds; others check the figures on fresh ones)")
    d.add_argument("--steps", type=int, default=ToyRun.steps)
    d.add_argument("--lr", type=float, default=ToyRun.lr, help="peak learning rate (AdamW, poly decay to the last step)")
    d.add_argument("--ship", action="store_true", help="copy the seed-0 models to data_samples/toyworld")
    _run_arguments(d)
    d.set_defaults(func=cmd_demo)


def cmd_compare(args) -> int:
    """``ebseg-lite toyworld compare``: every seed baseline and EBSeg-lite on the same toy scenes."""
    from ebseg_lite.toyworld.compare import run_compare
    given = {"methods": tuple(m.strip() for m in args.methods.split(",")) if args.methods else None,
             "test_seed": args.test_seed}
    result = run_compare(args.out, scenes=args.scenes, seeds=tuple(range(args.seeds)), progress=not args.no_progress,
                         **{k: v for k, v in given.items() if v is not None})
    print((Path(args.out) / "table.txt").read_text())
    print(f"wrote {args.out}/compare.json, table.txt, methods.png ({len(result['rows'])} methods)")
    return 0


def add_compare(group) -> None:
    c = group.add_parser("compare", help="EBSeg-lite, SimSeg and the dense-CLIP baselines on the same toy test scenes")
    c.add_argument("--out", default="toyworld_compare")
    c.add_argument("--test-seed", type=int, default=None, help="seed of the test scenes (default 99; never a training seed)")
    c.add_argument("--scenes", type=int, default=50)
    c.add_argument("--seeds", type=int, default=1, help="training seeds of the toy EBSeg (mean +- std for ebseg, simseg)")
    c.add_argument("--methods", default=None, help="comma-separated subset of the methods (default: all)")
    c.add_argument("--no-progress", action="store_true")
    c.set_defaults(func=cmd_compare)


def cmd_ablate(args) -> int:
    """``ebseg-lite toyworld ablate --table N``: the toy counterparts of the paper's tables 2-7."""
    from ebseg_lite.toyworld.ablation import format_table, parse_tables, run_ablation
    try:
        tables = parse_tables(args.table)
    except ValueError as e:
        raise SystemExit(f"ebseg-lite toyworld ablate: {e}")
    run = ToyRun(steps=args.steps, batch_size=args.batch_size, train_scenes=args.train_scenes,
                 test_scenes=args.test_scenes)
    result = run_ablation(args.out, tables=tables, seeds=tuple(range(args.seeds)), run=run, workers=args.workers,
                          probe_scenes=args.probe_scenes, progress=not args.no_progress,
                          model_overrides=_scale_overrides(args, "ablate"))
    for n in tables:
        print(format_table(n, result["tables"][str(n)]) + "\n")
    print(f"wrote {args.out}/ablation.json and table{{N}}.txt; {result['seconds']:.0f} s")
    return 0


def add_ablate(group) -> None:
    a = group.add_parser("ablate", help="toy versions of the paper's ablation tables 2-7 (trains what they need)")
    a.add_argument("--table", default="all", help="2..7, comma-separated, or 'all'")
    a.add_argument("--out", default="toyworld_ablation", help="report folder; finished runs in OUT/runs are reused")
    a.add_argument("--seeds", type=int, default=3)
    a.add_argument("--steps", type=int, default=ToyRun.steps)
    a.add_argument("--probe-scenes", type=int, default=60, help="scenes of table 3's ground-truth-mask probe")
    _run_arguments(a, test_scenes=300)
    a.set_defaults(func=cmd_ablate)


def cmd_length(args) -> int:
    """``ebseg-lite toyworld length``: seen / new mIoU of A, B, D and the balance against training length."""
    from ebseg_lite.toyworld.length import format_length, parse_steps, run_length
    try:
        steps = parse_steps(args.steps)
    except ValueError as e:
        raise SystemExit(f"ebseg-lite toyworld length: {e}")
    run = ToyRun(batch_size=args.batch_size, train_scenes=args.train_scenes, test_scenes=args.test_scenes)
    seeds = _seed_range(args, "length")
    result = run_length(args.out, steps=steps, seeds=seeds, run=run, workers=args.workers,
                        ssc_options=(True,) if args.ssc_only else (True, False), progress=not args.no_progress,
                        model_overrides=_scale_overrides(args, "length"))
    print(format_length(result))
    print(f"wrote {args.out}/length.json and length.png; {result['seconds']:.0f} s")
    return 0


def add_length(group) -> None:
    g = group.add_parser("length", help="A, B, D and the balance against training length (where A leads on seen classes)")
    g.add_argument("--steps", default="300,600,1000,1500", help="comma-separated training lengths")
    g.add_argument("--out", default="toyworld_length", help="report folder; finished runs in OUT/steps{N} are reused")
    g.add_argument("--seeds", type=int, default=3)
    g.add_argument("--first-seed", type=int, default=0, help="seeds FIRST .. FIRST+SEEDS-1")
    g.add_argument("--ssc-only", action="store_true", help="train with SSC only (half the models)")
    _run_arguments(g)
    g.set_defaults(func=cmd_length)


def cmd_fusion_scale(args) -> int:
    """``ebseg-lite toyworld fusion-scale``: how loud eq. 1's two addends are; the figures of scaled demo runs."""
    from ebseg_lite.toyworld import fusion_scale as fs
    missing = [r for r in args.reports if not (Path(r) / "metrics.json").is_file()]
    if missing:
        raise SystemExit(f"ebseg-lite toyworld fusion-scale: no metrics.json in {', '.join(missing)} "
                         "(make one with `ebseg-lite toyworld demo --sam-feature-scale S --out DIR`)")
    table = fs.addend_table(checkpoint=args.checkpoint, n_scenes=args.scenes)
    print(fs.format_table(table))
    print(f"SAM scale that gives both addends the same RMS: {fs.balanced_scale(table):.3f}")
    if args.reports:
        result = fs.collect(args.reports, table=table, out=args.out,
                            measured_on=args.checkpoint or "a fresh fusion (as training starts)")
        print(fs.format_runs(result) + (f"\nwrote {args.out}" if args.out else ""))
    return 0


def add_fusion_scale(group) -> None:
    f = group.add_parser("fusion-scale", help="RMS of SAM's and CLIP's terms of the fusion (eq. 1); collect scaled demo runs")
    f.add_argument("--checkpoint", default=None, help="a trained toy EBSeg (default: the fusion as training starts)")
    f.add_argument("--scenes", type=int, default=16, help="toy training scenes to measure on")
    f.add_argument("--reports", nargs="*", default=[], help="finished `toyworld demo` folders to summarise")
    f.add_argument("--out", default=None, help="write the summary (JSON) here")
    f.set_defaults(func=cmd_fusion_scale)


COMMANDS = [add_pretrain_clip, add_pretrain_sam, add_pretrain_blip, add_demo, add_compare, add_ablate, add_length,
            add_fusion_scale]


def add_parser(sub):
    """Register ``ebseg-lite toyworld ...`` on the main parser's subparsers."""
    t = sub.add_parser("toyworld", help="the toy world: pretrain the toy CLIP and SAM, train and evaluate EBSeg on it")
    group = t.add_subparsers(dest="toy_command", required=True)
    for add in COMMANDS:
        add(group)
    return group
