"""GPU check (issue 15): paper-recipe training step time and peak memory, inference images/s.

    python benchmarks/gpu_check.py --out gpu_check.json        # one CUDA GPU, a few minutes

* training: ``vit_b``, batch 8, 640x640, bf16 and fp16, with and without gradient checkpointing
  through the frozen encoders (their positional embeddings train, so gradients still pass through
  them; checkpointing recomputes each frozen block in the backward pass instead of keeping it);
  target <= 24 GB peak per GPU at batch 8;
* inference: ``encode`` + ``classify`` (150 classes, labels read) images/s at 640, fp32 and bf16.
Random weights (costs do not depend on values). Prints one JSON object; nothing is asserted.
"""
from __future__ import annotations

import argparse
import functools
import json
import time

import torch


def train_cost(precision: str, checkpoint: bool, batch: int, size: int, steps: int) -> dict:
    from ebseg_lite.modeling import clip_dense, sam_features
    from ebseg_lite.modeling import ebseg as ebseg_module
    from ebseg_lite.train.bench import train_step_cost
    saved = (clip_dense.dense_clip_features, sam_features.sam_multiscale_features)
    if checkpoint:  # EBSeg calls both through their modules: switch checkpointing on for this run
        clip_dense.dense_clip_features = functools.partial(saved[0], checkpoint=True)
        sam_features.sam_multiscale_features = functools.partial(saved[1], checkpoint=True)
    torch.cuda.empty_cache()
    try:
        res = train_step_cost("vit_b", batch=batch, size=size, steps=steps, device="cuda", precision=precision)
    except torch.cuda.OutOfMemoryError as e:
        res = {"error": f"out of memory: {str(e)[:200]}"}
    finally:
        clip_dense.dense_clip_features, sam_features.sam_multiscale_features = saved
    res["gradient_checkpointing"] = checkpoint
    return res


@torch.no_grad()
def inference_rate(precision: str, size: int, n: int) -> dict:
    from ebseg_lite import build_model
    p = build_model("vit_b").to("cuda").eval()
    names = [f"class {i}" for i in range(150)]
    img = torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
    p.classify(p.encode(img, keep_intermediates=False, precision=precision), names).labels  # warm-up + text
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    for _ in range(n):
        p.classify(p.encode(img, keep_intermediates=False, precision=precision), names).labels
    torch.cuda.synchronize()
    dt = time.perf_counter() - t
    return {"precision": precision, "images_per_s": n / dt, "peak_cuda_gb": torch.cuda.max_memory_allocated() / 2 ** 30}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this script measures a GPU")
    res = {"device": torch.cuda.get_device_name(0), "train": [], "inference": []}
    for precision in ("bf16", "fp16"):
        for ckpt in (False, True):
            res["train"].append(train_cost(precision, ckpt, args.batch, args.size, args.steps))
            print(json.dumps(res["train"][-1]), flush=True)
    for precision in ("fp32", "bf16"):
        res["inference"].append(inference_rate(precision, args.size, args.images))
        print(json.dumps(res["inference"][-1]), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
