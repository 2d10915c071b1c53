"""The toy BLIP: transformers' ``BlipForImageTextRetrieval`` at a tiny size, pretrained on the toy
world's web captions, so PnP-OVSS has a vision-language model to read offline.

Pretraining follows BLIP's two understanding objectives (Li et al. 2022, "BLIP"):

* image-text contrastive (ITC): ``[CLS]`` of the text-only encoder against the image CLS token, both
  projected and normalised, cross-entropy both ways at temperature 0.07; captions of scenes with the
  same class set are all positives (BLIP softens these with momentum distillation instead);
* image-text matching (ITM) with hard negatives: the ``[ENC]`` output of the cross-attending encoder
  classified match / no match; per image one negative caption and per caption one negative image,
  drawn from the batch by ITC similarity (BLIP's mining); half of the image's negatives are instead
  its own caption with one class name swapped for an absent one, a minimal edit that only looking
  at the right patches can tell apart.

Captions come from the world (:meth:`ToyWorld.caption_for`); a quarter of them are the bare list
``"a picture of <name> <name> ..."`` (web alt-texts are often lists), the form PnP-OVSS prompts with.
The schedule is step-based (warm-up then cosine), so a rerun on one thread repeats the run.

    ebseg-lite toyworld pretrain-blip --out data_samples/toyworld/toy_blip.safetensors --steps 1000
"""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ebseg_lite.baselines.pnp_ovss.blip import BLIP_MEAN, BLIP_STD, build_blip, tiny_blip_config
from ebseg_lite.io.files import atomic_write
from ebseg_lite.toyworld.world import CAPTION_TEMPLATES, ToyWorld

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[ENC]"]
TOY_BLIP = dict(image_size=64, patch_size=8, width=64, layers=4, vision_layers=2, heads=4, max_text=48)
#: Salience DropOut on the toy's 8 x 8 grid: the official 10 of 21 x 21 patches per round is 2.3%;
#: 2 of 64 (3.1%) is the nearest whole number of patches that still drops something each round.
TOY_DROP_PATCHES = 2
POOL_SEED = 20_000_000
EVAL_SEED = 930_000_000
LIST_CAPTION_PROB = 0.25


def toy_vocabulary(world: Optional[ToyWorld] = None) -> List[str]:
    """Every word of the toy web (class names, caption templates, the PnP prompt), specials first."""
    world = world or ToyWorld()
    text = " ".join(list(world.class_names) + [t.replace("{things}", " ").replace("{stuff}", " ")
                                                 for t in CAPTION_TEMPLATES] + ["a picture of and"])
    words = sorted(set(re.findall(r"[a-z]+|[.,]", text.lower())))
    return SPECIALS + words


def toy_tokenizer(vocab: Sequence[str]):
    """A BERT WordPiece tokeniser over ``vocab`` (whole words: every toy word is one piece)."""
    from transformers import BertTokenizer
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "vocab.txt")
        with open(path, "w") as f:
            f.write("\n".join(vocab) + "\n")
        tok = BertTokenizer(path, do_lower_case=True)
    return tok


def toy_blip_config(vocab_size: int, **over):
    return tiny_blip_config(vocab_size=vocab_size, **{**TOY_BLIP, **over})


def to_pixels(images: np.ndarray, size: int) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, S, S) BLIP-normalised (bilinear resize when S != H)."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return (x - torch.tensor(BLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(BLIP_STD).view(1, 3, 1, 1)


def list_caption(world: ToyWorld, ids: Sequence[int], rng) -> str:
    names = [world.class_names[i] for i in dict.fromkeys(int(c) for c in ids)]
    return "a picture of " + " ".join(names[i] for i in rng.permutation(len(names)))


def make_caption(world: ToyWorld, ids: Sequence[int], rng) -> str:
    if rng.random() < LIST_CAPTION_PROB:
        return list_caption(world, ids, rng)
    return world.caption_for(ids, rng)


def swap_one(world: ToyWorld, ids: Sequence[int], rng) -> List[int]:
    """The class set with one class replaced by an absent one of the same kind (thing or stuff)."""
    present = list(dict.fromkeys(int(c) for c in ids))
    k = int(rng.integers(len(present)))
    kind = world.thing_ids if present[k] < world.num_things else world.stuff_ids
    absent = [c for c in kind if c not in present]
    present[k] = int(rng.choice(absent))
    return present


def encode(tok, texts: Sequence[str], first: str, max_len: int):
    """(ids (B, T), mask (B, T)) with the first id set to ``first`` ("[CLS]" or "[ENC]")."""
    b = tok(list(texts), padding="longest", truncation=True, max_length=max_len, return_tensors="pt")
    ids = b["input_ids"].clone()
    ids[:, 0] = tok.convert_tokens_to_ids(first)
    return ids, b["attention_mask"]


