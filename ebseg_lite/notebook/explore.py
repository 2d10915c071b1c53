"""The balancing explorer's pure functions (paper eq. 8-13, official inference): what the widgets of
``ebseg_lite.notebook.widgets`` call on every change, testable without a frontend.

Both balancing forms are a weighted *sum* of the three embeddings' votes for a class, which is what
makes "each embedding's contribution" well defined:

* official (geometric): ``log P[n, k] = sum_x w_x(k) log P_x[n, k] - log Z_n`` for x in {A, B, D},
  with ``w(k) = w_seen`` for seen classes and ``w_new`` for new ones (up to the official 1e-8 inside
  the log). The contribution of x to class k is ``w_x(k) log P_x[n, k]`` (log-probability space).
* paper (arithmetic, eq. 9-13): ``E_seen = aA + bB + (1-a-b)D`` and ``E_new = gA + bB + (1-g-b)D`` are
  classified linearly, so the logit of class k is ``sum_x w_x(k) s x . t_k`` with the weights
  (a, b, 1-a-b) for seen and (g, b, 1-g-b) for new classes. The contribution of x to class k is
  ``w_x(k) s x . t_k`` (logit space).

A softmax over the K classes of the summed contributions gives back the balanced probabilities.
Everything works from an ``Encoded`` image: :func:`explore` calls ``model.classify`` only (no
encoder), so a widget re-classifies in milliseconds (encode once, classify many).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ebseg_lite.inference.outputs import Encoded, Prediction, upsample_masks
from ebseg_lite.viz.overlays import class_colors, overlay
from ebseg_lite.vocabulary import parse_class_list, unknown_word_warning, validate_class_names

BRANCHES = ("A", "B", "D")


def parse_vocabulary(text: Union[str, Sequence[str]]) -> List[str]:
    """A vocabulary typed into a text box -> a validated list of class names.

    One class per line, or on one line separated by commas (``"cat, sofa"``), or by semicolons when a
    class has synonyms (``"road, route; sofa, couch"``). A list is validated as it is.

    Raises:
        ValueError with a message saying what is wrong and what to type instead.
    """
    if not isinstance(text, str):
        return validate_class_names(text)
    if "\n" in text.strip():
        names = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        names = parse_class_list(text)
    if not names:
        raise ValueError("the vocabulary is empty: type class names, one per line or separated by commas "
                         "(e.g. 'red solid, grass'), semicolons between classes with synonyms")
    return validate_class_names(names)


def branch_weights(seen: torch.Tensor, *, balancing: str, w_seen: Sequence[float], w_new: Sequence[float],
                   paper_abg: Sequence[float]) -> torch.Tensor:
    """(3, K) weight of A, B and D for every class, as the chosen balancing form applies them.

    Args:
        seen: (K,) bool.  w_seen, w_new: (wA, wB, wD) of the official form.  paper_abg: (a, b, g).
    """
    seen = torch.as_tensor(seen, dtype=torch.bool)
    if balancing == "official":
        ws, wn = torch.tensor(w_seen, dtype=torch.float32), torch.tensor(w_new, dtype=torch.float32)
    elif balancing == "paper":
        a, b, g = (float(v) for v in paper_abg)
        ws, wn = torch.tensor([a, b, 1 - a - b]), torch.tensor([g, b, 1 - g - b])
    else:
        raise ValueError(f"balancing must be 'official' or 'paper', got {balancing!r}")
    return torch.where(seen[None], ws[:, None], wn[:, None])  # (3, K)


@dataclass
class Contributions:
    """Each embedding's vote for every class, for one mask proposal (query)."""
    query: int
    space: str                    # "log-probability" (official form) or "logit" (paper form)
    weights: torch.Tensor         # (3, K) w_x(k), rows A, B, D
    raw: torch.Tensor             # (3, K) log P_x (official) or s x . t_k (paper), before weighting
    terms: torch.Tensor           # (3, K) weights * raw: the contributions

    @property
    def total(self) -> torch.Tensor:
        """(K,) summed contributions; their softmax over K is the balanced class probability."""
        return self.terms.sum(0)

    @property
    def centered(self) -> torch.Tensor:
        """(3, K) each row minus its mean over the classes: what favours one class over the others. A
        softmax ignores a constant per row, so ``softmax(centered.sum(0)) == probs``."""
        return self.terms - self.terms.mean(dim=-1, keepdim=True)

    @property
    def probs(self) -> torch.Tensor:
        """(K,) softmax of :attr:`total` (void not included)."""
        return self.total.softmax(-1)

    def as_dict(self) -> Dict[str, torch.Tensor]:
        return {x: self.terms[i] for i, x in enumerate(BRANCHES)}


