"""The training loop: AdamW + poly, clipping, mixed precision, accumulation, DDP, atomic resumable checkpoints.

    trainer = Trainer(get_train_preset("toy"))
    trainer.fit()              # or: ebseg-lite train --preset toy
    trainer.predictor          # the trained model, ready to encode / classify

Under ``torchrun --nproc_per_node=G`` each process takes ``batch_size / G`` samples of every micro-batch
(see ``data.py``), gradients are averaged by ``DistributedDataParallel``, and only rank 0 writes logs and
checkpoints. With the same global batch the result equals one process's, up to floating-point summation
order, when every process's images hold equally many segments; otherwise the class cross-entropy, a
weighted mean per process as in Mask2Former, differs slightly.
"""
from __future__ import annotations

import contextlib
import json
import time
import warnings
from pathlib import Path
from typing import Callable, List, Optional

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ebseg_lite import registry
from ebseg_lite.builder import build_model, resolve_device
from ebseg_lite.data.augment import short_side_choices
from ebseg_lite.data.datasets import FolderDataset, build_dataset
from ebseg_lite.distributed import init_distributed
from ebseg_lite.inference.predictor import EBSegPredictor
from ebseg_lite.io.checkpoints import module_of, save_checkpoint
from ebseg_lite.io.files import atomic_write
from ebseg_lite.losses.criterion import EBSegCriterion, LossWeights
from ebseg_lite.modeling.ebseg import EBSeg
from ebseg_lite.train.config import TrainConfig
from ebseg_lite.train.data import EpochOrder, StepSampler, TrainView, collate
from ebseg_lite.train.feature_cache import FeatureCache
from ebseg_lite.train.logger import RunLogger
from ebseg_lite.train.optim import build_optimizer, build_scheduler, clip_gradients
from ebseg_lite.train.state import load_state, prune_checkpoints, save_state
from ebseg_lite.train.step import compute_losses, sample_generators, semantic_targets


def build_train_dataset(cfg: TrainConfig):
    """A registered dataset (``"toyworld"``), ``"folder:/path"`` or a benchmark (``coco_stuff_171_train`` ...)."""
    if registry.has("train_dataset", cfg.dataset):  # a plug-in's dataset (the toy world's "toyworld")
        return registry.lookup("train_dataset", cfg.dataset)(cfg)
    if cfg.dataset.startswith("folder:"):
        return FolderDataset(cfg.dataset[len("folder:"):])
    return build_dataset(cfg.dataset, cfg.data_root)


def _build_model(cfg: TrainConfig, device) -> EBSeg:
    with warnings.catch_warnings():
        if cfg.preset in ("tiny", "toy"):
            warnings.simplefilter("ignore")
        return build_model(cfg.preset, clip_pretrained=cfg.clip_pretrained, sam_checkpoint=cfg.sam_checkpoint,
                           device=str(device), seed=cfg.seed, **cfg.model_overrides).model


