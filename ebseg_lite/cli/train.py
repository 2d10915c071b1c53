"""``ebseg-lite train``: the trainer from the command line (works under ``torchrun``).

    ebseg-lite train --preset paper_b --data-root /data --out runs/ebseg_b            # one GPU
    torchrun --nproc_per_node=2 -m ebseg_lite.cli train --preset paper_b --out runs/ebseg_b
    ebseg-lite train --preset paper_b --out runs/ebseg_b --resume                      # continue last.pt
    ebseg-lite train --preset toy --set max_iters=100 --set ssc_weight=0               # any field
    ebseg-lite train --preset toy --dataset folder:my_data --out runs/mine --on-error skip  # own data
"""
from __future__ import annotations

import dataclasses

from ebseg_lite import registry

from ebseg_lite.cli.own_data import FOLDER, add_on_error, check_dataset_name, open_dataset, warn_random_encoders
from ebseg_lite.train.config import apply_sets, get_train_preset, train_preset_names


def cmd_train(args) -> int:
    import torch.distributed as dist
    from ebseg_lite.train.trainer import Trainer
    cfg = apply_sets(get_train_preset(args.preset), args.set)
    direct = {k: getattr(args, k) for k in ("dataset", "data_root", "out_dir", "max_iters", "batch_size",
                                            "grad_accum", "lr", "precision", "device", "seed")
              if getattr(args, k) is not None}
    if args.cache_features:
        direct.update(cache_features=True, train_pos_embed=False, augment="none")
    cfg = dataclasses.replace(cfg, **direct)
    resume = True if args.resume == "last" else args.resume
    dataset = None
    if (cfg.dataset.startswith(FOLDER) or args.on_error == "skip" or cfg.dataset == "folder") \
            and not registry.has("train_dataset", cfg.dataset):
        if cfg.dataset == "folder":
            raise ValueError(f"training preset {args.preset!r} trains on your own data: pass --dataset folder:DIR "
                             "(DIR/images, DIR/labels, DIR/classes.txt)")
        dataset = open_dataset(cfg.dataset, cfg.data_root, on_error=args.on_error)
    elif not registry.has("train_dataset", cfg.dataset):
        check_dataset_name(cfg.dataset)  # a bare folder gets the folder: hint
    warn_random_encoders(cfg)
    try:
        trainer = Trainer(cfg, dataset=dataset, resume=resume or False, progress=not args.no_progress)
        trainer.fit()
        if trainer.rank == 0:
            last = trainer.history[-1] if trainer.history else {}
            print(f"trained to step {trainer.step}; loss {last.get('loss_total', float('nan')):.4f}; "
                  f"weights in {cfg.out_dir}/model.safetensors")
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


def add_parser(sub):
    t = sub.add_parser("train", help="train EBSeg-lite (paper recipe, toy world, or your own data)")
    t.add_argument("--preset", default="paper_b", choices=train_preset_names())
    t.add_argument("--dataset", default=None, help='coco_stuff_171_train, "folder:/path/to/data" or toyworld')
    t.add_argument("--data-root", dest="data_root", default=None)
    t.add_argument("--out", dest="out_dir", default=None, help="run folder (checkpoints, logs)")
    t.add_argument("--max-iters", dest="max_iters", type=int, default=None)
    t.add_argument("--batch-size", dest="batch_size", type=int, default=None, help="global batch per micro-step")
    t.add_argument("--grad-accum", dest="grad_accum", type=int, default=None)
    t.add_argument("--lr", type=float, default=None)
    t.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default=None)
    t.add_argument("--device", default=None)
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--cache-features", action="store_true",
                   help="cache frozen CLIP/SAM features (freezes the positional embeddings, no augmentation)")
    t.add_argument("--resume", nargs="?", const="last", default=None,
                   help="continue from OUT/last.pt, or from the given checkpoint")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any TrainConfig field")
    add_on_error(t)
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=cmd_train)