def contributions(pred: Prediction, query: int) -> Contributions:
    """Each embedding's contribution to every class for mask proposal ``query`` of a prediction.

    Args:
        pred: ``model.classify(...)`` output (its ``balancing`` and ``weights`` are used).
        query: index n of the query, 0 <= n < N.
    Returns:
        :class:`Contributions` with (3, K) tensors; ``softmax(total)`` equals the balanced probabilities
        ``pred.class_probs[n, :K] / (1 - p_void[n])`` (up to the official 1e-8 of the geometric form).
    """
    n = int(query)
    num_q = pred.class_probs.shape[0]
    if not 0 <= n < num_q:
        raise ValueError(f"query must be in 0..{num_q - 1}, got {query}")
    k = len(pred.class_names)
    w = branch_weights(pred.seen, balancing=pred.balancing, w_seen=pred.weights["w_seen"],
                       w_new=pred.weights["w_new"], paper_abg=pred.weights["paper_abg"])
    if pred.balancing == "official":
        raw = torch.stack([pred.probs[x][n].clamp_min(1e-30).log() for x in BRANCHES])  # (3, K)
        space = "log-probability"
    else:
        raw = torch.stack([pred.logits[x][n, :k] for x in BRANCHES])  # (3, K) s x . t_k, background dropped
        space = "logit"
    return Contributions(query=n, space=space, weights=w, raw=raw, terms=w * raw)


def query_at(pred: Prediction, y: int, x: int) -> int:
    """The query that dominates pixel (y, x) for its predicted class: the n maximising
    ``P[n, k*] sigmoid(M_n(y, x))`` with k* the pixel's label (eq. 14 is a sum over these terms)."""
    h, w = pred.labels.shape
    if not (0 <= y < h and 0 <= x < w):
        raise ValueError(f"pixel ({y}, {x}) lies outside the {h} x {w} image")
    k = int(pred.labels[y, x])
    m = upsample_masks(pred.masks, pred.encoded)[:, y, x].sigmoid()  # (N,)
    return int((pred.map_probs[:, k] * m).argmax())


@dataclass
class ExploreResult:
    """What the balancing explorer shows for one setting of its controls."""
    prediction: Prediction
    class_names: List[str]
    seen: List[bool]
    pixel: Tuple[int, int]
    query: int
    class_probs: torch.Tensor             # (K+1,) final probabilities of the query, void last
    branch_probs: Dict[str, torch.Tensor]  # "A", "B", "D": (K,) each branch's own softmax for the query
    contributions: Contributions
    areas: Dict[str, float]               # class name -> share of the image's pixels, present classes only
    warnings: List[str] = field(default_factory=list)

    @property
    def labels(self) -> torch.Tensor:
        return self.prediction.labels