class Trainer:
    """Train EBSeg-lite with a :class:`TrainConfig`.

    Args:
        dataset: a dataset with items like ``SemSegDataset``'s (else built from ``cfg.dataset``).
        model: an EBSeg to train (else built from ``cfg.preset``).
        resume: a checkpoint path, or True for ``out_dir/last.pt`` when it exists.
        callbacks: ``f(trainer, event, info)`` called on "step" and "checkpoint" (rank 0).
    """

    def __init__(self, cfg: TrainConfig, *, dataset=None, model=None, resume=False, progress: bool = True,
                 callbacks: Optional[List[Callable]] = None):
        self.cfg = cfg.validate()
        info = init_distributed(cfg.device)
        self.rank, self.world = info.rank, info.world_size
        device = resolve_device(info.device)
        if device.type == "cuda":
            device = torch.device("cuda", info.local_rank)
            torch.cuda.set_device(device)
        self.device = device
        if cfg.precision == "fp16" and device.type != "cuda":
            raise ValueError("precision fp16 needs CUDA; use bf16 or fp32 on a CPU")
        self.dataset = dataset if dataset is not None else build_train_dataset(cfg)
        self.class_names = list(self.dataset.class_names)
        if model is not None:
            model = module_of(model).to(device)  # an EBSeg module, or a predictor around one
        self.model: EBSeg = model if model is not None else _build_model(cfg, device)
        self.predictor = EBSegPredictor(self.model)  # text embeddings; evaluation after training
        self.predictor.train_class_names = self.class_names
        if not cfg.train_pos_embed:
            for p in (self.model.clip.visual.positional_embedding, self.model.sam.pos_embed):
                p.requires_grad_(False)
        if cfg.train_sam:  # table 7's "SAM trained": the whole SAM encoder trains (its pos_embed as configured)
            for n, p in self.model.sam.named_parameters():
                p.requires_grad_(n != "pos_embed" or cfg.train_pos_embed)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.model, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas,
                                         rule=cfg.weight_decay_rule)
        self.scheduler = build_scheduler(self.optimizer, max_iters=cfg.max_iters, power=cfg.poly_power)
        self.scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
        self.criterion = EBSegCriterion(
            len(self.class_names), no_object_weight=cfg.no_object_weight, num_points=cfg.num_points,
            weights=LossWeights(ce_A=cfg.ce_weight, ce_B=cfg.ce_weight, mask=cfg.mask_weight, dice=cfg.dice_weight))
        self.text = self.predictor.text_embeddings(self.class_names).to(device)  # (K, C), frozen
        self.cache = FeatureCache() if cfg.cache_features else None
        self.out = Path(cfg.out_dir)
        self.step = 0
        self.callbacks = list(callbacks or [])
        self.progress = progress and self.rank == 0
        self.history: List[dict] = []
        if resume:
            path = self.out / "last.pt" if resume is True else Path(resume)
            if resume is not True or path.exists():
                state = load_state(path, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                                   scaler=self.scaler, train_cfg=cfg)
                self.step = state["step"]
        self.ddp = self.model
        if self.world > 1:
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None)

    # ------------------------------------------------------------------ helpers
    def _autocast(self):
        if self.cfg.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.cfg.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _loader(self):
        cfg = self.cfg
        view = TrainView(self.dataset, augment=cfg.augment, crop_size=cfg.crop_size, seed=cfg.seed,
                         short_sides=short_side_choices(cfg.min_short, cfg.max_short))
        sampler = StepSampler(EpochOrder(len(self.dataset), cfg.seed), start_step=self.step, max_iters=cfg.max_iters,
                              batch_size=cfg.batch_size, grad_accum=cfg.grad_accum, rank=self.rank,
                              world_size=self.world)
        return DataLoader(view, batch_sampler=sampler, collate_fn=collate, num_workers=cfg.num_workers,
                          persistent_workers=False, pin_memory=self.device.type == "cuda")

    def _micro_step(self, batch, last: bool) -> dict:
        cfg, k = self.cfg, len(self.class_names)
        images = batch["image"].to(self.device, non_blocking=True)
        targets = [{k_: v.to(self.device) for k_, v in semantic_targets(l, k).items()} for l in batch["label"]]
        gens = sample_generators(cfg.seed, self.step, batch["position"], device=self.device)
        sync = contextlib.nullcontext() if (last or self.world == 1) else self.ddp.no_sync()
        with sync:
            with self._autocast():
                frozen = self.cache.batch(self.model, batch["index"], images) if self.cache is not None else None
                out = self.ddp(images, frozen)
            loss, logs = compute_losses(self.model, out, targets, self.text, self.criterion, ssc_weight=cfg.ssc_weight,
                                        ssc_form=cfg.ssc_form, ssc_empty=cfg.ssc_empty, ssc_on=cfg.ssc_on,
                                        ssc_layers=cfg.ssc_layers, generators=gens)
            self.scaler.scale(loss / cfg.grad_accum).backward()
        return logs

    def _reduce_logs(self, logs: dict) -> dict:
        if self.world == 1:
            return logs
        keys = sorted(logs)
        t = torch.tensor([logs[k] for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return {k: float(v) / self.world for k, v in zip(keys, t)}

    def save(self, final: bool = False) -> None:
        """Write ``last.pt`` and ``step_*.pt`` (rank 0), and ``model.safetensors`` at the end."""
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            kw = dict(model=self.model, optimizer=self.optimizer, scheduler=self.scheduler, scaler=self.scaler,
                      step=self.step, train_cfg=self.cfg, extra={"class_names": self.class_names})
            save_state(self.out / f"step_{self.step:07d}.pt", **kw)
            save_state(self.out / "last.pt", **kw)
            prune_checkpoints(self.out, self.cfg.keep_checkpoints)
            if final:
                save_checkpoint(self.model, self.out / "model.safetensors", trainable_only=True,
                                metadata={"class_names": json.dumps(self.class_names), "step": str(self.step)})
            for cb in self.callbacks:
                cb(self, "checkpoint", {"step": self.step})
        if self.world > 1:
            dist.barrier()

    # ------------------------------------------------------------------ the loop
    def fit(self) -> List[dict]:
        """Train from ``self.step`` to ``max_iters``; returns the logged rows of this call."""
        cfg = self.cfg
        logger = None
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write(self.out / "config.json", lambda tmp: Path(tmp).write_text(json.dumps(
                {"train": cfg.to_dict(), "model": self.model.cfg.to_dict(), "class_names": self.class_names}, indent=1)))
            logger = RunLogger(self.out, resume_step=self.step, tensorboard=cfg.tensorboard)
        self.model.train()
        bar = tqdm(total=cfg.max_iters, initial=self.step, desc="train", disable=not self.progress, dynamic_ncols=True)
        loader = iter(self._loader())
        tic = time.perf_counter()
        try:
            while self.step < cfg.max_iters:
                parts = [self._micro_step(next(loader), last=m == cfg.grad_accum - 1) for m in range(cfg.grad_accum)]
                self.scaler.unscale_(self.optimizer)
                gnorm = clip_gradients(self.params, cfg.clip_grad)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                lr = self.optimizer.param_groups[0]["lr"]
                self.scheduler.step()
                self.step += 1
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.max_iters:
                    logs = {k: sum(p[k] for p in parts) / len(parts) for k in parts[0]}
                    logs = self._reduce_logs(logs)
                    elapsed = time.perf_counter() - tic
                    row = {"step": self.step, "lr": lr, "grad_norm": float(gnorm), **logs,
                           "sec_per_step": elapsed / cfg.log_every,
                           "images_per_sec": cfg.log_every * cfg.batch_size * cfg.grad_accum / max(elapsed, 1e-9)}
                    tic = time.perf_counter()
                    self.history.append(row)
                    if logger is not None:
                        logger.log(row)
                    bar.set_postfix(loss=f"{logs['loss_total']:.3f}", img_s=f"{row['images_per_sec']:.1f}")
                if self.rank == 0:
                    for cb in self.callbacks:
                        cb(self, "step", {"step": self.step})
                if self.step % cfg.ckpt_every == 0 and self.step < cfg.max_iters:
                    self.save()
            self.save(final=True)
        finally:
            bar.close()
            if logger is not None:
                logger.close()
        return self.history