def itc_features(model, pixels, ids, mask):
    """(image embeds (B, P, W), image feature (B, E), text feature (B, E)), both features normalised."""
    img = model.vision_model(pixel_values=pixels).last_hidden_state
    txt = model.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    return img, F.normalize(model.vision_proj(img[:, 0]), dim=-1), F.normalize(model.text_proj(txt[:, 0]), dim=-1)


def itm_logits(model, img_embeds, ids, mask, *, tokens: bool = False):
    """ITM logits (B, 2) of ``[ENC]``; with ``tokens`` also the head applied to every token (B, T, 2)."""
    out = model.text_encoder(input_ids=ids, attention_mask=mask, encoder_hidden_states=img_embeds,
                             encoder_attention_mask=torch.ones(img_embeds.shape[:2], dtype=torch.long))
    per_token = model.itm_head(out.last_hidden_state)                        # (B, T, 2)
    return (per_token[:, 0], per_token) if tokens else per_token[:, 0]


def word_targets(tok, world: ToyWorld, ids: torch.Tensor, cap_sets, img_sets):
    """Positions (rows, cols) of every class name's word pieces in the captions ``ids`` (B, T), and
    whether that class is in the paired image (the word-level matching target)."""
    rows, cols, y = [], [], []
    for r, (cs, im) in enumerate(zip(cap_sets, img_sets)):
        seq = ids[r].tolist()
        for c in cs:
            name = tok(world.class_names[c], add_special_tokens=False)["input_ids"]
            for j in range(len(seq) - len(name) + 1):
                if seq[j:j + len(name)] == name:
                    rows += [r] * len(name)
                    cols += list(range(j, j + len(name)))
                    y += [int(c in im)] * len(name)
                    break
    return torch.tensor(rows), torch.tensor(cols), torch.tensor(y)


def _same_set(sets: List[frozenset]) -> torch.Tensor:
    return torch.tensor([[a == b for b in sets] for a in sets], dtype=torch.float32)


def pretrain_step(model, tok, world, images, labels, rng, *, temp: float = 0.07, word_itm: float = 0.0):
    """ITC + ITM (+ ``word_itm`` x word-level matching) losses of one batch; returns (loss, floats)."""
    b = len(images)
    size, max_len = model.config.vision_config.image_size, model.config.text_config.max_position_embeddings
    pixels = to_pixels(images, size)
    sets = [frozenset(int(c) for c in l) for l in labels]
    caps = [make_caption(world, l, rng) for l in labels]
    ids, mask = encode(tok, caps, "[CLS]", max_len)
    img, fi, ft = itc_features(model, pixels, ids, mask)
    same = _same_set(sets)
    sim = fi @ ft.T / temp                                                      # (B, B)
    tgt = same / same.sum(1, keepdim=True)
    itc = 0.5 * (-(tgt * sim.log_softmax(1)).sum(1).mean() - (tgt * sim.T.log_softmax(1)).sum(1).mean())
    with torch.no_grad():                       # hard negatives by ITC similarity, never a same-set pair
        w = sim.softmax(1).masked_fill(same.bool(), 0) + 1e-9
        neg_txt = torch.multinomial(w, 1, generator=torch.Generator().manual_seed(int(rng.integers(2**31))))[:, 0]
        neg_img = torch.multinomial(w.T.contiguous(), 1,
                                    generator=torch.Generator().manual_seed(int(rng.integers(2**31))))[:, 0]
    neg_sets = [frozenset(swap_one(world, labels[i], rng)) if rng.random() < 0.5 else sets[int(neg_txt[i])]
                for i in range(b)]
    neg_caps = [make_caption(world, sorted(s_), rng) for s_ in neg_sets]
    e_ids, e_mask = encode(tok, caps + neg_caps + caps, "[ENC]", max_len)
    embeds = torch.cat([img, img, img[neg_img]])
    logits, per_tok = itm_logits(model, embeds, e_ids, e_mask, tokens=True)   # (3B, 2), (3B, T, 2)
    y = torch.cat([torch.ones(b), torch.zeros(2 * b)]).long()
    itm = F.cross_entropy(logits, y)
    logs = {"itc": float(itc.detach()), "itm": float(itm.detach()), "itm_acc": float((logits.argmax(1) == y).float().mean())}
    loss = itc + itm
    if word_itm > 0:
        r, c, wy = word_targets(tok, world, e_ids, sets + neg_sets + sets,
                                sets + sets + [sets[int(j)] for j in neg_img])
        word = F.cross_entropy(per_tok[r, c], wy)
        loss = loss + word_itm * word
        logs["word_itm"] = float(word.detach())
    return loss, logs


def make_pool(world: ToyWorld, n: int, seed: int, size: int = 128):
    imgs, labels = [], []
    for i in range(n):
        s = world.scene(POOL_SEED * (seed + 1) + i, size=size, split="test")
        imgs.append(s.image)
        labels.append(s.instance_labels)
    return np.stack(imgs), labels


