"""Runs the trainer on the fixture data in its own process (for the resume and torchrun tests).

    python tests/train_driver.py OUT --max-iters 6 --ckpt-every 3 [--hang-after 4] [--resume]
    torchrun --nproc_per_node=2 tests/train_driver.py OUT --max-iters 3

``--hang-after S`` prints "HANG" and sleeps once step S is done, so the test can kill the process
for real in the middle of a run (after the checkpoint at ckpt-every, before the end).
"""
import argparse
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import torch  # noqa: E402

torch.set_num_threads(1)

from train_fixtures import HalvesDataset  # noqa: E402
from ebseg_lite.train import Trainer, get_train_preset  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--max-iters", type=int, default=6)
p.add_argument("--ckpt-every", type=int, default=3)
p.add_argument("--batch-size", type=int, default=4)
p.add_argument("--grad-accum", type=int, default=1)
p.add_argument("--hang-after", type=int, default=0)
p.add_argument("--resume", action="store_true")
p.add_argument("--augment", default="official")
a = p.parse_args()

cfg = dataclasses.replace(get_train_preset("cpu_tiny"), out_dir=a.out, max_iters=a.max_iters, ckpt_every=a.ckpt_every,
                          batch_size=a.batch_size, grad_accum=a.grad_accum, crop_size=64, augment=a.augment,
                          num_points=128)


def hang(trainer, event, info):
    if event == "step" and info["step"] == a.hang_after:
        print("HANG", flush=True)
        time.sleep(600)


trainer = Trainer(cfg, dataset=HalvesDataset(8), resume=a.resume, progress=False, callbacks=[hang])
trainer.fit()
if trainer.world > 1:   # both ranks done before either tears its gloo connections down
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
sys.stdout.write(f"DONE {trainer.step}\n")  # one write: processes under torchrun share the pipe
sys.stdout.flush()
