"""One training step's losses: Mask2Former set losses on every decoder output + the SSC loss.

    total = sum over the 10 outputs of [1.5 CE(A) + 1.5 CE(B) + 5 BCE + 5 dice]  +  lambda * SSC(A_last)

Class logits of an embedding x in {A, B} (paper section 3.4, as at inference): ``exp(t) * x . [T; bg]^T``
with T the frozen template-averaged text embeddings of the training classes, ``bg`` the learnable
background embedding (normalised) and ``exp(t)`` CLIP's own logit scale. A and B keep their learned
scale s (A = s * normalize(.)), as in the official code.

SSC (paper eq. 4-7) uses the last output's Hungarian matching: per image, the matched A rows and the text
embeddings of their ground-truth classes; averaged over images (an image without matched segments: see
``ssc_term``'s ``empty``).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ebseg_lite.modeling.balance import class_logits, with_background
from ebseg_lite.losses.criterion import EBSegCriterion
from ebseg_lite.losses.ssc import ssc_loss


def semantic_targets(label: torch.Tensor, num_classes: int, ignore_value: int = 255) -> Dict[str, torch.Tensor]:
    """A semantic label map -> one binary mask per class present (Mask2Former's semantic mapper).

    Args:
        label: (H, W) int64 class ids, ``ignore_value`` for unlabelled pixels.
    Returns:
        {"labels": (M,) int64 sorted class ids, "masks": (M, H, W) bool}.
    """
    ids = torch.unique(label)
    ids = ids[ids != ignore_value]
    bad = ids[(ids < 0) | (ids >= num_classes)]
    if bad.numel():
        raise ValueError(f"label ids {bad.tolist()} are outside the {num_classes}-class vocabulary "
                         f"(and not the ignore value {ignore_value})")
    return {"labels": ids.long(), "masks": label[None] == ids[:, None, None]}


def sample_generators(seed: int, step: int, sample_ids: Sequence[int], device="cpu") -> List[torch.Generator]:
    """One generator per sample, seeded by (seed, step, global sample index): the random draws of a
    sample do not depend on the process it runs in, the batch it shares, or a resume in between."""
    gens = []
    for i in sample_ids:
        g = torch.Generator(device=device)
        g.manual_seed((seed * 1_000_003 + step * 7_919 + int(i) * 104_729) % (2 ** 63 - 1))
        gens.append(g)
    return gens


def training_outputs(model, out: Dict, text: torch.Tensor) -> List[Dict[str, torch.Tensor]]:
    """Per decoder output: ``logits_A`` and ``logits_B`` (B, N, K+1) and ``masks`` (B, N, Hm, Wm).

    Args:
        model: the (unwrapped) EBSeg, for ``bg_embed`` and CLIP's logit scale.
        out: ``model.forward_features(..., inference=False)``.
        text: (K, C) normalised text embeddings of the training classes.
    """
    cls_w = with_background(text, model.bg_embed)  # (K+1, C)
    scale = model.clip.logit_scale.detach().exp()
    dec = out["decoder"]
    return [{"logits_A": class_logits(a.float(), cls_w, scale), "logits_B": class_logits(b.float(), cls_w, scale),
             "masks": m.float()} for a, b, m in zip(dec.A, out["B_per_layer"], dec.masks)]


def ssc_term(A_last: torch.Tensor, targets, indices, text: torch.Tensor, *, form: str = "official",
             empty: str = "official") -> torch.Tensor:
    """SSC loss of a batch: per image on its matched segments, then over the images.

    Args:
        A_last: (B, N, C) last-layer A (with its scale s).
        indices: the last output's matching, B pairs (pred_idx, tgt_idx).
        text: (K, C) training-class text embeddings.
        form: "official" (squared error against s^2-scaled dot products) or "paper" (cosines, |.|).
        empty: what an image with no matched segment (k = 0: all its pixels ignored) does.
            "official": its MSE over an empty matrix is NaN, and the official code then sets the
            SSC of the whole batch to 0 (``EBSeg.py: get_ssc_loss``); otherwise the sum over
            images divided by B. "skip": such images are left out of the mean (0 if all are).
    Returns:
        scalar.
    """
    if empty not in ("official", "skip"):
        raise ValueError(f"empty must be 'official' or 'skip', got {empty!r}")
    per_image = []
    for b, (pred, tgt) in enumerate(indices):
        if len(pred) == 0:
            if empty == "official":  # NaN in the official code -> this batch's SSC is 0
                return A_last.new_zeros(())
            continue
        cls = targets[b]["labels"][tgt].to(text.device)
        per_image.append(ssc_loss(A_last[b, pred.to(A_last.device)], text[cls], form=form,
                                  normalize=(form == "paper")))
    if not per_image:
        return A_last.new_zeros(())
    total = torch.stack(per_image).sum()
    if empty == "skip":
        return total / len(per_image)
    total = total / len(indices)
    if bool(torch.isnan(total)):  # official: a NaN SSC is replaced by a constant 0 (no NaN gradient)
        return A_last.new_zeros(())
    return total


def ssc_inputs(out: Dict, indices, *, on: str = "A", layers: int = 1) -> List[Tuple[torch.Tensor, list]]:
    """The (embeddings, matching) pairs that SSC applies to (paper table 5).

    Args:
        out: ``model.forward_features(..., inference=False)``.
        indices: the criterion's matching per decoder output (last = final).
        on: "A" (official: the fully supervised embeddings), "B" (the CLIP mask-attention ones) or "both".
        layers: how many decoder outputs, counted from the last (1 = official); 0 = all of them.
    Returns:
        a list of ((B, N, C) embeddings, their output's matching).
    """
    if on not in ("A", "B", "both"):
        raise ValueError(f"on must be 'A', 'B' or 'both', got {on!r}")
    n = len(indices) if layers == 0 else min(layers, len(indices))
    chosen = range(len(indices) - n, len(indices))
    pairs = []
    if on in ("A", "both"):
        pairs += [(out["decoder"].A[i], indices[i]) for i in chosen]
    if on in ("B", "both"):
        pairs += [(out["B_per_layer"][i], indices[i]) for i in chosen]
    return pairs


def compute_losses(model, out: Dict, targets, text: torch.Tensor, criterion: EBSegCriterion, *,
                   ssc_weight: float = 10.0, ssc_form: str = "official", ssc_empty: str = "official",
                   ssc_on: str = "A", ssc_layers: int = 1,
                   generators: Optional[List[torch.Generator]] = None) -> Tuple[torch.Tensor, Dict[str, float]]:
    """Total loss and a flat dict of every term (floats, for logging).

    SSC (weight ``ssc_weight``) is summed over the pairs of :func:`ssc_inputs` (each output's term
    weighted fully, as deep supervision weights each output's mask losses); official: A, last output.
    """
    outputs = training_outputs(model, out, text)
    crit = criterion(outputs, targets, generator=generators)
    total = crit.total
    logs = {k: float(v.detach()) for k, v in crit.losses.items()}
    if ssc_weight > 0:
        ssc = sum(ssc_term(emb.float(), targets, idx, text, form=ssc_form, empty=ssc_empty)
                  for emb, idx in ssc_inputs(out, crit.indices, on=ssc_on, layers=ssc_layers))
        total = total + ssc_weight * ssc
        logs["loss_ssc"] = float(ssc.detach())
    logs["loss_total"] = float(total.detach())
    return total, logs
