"""The trainer: recipe pieces by hand, a run whose loss falls, exact resume after a real kill,
torchrun with two processes, gradient accumulation, the feature cache, bad checkpoints, the CLI."""
import dataclasses
import json
import math
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ebseg_lite.train import Trainer, get_train_preset, semantic_targets, ssc_term
from ebseg_lite.train.config import TrainConfig, apply_sets
from ebseg_lite.train.data import EpochOrder, micro_batch_positions
from ebseg_lite.train.optim import clip_gradients, no_decay_names, param_groups, poly_factor
from ebseg_lite.train.state import read_state
from ebseg_lite.io.files import CheckpointError
from train_fixtures import HalvesDataset

TESTS = Path(__file__).parent
PY = sys.executable
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def cfg_for(tmp_path, **kw) -> TrainConfig:
    base = dict(out_dir=str(tmp_path / "run"), crop_size=64, num_points=128, max_iters=4, batch_size=4, log_every=1)
    base.update(kw)
    return dataclasses.replace(get_train_preset("cpu_tiny"), **base)


def weights(path) -> dict:
    return load_file(str(path))


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


# ---------------------------------------------------------------- recipe pieces
def test_param_groups_follow_the_official_weight_decay_rule(tiny_model):
    no_wd = set(no_decay_names(tiny_model.model))
    assert "decoder.query_feat.weight" in no_wd and "decoder.level_embed.weight" in no_wd  # nn.Embedding
    assert "clip.visual.positional_embedding" in no_wd and "sam.pos_embed" in no_wd      # positional
    assert not any(n.startswith("fusion.") for n in no_wd)  # official: its LayerNorm2d is no torch norm type
    assert "pixel_decoder.level_embed" not in no_wd and "bg_embed" not in no_wd           # plain Parameters
    assert any("norm" in n for n in no_wd if n.startswith("pixel_decoder"))               # GroupNorm / LayerNorm
    groups = param_groups(tiny_model.model, 0.05)
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
    ids = [id(p) for g in groups for p in g["params"]]
    trainable = [p for p in tiny_model.model.parameters() if p.requires_grad]
    assert len(ids) == len(set(ids)) == len(trainable)                                      # each exactly once
    frozen = {id(p) for p in tiny_model.model.parameters() if not p.requires_grad}
    assert not frozen & set(ids)
    decayed = {id(p) for p in groups[0]["params"]}
    assert id(tiny_model.model.decoder.query_feat.weight) not in decayed
    assert id(tiny_model.model.pixel_decoder.mask_features.weight) in decayed  # a conv weight: decayed
    assert id(tiny_model.model.fusion.layers[0][0].weight) in decayed  # per-parameter table: test_official_quirks


def test_poly_schedule_by_hand():
    assert poly_factor(0, 100) == 1.0
    assert poly_factor(50, 100) == pytest.approx(0.5 ** 0.9)
    assert poly_factor(100, 100) == 0.0 and poly_factor(150, 100) == 0.0


def test_clip_gradients_limits_the_whole_model_norm():
    a, b = torch.zeros(3, requires_grad=True), torch.zeros(4, requires_grad=True)
    a.grad, b.grad = torch.full((3,), 3.0), torch.full((4,), 2.0)
    before = clip_gradients([a, b], 0.01)
    assert before.item() == pytest.approx(math.sqrt(27 + 16))
    after = torch.cat([a.grad, b.grad]).norm().item()
    assert after == pytest.approx(0.01, rel=1e-4)
    assert (a.grad / b.grad[0]).allclose(torch.full((3,), 1.5))  # direction kept


def test_semantic_targets_by_hand():
    label = torch.tensor([[0, 0, 255], [2, 2, 0]])
    t = semantic_targets(label, num_classes=3)
    assert t["labels"].tolist() == [0, 2]
    assert t["masks"].tolist() == [[[True, True, False], [False, False, True]],
                                   [[False, False, False], [True, True, False]]]
    with pytest.raises(ValueError, match=r"\[7\] are outside the 3-class"):
        semantic_targets(torch.tensor([[7]]), num_classes=3)