def explore(model, encoded: Encoded, class_names: Union[str, Sequence[str]], *, seen=None,
            w_seen: Optional[Sequence[float]] = None, w_new: Optional[Sequence[float]] = None,
            balancing: Optional[str] = None, paper_abg: Optional[Sequence[float]] = None,
            pixel: Optional[Tuple[int, int]] = None) -> ExploreResult:
    """Classify an encoded image with a vocabulary and balancing weights; explain one pixel.

    Calls ``model.classify`` only (never the encoders).

    Args:
        encoded: ``model.encode(image)``.
        class_names: a list of names or the text of a vocabulary box (see :func:`parse_vocabulary`).
        seen: (K,) bool, or None for the synonym rule against the model's training vocabulary.
        w_seen, w_new: (wA, wB, wD) of the official (geometric) form.
        balancing: "official" (geometric) or "paper" (arithmetic, eq. 9-13).
        paper_abg: (a, b, g) of the paper form.
        (None for any of these four: the model's default, ``model.cfg.inference``.)
        pixel: (y, x) in the original image to explain; default its centre.
    Returns:
        :class:`ExploreResult`. Raises ValueError for a bad vocabulary, weights or pixel.
    """
    names = parse_vocabulary(class_names)
    inf = model.cfg.inference
    balancing = balancing or inf.balancing
    w_seen, w_new = tuple(inf.w_seen if w_seen is None else w_seen), tuple(inf.w_new if w_new is None else w_new)
    paper_abg = tuple(inf.paper_abg if paper_abg is None else paper_abg)
    for label, wts in (("w_seen", w_seen), ("w_new", w_new), ("paper_abg", paper_abg)):
        if len(wts) != 3 or any(not np.isfinite(float(v)) or float(v) < 0 for v in wts):
            raise ValueError(f"{label} must be three non-negative numbers, got {tuple(wts)}")
    warnings = []
    if balancing == "official":
        for label, wts in (("seen", w_seen), ("new", w_new)):
            if sum(float(v) for v in wts) == 0:
                warnings.append(f"all {label} weights are 0: every {label} class gets the same score")
    elif balancing == "paper":
        a, b, g = (float(v) for v in paper_abg)
        for label, s in (("a + b", a + b), ("g + b", g + b)):
            if s > 1:
                warnings.append(f"{label} = {s:.2f} > 1: D enters with a negative weight")
    unknown = unknown_word_warning(getattr(getattr(model, "model", None), "tokenizer", None), names)
    if unknown:   # a closed tokenizer (the toy world's) cannot spell some names: shown in the widget too
        warnings.append(unknown)
    pred = model.classify(encoded, names, seen=seen, balancing=balancing, w_seen=w_seen, w_new=w_new,
                          paper_abg=paper_abg)
    h, w = pred.labels.shape
    y, x = pixel if pixel is not None else (h // 2, w // 2)
    q = query_at(pred, int(y), int(x))
    counts = torch.bincount(pred.labels.flatten(), minlength=len(names)).float() / pred.labels.numel()
    order = torch.argsort(counts, descending=True, stable=True)
    areas = {names[i]: round(float(counts[i]), 4) for i in order.tolist() if counts[i] > 0}
    return ExploreResult(prediction=pred, class_names=names, seen=pred.seen.tolist(), pixel=(int(y), int(x)),
                         query=q, class_probs=pred.class_probs[q],
                         branch_probs={b_: pred.probs[b_][q] for b_ in BRANCHES},
                         contributions=contributions(pred, q), areas=areas, warnings=warnings)


def mix_equation(pred: Prediction) -> str:
    """The balancing equation with the prediction's own weights, as drawn in the contribution panel."""
    if pred.balancing == "official":
        fmt = lambda w: " + ".join(f"{float(v):.2f} log P{x}" for v, x in zip(w, BRANCHES))
        return (f"log P(k) = sum_x w_x(k) log P_x(k) - log Z\nseen: {fmt(pred.weights['w_seen'])}"
                f"\nnew: {fmt(pred.weights['w_new'])}")
    a, b, g = (float(v) for v in pred.weights["paper_abg"])
    return (f"logit(k) = s (w_A A + w_B B + w_D D) . t_k\nseen: {a:.2f} A + {b:.2f} B + {1 - a - b:.2f} D"
            f"\nnew: {g:.2f} A + {b:.2f} B + {1 - g - b:.2f} D")


def explorer_figure(result: ExploreResult, *, top: int = 6, title: Optional[str] = None) -> Figure:
    """Three panels: the segmentation over the image (the explained pixel marked, legend with seen/new
    and area), the explained query's final class probabilities, and each embedding's weighted term
    ``w_x(k) log P_x(k)`` (official) or ``w_x(k) s x . t_k`` (paper) exactly as it enters the mix, for
    its top classes: a term is 0 where its weight is 0, and the bars of a class sum to the score whose
    softmax is the probability (:attr:`Contributions.total`). The equation is the panel's title."""
    pred, names = result.prediction, result.class_names
    cols = class_colors(names) / 255.0  # (K, 3)
    fig = Figure(figsize=(14, 4.2), layout="constrained")
    ax_img, ax_prob, ax_con = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.3, 1, 1.3]})
    ax_img.imshow(np.asarray(overlay(display_image(pred), pred.labels, names, legend=False)),
                  interpolation="nearest")
    y, x = result.pixel
    tag = lambda i: names[i] + (" (seen)" if result.seen[i] else " (new)")
    handles = [Patch(facecolor=cols[names.index(n)], edgecolor="black",
                     label=f"{tag(names.index(n))} {100 * a:.0f}%") for n, a in list(result.areas.items())[:8]]
    handles += ax_img.plot([x], [y], marker="x", color="black", markersize=10, mew=2.5, ls="",
                           label=f"pixel ({y}, {x})")
    ax_img.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
    ax_img.set_xticks([]), ax_img.set_yticks([])
    ax_img.set_title(title or f"segmentation ({pred.balancing} balancing)", fontsize=9)
    k = len(names)
    p = result.class_probs[:k]
    order = torch.argsort(p, descending=True, stable=True)[:top].tolist()
    ax_prob.barh(range(len(order)), [float(p[i]) for i in order], color=[cols[i] for i in order], edgecolor="black")
    ax_prob.set_yticks(range(len(order)), [tag(i) for i in order])
    ax_prob.invert_yaxis()
    ax_prob.set_xlim(0, 1)
    ax_prob.set_xlabel("probability")
    ax_prob.set_title(f"query {result.query} at the pixel: p(void) = {float(result.class_probs[-1]):.2f}", fontsize=9)
    terms = result.contributions.terms[:, order].numpy()  # (3, n) exactly the summed terms
    width = 0.27
    for i, (b, c) in enumerate(zip(BRANCHES, ("tab:red", "tab:green", "tab:blue"))):
        ax_con.barh(np.arange(len(order)) + (i - 1) * width, terms[i], height=width, color=c, label=b)
    ax_con.axvline(0, color="black", lw=0.8)
    ax_con.set_yticks(range(len(order)), [tag(i) for i in order])
    ax_con.invert_yaxis()
    ax_con.set_xlabel(f"w_x(k) x {'log P_x(k)' if pred.balancing == 'official' else 's x . t_k'} "
                      f"({result.contributions.space})")
    ax_con.set_title(mix_equation(pred), fontsize=8)
    ax_con.legend(title="embedding x", fontsize=8, loc="best")
    return fig


def display_image(pred: Prediction) -> torch.Tensor:
    """(3, H, W) uint8: the encoded (resized) input brought back to the label map's size."""
    img = pred.encoded.image  # (3, h', w')
    if tuple(img.shape[-2:]) == tuple(pred.labels.shape):
        return img
    import torch.nn.functional as F
    up = F.interpolate(img[None].float(), size=tuple(pred.labels.shape), mode="bilinear", align_corners=False)[0]
    return up.round().clamp(0, 255).to(torch.uint8)
