"""PnP-OVSS on a labelled dataset: mIoU (overall / seen / new) with the class-list source stated.

Each image is segmented over its own class list (:mod:`.classes`), then the indices into that list
are mapped back to the dataset's vocabulary. The result dict carries ``class_source`` so no table can
hide that the ``gt`` source is told which classes are present (image-level labels), a head start the
other methods of the comparison do not get.

    res = evaluate_pnp(seg, dataset, source="gt")            # res["mIoU"], res["class_source"]

Background: a fully labelled dataset (the toy world) has no background class, so the segmenter must
use ``background="never"``; otherwise pass ``background_id``, the dataset's id for background pixels.
"""
from __future__ import annotations

import resource
import time
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ebseg_lite.baselines.pnp_ovss.classes import CLASS_SOURCES, classes_from_label, clip_classes
from ebseg_lite.baselines.pnp_ovss.pipeline import to_vocabulary_ids
from ebseg_lite.eval.metrics import SemSegEvaluator


def image_classes(source: str, *, label: np.ndarray, image: np.ndarray, vocabulary: Sequence[str],
                  ignore_index: int, scorer=None, clip_threshold: float = 0.1,
                  given: Optional[Sequence[int]] = None):
    """Class ids (into ``vocabulary``) of one image from ``source`` ("given", "clip" or "gt")."""
    if source == "gt":
        return classes_from_label(label, ignore_index)
    if source == "clip":
        if scorer is None:
            raise ValueError("the 'clip' class source needs a ClipScorer")
        return sorted(clip_classes(scorer, image, vocabulary, threshold=clip_threshold)[0])
    if source == "given":
        if not given:
            raise ValueError("the 'given' class source needs the class ids")
        return list(given)
    raise ValueError(f"class source must be one of {CLASS_SOURCES}, got {source!r}")


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0      # Linux: KiB


def evaluate_pnp(segmenter, dataset, *, source: str = "gt", scorer=None, clip_threshold: float = 0.1,
                 given: Optional[Sequence[int]] = None, seen=None, background_id: Optional[int] = None,
                 limit: Optional[int] = None, progress: bool = True) -> Dict[str, object]:
    """SemSegEvaluator metrics of ``segmenter`` (a :class:`.pipeline.PnPOVSS`) on ``dataset``.

    Args:
        dataset: items with "image" (3, H, W) uint8 and "label" (H, W); ``class_names`` and
            ``ignore_value`` attributes (``ebseg_lite.data.datasets`` / the toy world's datasets).
        source: where each image's class list comes from (see :mod:`.classes`).
        seen: (K,) bools for mIoU_seen / mIoU_new.
    Returns:
        the metrics (percent), plus ``class_source``, ``images``, ``seconds_per_image``,
        ``peak_rss_mib`` (this process's peak resident memory), ``mean_classes_per_image`` and,
        for the ``clip`` source, ``class_precision`` / ``class_recall`` of the lists against the truth.
    """
    names = list(dataset.class_names)
    ignore = int(getattr(dataset, "ignore_value", 255))
    if segmenter.config.background != "never" and background_id is None:
        raise ValueError("this dataset has no background class: use PnPConfig(background='never') "
                         "or pass background_id")
    ev = SemSegEvaluator(len(names), ignore_index=ignore, seen=seen)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    seconds, counts, tp, npred, ntrue = 0.0, [], 0, 0, 0
    for i in tqdm(range(n), desc=f"PnP-OVSS ({source} classes)", disable=not progress):
        item = dataset[i]
        image = item["image"].permute(1, 2, 0).numpy()                         # (H, W, 3) uint8
        label = item["label"].numpy()
        t0 = time.perf_counter()
        ids = image_classes(source, label=label, image=image, vocabulary=names, ignore_index=ignore,
                            scorer=scorer, clip_threshold=clip_threshold, given=given)
        out = segmenter.segment(image, [names[c] for c in ids])
        pred = to_vocabulary_ids(out.labels, ids, fill=background_id if background_id is not None else 0)
        seconds += time.perf_counter() - t0
        ev.update(pred, torch.from_numpy(label))
        counts.append(len(ids))
        truth = set(classes_from_label(label, ignore))
        tp, npred, ntrue = tp + len(truth & set(ids)), npred + len(ids), ntrue + len(truth)
    res = ev.compute()
    res.update(class_source=source, images=n, seconds_per_image=seconds / max(n, 1),
               peak_rss_mib=round(_rss_mib(), 1), mean_classes_per_image=float(np.mean(counts)) if counts else 0.0,
               class_precision=100.0 * tp / max(npred, 1), class_recall=100.0 * tp / max(ntrue, 1))
    if source == "clip":
        res["clip_threshold"] = clip_threshold
    return res
