"""Instance matching and average precision for nuclei detection (paper Sec. 4.3, Table 6).

The paper segments BBBC006 nuclei with StarDist and reports StarDist's matching-based "average precision" at
IoU thresholds 0.5, 0.7 and 0.9. That score is not the area under a precision-recall curve: for one IoU
threshold t, predicted and ground-truth objects are matched one-to-one (a pair may match only if
IoU >= t, and the number of matched pairs is maximised), then

    AP_t = TP / (TP + FP + FN),   TP = matched pairs, FP = unmatched predictions, FN = unmatched objects.

For t > 0.5 an object can overlap at most one other object with IoU >= t, so every candidate pair is a match and
the matching is unique. For t <= 0.5 (ties at exactly 0.5 are possible) the maximum matching is found with
``scipy.optimize.linear_sum_assignment``.

Empty cases (a choice documented here and in the README): when both images contain no object, AP is 1.0 (the
prediction is exactly right). StarDist returns 0.0 there; over a data set the difference vanishes, because
``dataset_average_precision`` pools the TP/FP/FN counts of all images before dividing (StarDist's
``matching_dataset(by_image=False)``), and an empty/empty image adds nothing to the counts.

Nothing heavy is imported at module import time (this package auto-imports every module).
"""

from dataclasses import dataclass
from typing import Dict, Iterable, Mapping, Sequence, Tuple

import numpy as np

PAPER_IOU_THRESHOLDS = (0.5, 0.7, 0.9)


@dataclass(frozen=True)
class MatchCounts:
    """Matching outcome at one IoU threshold: true positives, false positives, false negatives."""

    tp: int
    fp: int
    fn: int

    @property
    def ap(self) -> float:
        """TP / (TP + FP + FN); 1.0 when there is nothing to detect and nothing was detected."""
        total = self.tp + self.fp + self.fn
        return 1.0 if total == 0 else self.tp / total

    def __add__(self, other: 'MatchCounts') -> 'MatchCounts':
        return MatchCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)


def _check_labels(labels: np.ndarray, name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f'{name} must be a 2-D instance label image, got shape {labels.shape}')
    if not np.issubdtype(labels.dtype, np.integer):
        if np.issubdtype(labels.dtype, np.floating) and np.all(labels == np.round(labels)):
            labels = labels.astype(np.int64)
        else:
            raise ValueError(f'{name} must hold integer instance ids, got dtype {labels.dtype}')
    if labels.size and labels.min() < 0:
        raise ValueError(f'{name} has negative instance ids (0 is background, objects are > 0)')
    return labels


def label_iou(gt: np.ndarray, pred: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU between every ground-truth and every predicted object.

    Args:
        gt, pred: 2-D integer instance label images of the same shape; 0 is background, every other value
            is one object (ids need not be consecutive).

    Returns:
        ``(iou, gt_ids, pred_ids)`` where ``iou[i, j]`` is the IoU of object ``gt_ids[i]`` and ``pred_ids[j]``.
    """
    gt = _check_labels(gt, 'ground truth')
    pred = _check_labels(pred, 'prediction')
    if gt.shape != pred.shape:
        raise ValueError(f'ground truth shape {gt.shape} differs from prediction shape {pred.shape}')
    gt_ids, gt_idx = np.unique(gt.ravel(), return_inverse=True)
    pred_ids, pred_idx = np.unique(pred.ravel(), return_inverse=True)
    # Make index 0 mean background in both (prepend it when an image has no background pixel).
    if gt_ids.size == 0 or gt_ids[0] != 0:
        gt_ids, gt_idx = np.concatenate([[0], gt_ids]), gt_idx + 1
    if pred_ids.size == 0 or pred_ids[0] != 0:
        pred_ids, pred_idx = np.concatenate([[0], pred_ids]), pred_idx + 1
    n_gt, n_pred = gt_ids.size, pred_ids.size
    overlap = np.bincount(gt_idx * n_pred + pred_idx, minlength=n_gt * n_pred).reshape(n_gt, n_pred)
    area_gt = overlap.sum(axis=1)[1:, None]
    area_pred = overlap.sum(axis=0)[None, 1:]
    inter = overlap[1:, 1:].astype(np.float64)
    union = area_gt + area_pred - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return iou, gt_ids[1:], pred_ids[1:]


def count_matches(iou: np.ndarray, threshold: float) -> int:
    """Number of pairs in a maximum one-to-one matching that uses only pairs with IoU >= threshold."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f'IoU threshold must be in (0, 1], got {threshold}')
    candidates = iou >= threshold
    if not candidates.any():
        return 0
    if threshold > 0.5:
        # IoU > 0.5 with two disjoint objects is impossible, so candidate pairs never share an object.
        return int(candidates.sum())
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(candidates.astype(np.float64), maximize=True)
    return int(candidates[rows, cols].sum())


def match_counts(
    gt: np.ndarray, pred: np.ndarray, thresholds: Sequence[float] = PAPER_IOU_THRESHOLDS
) -> Dict[float, MatchCounts]:
    """TP/FP/FN of one image for each IoU threshold (see the module docstring)."""
    iou, gt_ids, pred_ids = label_iou(gt, pred)
    result = {}
    for threshold in thresholds:
        tp = count_matches(iou, float(threshold))
        result[float(threshold)] = MatchCounts(tp=tp, fp=pred_ids.size - tp, fn=gt_ids.size - tp)
    return result


def average_precision(gt: np.ndarray, pred: np.ndarray, threshold: float = 0.5) -> float:
    """StarDist-style AP = TP / (TP + FP + FN) of one image at one IoU threshold."""
    return match_counts(gt, pred, (threshold,))[float(threshold)].ap


def pool_counts(per_image: Iterable[Mapping[float, MatchCounts]]) -> Dict[float, MatchCounts]:
    """Sum per-image counts threshold by threshold."""
    pooled: Dict[float, MatchCounts] = {}
    for counts in per_image:
        for threshold, c in counts.items():
            pooled[threshold] = pooled.get(threshold, MatchCounts(0, 0, 0)) + c
    return pooled


def dataset_average_precision(
    pairs: Iterable[Tuple[np.ndarray, np.ndarray]], thresholds: Sequence[float] = PAPER_IOU_THRESHOLDS
) -> Dict[str, float]:
    """AP over a data set from pooled counts, per threshold plus their mean (Table 6's columns).

    Args:
        pairs: ``(gt, pred)`` instance label images.
        thresholds: IoU thresholds.

    Returns:
        ``{'0.5': AP, ..., 'mean': mean over thresholds}``.
    """
    pooled = pool_counts(match_counts(gt, pred, thresholds) for gt, pred in pairs)
    if not pooled:
        raise ValueError('no image pairs to evaluate')
    return summarize(pooled)


def summarize(pooled: Mapping[float, MatchCounts]) -> Dict[str, float]:
    """``{'<threshold>': AP, ..., 'mean': mean AP}`` from pooled counts."""
    scores = {f'{t:g}': pooled[t].ap for t in sorted(pooled)}
    scores['mean'] = float(np.mean(list(scores.values())))
    return scores