def test_ssc_term_official_and_paper_by_hand():
    A = torch.tensor([[[2.0, 0.0], [0.0, 2.0], [5.0, 5.0]]])  # (B=1, N=3, C=2), scale s = 2 on the matched rows
    text = torch.tensor([[1.0, 0.0], [0.6, 0.8]])            # K = 2, normalised
    targets = [{"labels": torch.tensor([1, 0])}]
    indices = [(torch.tensor([0, 1]), torch.tensor([1, 0]))]  # query 0 -> class 1, query 1 -> class 0
    # official: image matrix A A^T = [[4, 0], [0, 4]]; text matrix of classes (1, 0) = [[1, .6], [.6, 1]]
    official = ((torch.tensor([[4.0, 0.0], [0.0, 4.0]]) - torch.tensor([[1.0, 0.6], [0.6, 1.0]])) ** 2).mean()
    assert ssc_term(A, targets, indices, text).item() == pytest.approx(official.item())
    paper = (torch.tensor([[0.0, 0.6], [0.6, 0.0]])).mean()  # |I - T| with cosine I = identity
    assert ssc_term(A, targets, indices, text, form="paper").item() == pytest.approx(paper.item())


def test_epoch_order_and_process_split():
    order = EpochOrder(5, seed=3)
    assert sorted(order(p) for p in range(5)) == list(range(5))      # an epoch visits every sample once
    assert sorted(order(p) for p in range(5, 10)) == list(range(5))
    one = micro_batch_positions(2, 1, batch_size=4, grad_accum=2, rank=0, world_size=1)
    two = [micro_batch_positions(2, 1, batch_size=4, grad_accum=2, rank=r, world_size=2) for r in (0, 1)]
    assert one == two[0] + two[1] == [20, 21, 22, 23]
    with pytest.raises(ValueError, match="divisible"):
        micro_batch_positions(0, 0, batch_size=3, grad_accum=1, rank=0, world_size=2)


def test_config_validation_and_sets():
    with pytest.raises(ValueError, match="cache_features"):
        TrainConfig(cache_features=True).validate()
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp8").validate()
    cfg = apply_sets(TrainConfig(), ["lr=3e-4", "max_iters=10", "dataset=toyworld", "betas=[0.9, 0.99]"])
    assert (cfg.lr, cfg.max_iters, cfg.dataset, cfg.betas) == (3e-4, 10, "toyworld", (0.9, 0.99))
    with pytest.raises(ValueError, match="unknown training config key"):
        apply_sets(TrainConfig(), ["learning_rate=1"])
    assert TrainConfig.from_dict(json.loads(cfg.to_json())) == cfg


