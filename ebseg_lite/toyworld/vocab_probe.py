"""What the open vocabulary costs each embedding: why A, trained on the seen classes, is the best
single embedding among the seen names but not among all names.

The paper's premise is that A, trained on seen masks, is good on seen classes and poor on new ones.
Two things stand between "good on seen classes" and a high *seen* mIoU in the benchmark's setting,
and both are measured here on fresh toy scenes (never a training seed):

* the vocabulary holds the new names too, and a seen region can score higher with a new name than with
  its own (A was trained to tell the seen names apart, nothing more);
* the test scenes show new classes too, and a new region that takes a seen name is a false positive of
  that seen class, which lowers the seen class's IoU; the more new pixels, the more it costs.

:func:`open_vocabulary_cost` measures each mode's seen-class mIoU four ways, adding one of these at a
time and then drawing every class equally often (the test scenes before the benchmark split);
:func:`error_kinds` says which names the best-overlapping query's class goes to when it is wrong
(another seen class, a new thing, a new stuff name). Both are in table 3 of ``toyworld ablate``.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch

from ebseg_lite.toyworld.probe import matched_predictions
from ebseg_lite.toyworld.world import ToyWorld

#: the settings of :func:`open_vocabulary_cost`, from the training vocabulary to the benchmark's, and
#: then with as many new regions as seen ones
SETTINGS = ("seen names, seen scenes", "all names, seen scenes", "all names, benchmark scenes",
            "all names, equal draws")
#: the error kinds of :func:`error_kinds`, for seen and for new instances
KINDS = ("right", "seen thing", "seen stuff", "new thing", "new stuff")


def seen_sharing_a_word(class_names: Sequence[str], seen: Sequence[bool]) -> List[str]:
    """The seen classes that share a word with a new class (synonyms after commas count, "-" splits
    words): how close a vocabulary's new names sit to its seen ones. For the toy world every seen thing
    (16 of 20 seen classes); for ADE20K-150 under the official seen mask 7 of 67 (door, table, chair, ...).

    Args:
        class_names: (K,) names.  seen: (K,) bools.
    """
    words = lambda n: {w for syn in n.split(",") for w in syn.strip().replace("-", " ").split()}
    new_words = set().union(*(words(n) for n, s in zip(class_names, seen) if not s))
    return [n for n, s in zip(class_names, seen) if s and words(n) & new_words]


def class_kinds(world: ToyWorld) -> torch.Tensor:
    """(K,) int64 index into :data:`KINDS` (1-4) of every class: seen/new x thing/stuff."""
    thing = torch.arange(len(world.class_names)) < world.num_things
    seen = torch.tensor(world.seen)
    return 1 + (~thing).long() + 2 * (~seen).long()


@torch.no_grad()
def open_vocabulary_cost(predictor, modes: Dict[str, dict], *, n_scenes: int = 300, seed: int = 99,
                         progress: bool = False) -> Dict[str, Dict[str, float]]:
    """Seen-class mIoU (%) of each mode in the four :data:`SETTINGS`.

    ``seen scenes`` are fresh training-split scenes (seen classes only), labelled in the seen names
    (the training vocabulary, as closed-set segmentation scores them) or in all names; ``benchmark
    scenes`` are the evaluation's held-out scenes (a region is new with ADE20K-150's new-pixel share);
    ``equal draws`` are test-split scenes, where every class is drawn equally often (about 39% of the
    pixels new). With the defaults the third setting is the demo's seen mIoU (its 300 benchmark scenes);
    every setting draws from the same seed in its own split, which no training uses (trainings draw
    from seeds 1000 + s).

    Args:
        modes: {name: classify kwargs}, e.g. :data:`~ebseg_lite.toyworld.modes.MODES`.
    Returns:
        {mode: {setting: seen mIoU}}.
    """
    from ebseg_lite.toyworld.experiments import evaluate_toy_modes, held_out_scenes
    from ebseg_lite.toyworld.presets import SeenVocabulary
    world = ToyWorld()
    seen_scenes = world.dataset(n_scenes, seed=seed, split="train", size=128)
    runs = {SETTINGS[0]: (SeenVocabulary(seen_scenes, world), [True] * len(world.seen_names)),
            SETTINGS[1]: (seen_scenes, world.seen),
            SETTINGS[2]: (held_out_scenes(n_scenes, seed=seed), world.seen),
            SETTINGS[3]: (held_out_scenes(n_scenes, seed=seed, split="test"), world.seen)}
    out: Dict[str, Dict[str, float]] = {m: {} for m in modes}
    for setting, (data, seen) in runs.items():
        res = evaluate_toy_modes(predictor, data, modes=modes, seen=seen, progress=progress)
        for m in modes:
            out[m][setting] = float(res[m]["mIoU_seen"])
    return out


@torch.no_grad()
def error_kinds(predictor, modes: Dict[str, dict], *, n_scenes: int = 60, seed: int = 98) -> Dict[str, Dict[str, float]]:
    """Where each mode's instance classifications go: for every ground-truth instance of fresh
    test-split scenes (every class equally often, so that new instances are many), the class of the
    best-overlapping query (its row of the mode's class probabilities, the void column left out) is
    right, or another class of one of the four kinds.

    Returns:
        {mode: {"seen -> <kind>": %, "new -> <kind>": %}} over :data:`KINDS`; each group sums to 100
        (``"new -> new thing"`` counts a new instance called *another* new thing).
    """
    world = ToyWorld()
    k, seen = len(world.class_names), torch.tensor(world.seen)
    kinds = class_kinds(world)
    counts = {m: torch.zeros(2, len(KINDS)) for m in modes}                # rows: seen, new instances
    for truth, _, best, preds in matched_predictions(predictor, modes, n_scenes=n_scenes, seed=seed):
        row = (~seen[truth]).long()                                       # (M,) 0 seen, 1 new
        for m, p in preds.items():
            pred = p.class_probs[best, :k].argmax(-1)
            kind = torch.where(pred == truth, 0, kinds[pred])             # (M,)
            counts[m].index_put_((row, kind), torch.ones(len(kind)), accumulate=True)
    out = {}
    for m, c in counts.items():
        pct = 100 * c / c.sum(1, keepdim=True).clamp_min(1)
        out[m] = {f"{grp} -> {kind}": float(pct[r, j]) for r, grp in enumerate(("seen", "new"))
                  for j, kind in enumerate(KINDS)}
    return out