@torch.no_grad()
def evaluate_toy_blip(model, tok, world: ToyWorld, *, n: int = 200, seed: int = 0) -> Dict[str, float]:
    """Held-out scenes: image->text retrieval R@1 among their n list captions (a hit = any caption
    of the same class set), and ITM accuracy on n true pairs + n one-swap edited pairs (chance 50%)."""
    model.eval()
    rng = np.random.default_rng(EVAL_SEED + seed)
    scenes = [world.scene(EVAL_SEED + seed * 10_000 + i, split="test") for i in range(n)]
    labels = [s.instance_labels for s in scenes]
    max_len = model.config.text_config.max_position_embeddings
    pixels = to_pixels(np.stack([s.image for s in scenes]), model.config.vision_config.image_size)
    caps = [list_caption(world, l, rng) for l in labels]
    ids, mask = encode(tok, caps, "[CLS]", max_len)
    img, fi, ft = itc_features(model, pixels, ids, mask)
    same = _same_set([frozenset(int(c) for c in l) for l in labels])
    r1 = float(same[torch.arange(n), (fi @ ft.T).argmax(1)].mean())
    negs = [list_caption(world, swap_one(world, l, rng), rng) for l in labels]
    e_ids, e_mask = encode(tok, caps + negs, "[ENC]", max_len)
    logits = itm_logits(model, torch.cat([img, img]), e_ids, e_mask)
    y = torch.cat([torch.ones(n), torch.zeros(n)]).long()
    return {"retrieval_r1": r1, "retrieval_chance": float(same.mean()),
            "itm_acc": float((logits.argmax(1) == y).float().mean()),
            "itm_acc_pos": float((logits[:n].argmax(1) == 1).float().mean()),
            "itm_acc_swap": float((logits[n:].argmax(1) == 0).float().mean())}


def pretrain_blip(*, steps: int = 1000, batch_size: int = 64, lr: float = 1e-3, warmup: int = 50,
                  seed: int = 0, pool_size: int = 4000, progress: bool = True, eval_n: int = 200,
                  word_itm: float = 0.0):
    """Pretrain the toy BLIP (ITC + ITM with hard negatives). Returns (model, vocabulary, summary);
    :func:`ebseg_lite.toyworld.toy_pnp.make_toy_blip` adds the search and writes the file."""
    t0 = time.time()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    world = ToyWorld()
    vocab = toy_vocabulary(world)
    tok = toy_tokenizer(vocab)
    model = build_blip(toy_blip_config(len(vocab)), seed=seed).train()
    images, labels = make_pool(world, pool_size, seed)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embeddings" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embeddings" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.98))
    hist: List[Dict[str, float]] = []
    bar = tqdm(range(steps), desc="pretrain toy BLIP", disable=not progress)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / steps))
        idx = rng.integers(len(images), size=batch_size)
        batch = images[idx].copy()
        flip = rng.random(batch_size) < 0.5
        batch[flip] = batch[flip, :, ::-1]
        loss, logs = pretrain_step(model, tok, world, batch, [labels[i] for i in idx], rng, word_itm=word_itm)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError(f"toy BLIP loss became {float(loss.detach())} at step {step}")
        hist.append(logs)
        if step % 20 == 0:
            bar.set_postfix({k: f"{np.mean([h[k] for h in hist[-20:]]):.3f}" for k in logs})
    summary = {"steps": steps, "batch_size": batch_size, "lr": lr, "warmup": warmup, "seed": seed, "word_itm": word_itm,
               "pool_size": pool_size, "train_seconds": round(time.time() - t0, 1),
               **{f"final_{k}": float(np.mean([h[k] for h in hist[-20:]])) for k in hist[0]}}
    summary.update(evaluate_toy_blip(model, tok, world, n=eval_n, seed=seed))
    summary["total_seconds"] = round(time.time() - t0, 1)
    return model.eval(), vocab, summary


def save_toy_blip(model, vocab: Sequence[str], path, summary: Optional[dict] = None):
    from safetensors.torch import save_file
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": "ebseg_lite.toy_blip", "vocab": json.dumps(list(vocab)),
            "blip_config": json.dumps(model.config.to_dict(), default=str), "summary": json.dumps(summary or {})}
    return atomic_write(path, lambda tmp: save_file(sd, tmp, metadata=meta))


def load_toy_blip(path):
    """(model, tokenizer) from a file written by :func:`pretrain_blip` (safetensors only)."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    from transformers import BlipConfig, BlipForImageTextRetrieval
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != "ebseg_lite.toy_blip":
        raise ValueError(f"{path} is not a toy BLIP file (metadata format {meta.get('format')!r})")
    vocab = json.loads(meta["vocab"])
    model = BlipForImageTextRetrieval(BlipConfig.from_dict(json.loads(meta["blip_config"])))
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval(), toy_tokenizer(vocab)


def read_summary(path) -> dict:
    """The run summary stored in a toy BLIP file's metadata (pretraining figures, search results)."""
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get("summary", "{}"))