# ---------------------------------------------------------------- a real run
def test_short_run_loss_falls_and_logs(tmp_path):
    cfg = cfg_for(tmp_path, max_iters=30, batch_size=4, ckpt_every=10, keep_checkpoints=2)
    hist = Trainer(cfg, dataset=HalvesDataset(8), progress=False).fit()
    losses = [h["loss_total"] for h in hist]
    assert len(losses) == 30 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5, losses
    run = Path(cfg.out_dir)
    rows = [json.loads(l) for l in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 31))
    for key in ("loss_ce_A", "loss_ce_B", "loss_mask", "loss_dice", "loss_ssc", "loss_ce_A_0", "loss_dice_2", "lr"):
        assert key in rows[0]
    assert rows[-1]["lr"] < rows[0]["lr"]  # poly decay
    header = (run / "log.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "step" and "loss_total" in header
    assert sorted(p.name for p in run.glob("step_*.pt")) == ["step_0000020.pt", "step_0000030.pt"]  # pruned to 2
    state = read_state(run / "last.pt")
    assert state["step"] == 30 and set(state) >= {"optimizer", "scheduler", "scaler", "rng", "train_config"}


def test_total_is_the_weighted_sum_of_the_logged_terms(tmp_path):
    cfg = cfg_for(tmp_path, max_iters=1, ssc_weight=10.0)
    row = Trainer(cfg, dataset=HalvesDataset(4), progress=False).fit()[-1]
    w = {"loss_ce_A": 1.5, "loss_ce_B": 1.5, "loss_mask": 5.0, "loss_dice": 5.0}
    expect = sum(w[k if k in w else k.rsplit("_", 1)[0]] * v for k, v in row.items()
                 if k.startswith(("loss_ce", "loss_mask", "loss_dice"))) + 10.0 * row["loss_ssc"]
    assert row["loss_total"] == pytest.approx(expect, rel=1e-5)
    assert sum(k.startswith("loss_dice") for k in row) == 4  # 3 decoder layers + the initial queries


def test_saved_weights_reload_into_build_model(tmp_path, rgb_image):
    cfg = cfg_for(tmp_path, max_iters=2)
    tr = Trainer(cfg, dataset=HalvesDataset(4), progress=False)
    tr.fit()
    import ebseg_lite
    again = ebseg_lite.build_model("tiny", checkpoint=str(Path(cfg.out_dir) / "model.safetensors"))
    names = HalvesDataset.class_names
    tr.model.eval()
    trained, reloaded = tr.predictor.predict(rgb_image, names), again.predict(rgb_image, names)
    assert torch.equal(trained.A, reloaded.A) and torch.equal(trained.labels, reloaded.labels)
    assert again.train_class_names == names  # seen/new follows the vocabulary the weights were trained on
    assert again.resolve_seen(["green paint", "sofa"]).tolist() == [True, False]


def test_gradient_accumulation_equals_the_large_batch(tmp_path):
    # every fixture image holds two segments, so per-micro-batch normalisers add up to the large batch's
    big = cfg_for(tmp_path / "big", max_iters=3, batch_size=4, grad_accum=1)
    acc = cfg_for(tmp_path / "acc", max_iters=3, batch_size=2, grad_accum=2)
    Trainer(big, dataset=HalvesDataset(8), progress=False).fit()
    Trainer(acc, dataset=HalvesDataset(8), progress=False).fit()
    a, b = weights(Path(big.out_dir) / "model.safetensors"), weights(Path(acc.out_dir) / "model.safetensors")
    assert max_diff(a, b) < 1e-5


def test_bf16_autocast_trains_on_cpu(tmp_path):
    hist = Trainer(cfg_for(tmp_path, max_iters=2, precision="bf16"), dataset=HalvesDataset(4), progress=False).fit()
    assert all(math.isfinite(h["loss_total"]) for h in hist)


def test_feature_cache_gives_the_same_run(tmp_path):
    common = dict(max_iters=4, batch_size=4, train_pos_embed=False, augment="none")
    plain = Trainer(cfg_for(tmp_path / "plain", **common), dataset=HalvesDataset(4), progress=False)
    cached = Trainer(cfg_for(tmp_path / "cached", cache_features=True, **common), dataset=HalvesDataset(4),
                     progress=False)
    h1, h2 = plain.fit(), cached.fit()
    assert [h["loss_total"] for h in h1] == pytest.approx([h["loss_total"] for h in h2], rel=1e-5)
    assert cached.cache.misses == 4 and cached.cache.hits == 12  # each image encoded once in 4 steps of 4


# ---------------------------------------------------------------- resume, bad checkpoints
def test_resume_after_a_real_kill_is_exact(tmp_path):
    args = ["--max-iters", "6", "--ckpt-every", "3"]
    straight = subprocess.run([PY, str(TESTS / "train_driver.py"), str(tmp_path / "a"), *args], env=ENV,
                              capture_output=True, text=True, timeout=300)
    assert straight.returncode == 0, straight.stderr[-2000:]
    proc = subprocess.Popen([PY, str(TESTS / "train_driver.py"), str(tmp_path / "b"), *args, "--hang-after", "4"],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # blocks until step 4 is done (checkpoint 3 written before)
        assert line.strip() == "HANG", proc.stderr.read()[-2000:]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert read_state(tmp_path / "b" / "last.pt")["step"] == 3 and not (tmp_path / "b" / "model.safetensors").exists()
    resumed = subprocess.run([PY, str(TESTS / "train_driver.py"), str(tmp_path / "b"), *args, "--resume"], env=ENV,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = weights(tmp_path / "a" / "model.safetensors"), weights(tmp_path / "b" / "model.safetensors")
    assert max_diff(a, b) == 0.0  # bit-identical on the CPU
    la = [json.loads(l) for l in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    lb = [json.loads(l) for l in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lb] == list(range(1, 7))  # the killed run's step-4 row was cut on resume
    assert [r["loss_total"] for r in la] == [r["loss_total"] for r in lb]


def test_corrupt_checkpoint_is_refused_and_left_untouched(tmp_path):
    cfg = cfg_for(tmp_path, max_iters=2, ckpt_every=1)
    Trainer(cfg, dataset=HalvesDataset(4), progress=False).fit()
    last = Path(cfg.out_dir) / "last.pt"
    good = last.read_bytes()
    last.write_bytes(good[: len(good) // 2])  # truncated, as by a full disk
    cut = last.read_bytes()
    with pytest.raises(CheckpointError, match="corrupt or unsafe.*left untouched"):
        Trainer(dataclasses.replace(cfg, max_iters=4), dataset=HalvesDataset(4), resume=True, progress=False)
    assert last.read_bytes() == cut
    older = Path(cfg.out_dir) / "step_0000001.pt"  # the message's advice works
    tr = Trainer(dataclasses.replace(cfg, max_iters=3), dataset=HalvesDataset(4), resume=str(older), progress=False)
    assert tr.step == 1


def test_mismatched_checkpoint_names_the_difference(tmp_path):
    cfg = cfg_for(tmp_path, max_iters=1)
    Trainer(cfg, dataset=HalvesDataset(4), progress=False).fit()
    with pytest.raises(CheckpointError, match=r"another training recipe \(differs in \['lr'\]\)"):
        Trainer(dataclasses.replace(cfg, lr=0.5), dataset=HalvesDataset(4), resume=True, progress=False)
    other = dataclasses.replace(cfg, model_overrides={"decoder": {"num_queries": 10}})
    with pytest.raises(CheckpointError, match=r"another model configuration \(differs in \['decoder'\]\)"):
        Trainer(other, dataset=HalvesDataset(4), resume=True, progress=False)
    not_ours = tmp_path / "x.pt"
    torch.save({"weights": torch.zeros(2)}, not_ours)
    with pytest.raises(CheckpointError, match="not an ebseg_lite training checkpoint"):
        Trainer(cfg, dataset=HalvesDataset(4), resume=str(not_ours), progress=False)


# ---------------------------------------------------------------- torchrun
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_match_one(tmp_path):
    args = ["--max-iters", "3", "--augment", "none", "--batch-size", "4"]
    one = subprocess.run([PY, str(TESTS / "train_driver.py"), str(tmp_path / "one"), *args], env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    torchrun = [PY, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}"]
    two = subprocess.run([*torchrun, str(TESTS / "train_driver.py"), str(tmp_path / "two"), *args], env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("DONE 3\n") == 2, two.stdout
    a, b = weights(tmp_path / "one" / "model.safetensors"), weights(tmp_path / "two" / "model.safetensors")
    import ebseg_lite
    init = {k: v for k, v in ebseg_lite.build_model("tiny", seed=0).model.state_dict().items() if k in a}
    assert max_diff(a, init) > 1e-3        # training moved the weights ...
    assert max_diff(a, b) < 1e-5           # ... and two processes moved them the same way (measured 7e-7)


# ---------------------------------------------------------------- CLI
def test_train_cli_on_a_folder_dataset(tmp_path, capsys):
    from ebseg_lite.cli.main import main
    from fixture_data import make_folder
    make_folder(tmp_path / "data", n=3, h=64, w=64)
    out = tmp_path / "run"
    rc = main(["train", "--preset", "cpu_tiny", "--dataset", f"folder:{tmp_path / 'data'}", "--out", str(out),
               "--max-iters", "2", "--set", "crop_size=64", "--set", "num_points=64", "--no-progress"])
    assert rc == 0 and "trained to step 2" in capsys.readouterr().out
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    rc = main(["train", "--preset", "cpu_tiny", "--dataset", f"folder:{tmp_path / 'nowhere'}", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "does not exist" in err


def test_tensorboard_scalars_are_written(tmp_path):
    pytest.importorskip("tensorboard")  # a dev dependency; the JSONL/CSV logs never need it
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    cfg = cfg_for(tmp_path, max_iters=3, tensorboard=True)
    Trainer(cfg, dataset=HalvesDataset(4), progress=False).fit()
    acc = EventAccumulator(str(Path(cfg.out_dir) / "tb"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "loss/total" in tags and "loss/ssc" in tags and "lr" in tags
    assert [e.step for e in acc.Scalars("loss/total")] == [1, 2, 3]


def test_train_benchmark_reports_step_cost(capsys):
    from ebseg_lite.cli.main import main
    assert main(["benchmark", "--train", "--preset", "tiny", "--size", "64", "--batch", "2", "--steps", "1",
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for key in ("sec_per_step", "peak_process_rss_gb", "first_step_sec"):
        assert key in out
    from ebseg_lite.train.bench import train_step_cost
    res = train_step_cost("tiny", batch=2, size=64, steps=2, device="cpu", cache_features=True, num_points=64)
    # 3 optimiser steps over the same 2 images: the encoders run once per image, the cache serves the rest
    assert (res["cache_misses"], res["cache_hits"], res["steps_timed"]) == (2, 4, 2)
    assert "cache_hits" not in train_step_cost("tiny", batch=2, size=64, steps=1, device="cpu", num_points=64)


def test_official_quirk_fields_reach_the_trainer(tmp_path):
    cfg = cfg_for(tmp_path, augment="official", crop_size=64, min_short=64, max_short=192,
                  weight_decay_rule="all_norms")
    tr = Trainer(cfg, dataset=HalvesDataset(4), progress=False)
    assert tr._loader().dataset.short_sides == (64, 76, 89, 102, 115, 128, 140, 153, 166, 179, 192)
    no_wd = {id(p) for g in tr.optimizer.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert id(tr.model.fusion.layers[0][0].weight) in no_wd  # the alternative rule was used
    with pytest.raises(ValueError, match="ssc_empty"):
        cfg_for(tmp_path, ssc_empty="nan").validate()
