"""Semantic-segmentation metrics with detectron2's SemSegEvaluator semantics.

One (K+1) x (K+1) confusion matrix is accumulated over all images (rows: prediction, columns:
ground truth; the extra column collects ground-truth ignore pixels, which are then left out).
From it, per class c: IoU_c = tp / (tp + fp + fn). A class without any ground-truth pixel gets
IoU NaN and is left out of every mean, even where it was predicted. Reported in percent:

    mIoU   mean IoU over classes with ground truth
    fwIoU  IoU weighted by each class's share of ground-truth pixels
    pAcc   correctly labelled pixels / labelled pixels
    mAcc   mean per-class recall
    mIoU_seen / mIoU_new   the mean over the seen / new classes (paper section 4.3, Table 4)

Under torchrun, ``compute()`` sums the matrices of all processes first.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Union

import numpy as np
import torch
import torch.distributed as dist

from ebseg_lite.vocabulary import display_name

Array = Union[np.ndarray, torch.Tensor]


def _as_numpy(x: Array, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be an (H, W) map, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class ids, got dtype {x.dtype}; take the argmax first")
    return x.astype(np.int64)


def confusion_matrix(pred: Array, gt: Array, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """(K+1, K+1) int64 counts for one image; entry [p, g] counts pixels predicted p with truth g.

    Ground-truth pixels equal to ``ignore_index`` land in the last column. Raises ``ValueError``
    for a shape mismatch or ids outside 0..K-1 (other than the ignore value).
    """
    pred, gt = _as_numpy(pred, "pred"), _as_numpy(gt, "gt")
    if pred.shape != gt.shape:
        raise ValueError(f"pred is {pred.shape} but gt is {gt.shape}; resize the prediction to the label size")
    k = num_classes
    if pred.size and (pred.min() < 0 or pred.max() >= k):
        raise ValueError(f"pred has ids outside 0..{k - 1} (min {pred.min()}, max {pred.max()})")
    gt = np.where(gt == ignore_index, k, gt)
    if gt.size and (gt.min() < 0 or gt.max() > k):
        bad = np.unique(gt[(gt < 0) | (gt > k)])[:10].tolist()
        raise ValueError(f"gt has ids {bad} outside 0..{k - 1} that are not the ignore value {ignore_index}")
    counts = np.bincount((k + 1) * pred.reshape(-1) + gt.reshape(-1), minlength=(k + 1) ** 2)
    return counts.reshape(k + 1, k + 1)


def metrics_from_confusion(conf: np.ndarray, seen: Optional[np.ndarray] = None) -> Dict[str, object]:
    """Metrics (percent) from a (K+1, K+1) confusion matrix; see the module docstring."""
    conf = conf[:-1, :-1].astype(np.float64)  # drop the ignore column and its (empty) row
    k = conf.shape[0]
    tp = np.diag(conf)
    pos_gt, pos_pred = conf.sum(0), conf.sum(1)  # (K,) each
    valid = pos_gt > 0
    iou, acc = np.full(k, np.nan), np.full(k, np.nan)
    acc[valid] = tp[valid] / pos_gt[valid]
    iou[valid] = tp[valid] / (pos_gt + pos_pred - tp)[valid]
    total = pos_gt.sum()

    def mean(mask: np.ndarray) -> float:
        m = mask & valid
        return float(100 * iou[m].mean()) if m.any() else math.nan

    out: Dict[str, object] = {
        "mIoU": mean(np.ones(k, bool)),
        "fwIoU": float(100 * (iou[valid] * pos_gt[valid] / total).sum()) if total else math.nan,
        "pAcc": float(100 * tp.sum() / total) if total else math.nan,
        "mAcc": float(100 * acc[valid].mean()) if valid.any() else math.nan,
        "IoU": (100 * iou).tolist(),
    }
    if seen is not None:
        seen = np.asarray(seen, dtype=bool)
        out.update(mIoU_seen=mean(seen), mIoU_new=mean(~seen),
                   num_seen=int(seen.sum()), num_new=int((~seen).sum()), seen=seen.tolist())
    else:
        out.update(mIoU_seen=math.nan, mIoU_new=math.nan, num_seen=0, num_new=0)
    return out


class SemSegEvaluator:
    """Accumulates one confusion matrix over a whole benchmark.

    Args:
        num_classes: K.
        ignore_index: ground-truth value left out (255; 65535 for ADE20K-847 and PC-459).
        seen: optional (K,) bool, True for classes seen in training, for mIoU_seen / mIoU_new.
    """

    def __init__(self, num_classes: int, *, ignore_index: int = 255, seen: Optional[Array] = None):
        self.num_classes, self.ignore_index = int(num_classes), int(ignore_index)
        if seen is not None:
            seen = np.asarray(seen.cpu() if isinstance(seen, torch.Tensor) else seen, dtype=bool)
            if seen.shape != (self.num_classes,):
                raise ValueError(f"seen must have shape ({self.num_classes},), got {seen.shape}")
        self.seen = seen
        self.reset()

    def reset(self) -> None:
        """Forget every image seen so far."""
        self.conf = np.zeros((self.num_classes + 1,) * 2, dtype=np.int64)  # (K+1, K+1)

    def update(self, pred: Array, gt: Array) -> None:
        """Add one image: pred and gt are (H, W) integer maps (numpy or torch)."""
        self.conf += confusion_matrix(pred, gt, self.num_classes, self.ignore_index)

    def _reduced(self) -> np.ndarray:
        if not (dist.is_available() and dist.is_initialized()):
            return self.conf
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        t = torch.from_numpy(self.conf).clone().to(device)  # a copy: compute() may be called twice
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.cpu().numpy()

    def compute(self) -> Dict[str, object]:
        """The metrics dict (percent): mIoU, mIoU_seen, mIoU_new, fwIoU, pAcc, mAcc, IoU (K list,
        NaN for classes without ground truth), num_seen, num_new, and seen (K bools) when given."""
        return metrics_from_confusion(self._reduced(), self.seen)


def format_table(results: Dict[str, object], class_names: Sequence[str], max_rows: Optional[int] = None) -> str:
    """A short text table: the summary line, then one row per class (IoU, and seen/new when known).

    ``max_rows`` keeps only the first rows (useful for ADE20K-847).
    """
    def pct(x) -> str:
        return "   n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:6.2f}"

    lines = ["  ".join(f"{key} {pct(results.get(key))}" for key in ("mIoU", "mIoU_seen", "mIoU_new", "fwIoU", "pAcc"))]
    if results.get("num_seen") or results.get("num_new"):
        lines[0] += f"  (seen {results['num_seen']}, new {results['num_new']})"
    seen_list = results.get("seen")
    width = max([len(display_name(n)) for n in class_names] + [5])
    lines.append(f"{'class':<{width}}  IoU %" + ("  split" if seen_list is not None else ""))
    ious = list(results["IoU"])
    if len(ious) != len(class_names):
        raise ValueError(f"results hold {len(ious)} per-class IoUs but {len(class_names)} class names were given")
    for i, (name, iou) in enumerate(zip(class_names, ious)):
        if max_rows is not None and i >= max_rows:
            lines.append(f"... {len(ious) - max_rows} more classes")
            break
        row = f"{display_name(name):<{width}}  {pct(iou)}"
        if seen_list is not None:
            row += "  " + ("seen" if seen_list[i] else "new")
        lines.append(row)
    return "\n".join(lines)
