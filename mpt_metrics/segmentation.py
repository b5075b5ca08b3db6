"""Semantic-segmentation scores for the CaDISBlur downstream task (paper Sec. 4.3, Table 7): mIoU and pixel accuracy.

Both come from one confusion matrix accumulated over all images of a set (rows: ground-truth class, columns:
predicted class), the usual convention of segmentation benchmarks (per-set, not a mean of per-image scores).

- Pixels whose ground truth equals ``ignore_index`` (CaDIS uses 255 in some experiment splits) are left out.
- A predicted value equal to ``ignore_index`` on a scored pixel means "no prediction": the pixel counts as wrong
  (it lowers the accuracy and the IoU of its ground-truth class) and belongs to no predicted class.
- IoU_c = TP_c / (TP_c + FP_c + FN_c). mIoU averages IoU_c over the classes that occur in the ground truth or in
  the prediction; a class absent from both has no defined IoU and is excluded from the mean.
- PA = correctly classified pixels / scored pixels.
- With no scored pixel at all the scores are NaN (shown as "n/a" in tables).
"""

from typing import Dict, Optional

import numpy as np


def confusion_matrix(
    gt: np.ndarray, pred: np.ndarray, num_classes: int, ignore_index: Optional[int] = 255
) -> np.ndarray:
    """Confusion counts of one class map pair.

    Args:
        gt, pred: integer class maps of equal shape; values in ``[0, num_classes)`` or ``ignore_index``.
        num_classes: number of classes.
        ignore_index: ground-truth value excluded from scoring (None: every value must be a class).

    Returns:
        ``(num_classes, num_classes + 1)`` int64 array; entry ``[g, p]`` counts pixels of class g predicted as p,
        the last column counts pixels of class g left unpredicted (prediction == ignore_index).
    """
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f'ground truth shape {gt.shape} differs from prediction shape {pred.shape}')
    if num_classes < 1:
        raise ValueError(f'num_classes must be >= 1, got {num_classes}')
    for name, arr in (('ground truth', gt), ('prediction', pred)):
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f'{name} must be an integer class map, got dtype {arr.dtype}')
    gt = gt.astype(np.int64).ravel()
    pred = pred.astype(np.int64).ravel()
    scored = np.ones(gt.shape, bool) if ignore_index is None else gt != ignore_index
    gt, pred = gt[scored], pred[scored]
    bad_gt = (gt < 0) | (gt >= num_classes)
    if bad_gt.any():
        raise ValueError(f'ground truth value {gt[bad_gt][0]} is neither a class id in [0, {num_classes}) '
                         f'nor the ignore index {ignore_index}')
    unpredicted = np.zeros(pred.shape, bool) if ignore_index is None else pred == ignore_index
    bad_pred = ((pred < 0) | (pred >= num_classes)) & ~unpredicted
    if bad_pred.any():
        raise ValueError(f'prediction value {pred[bad_pred][0]} is neither a class id in [0, {num_classes}) '
                         f'nor the ignore index {ignore_index}')
    pred = np.where(unpredicted, num_classes, pred)
    counts = np.bincount(gt * (num_classes + 1) + pred, minlength=num_classes * (num_classes + 1))
    return counts.reshape(num_classes, num_classes + 1)


def class_iou(confusion: np.ndarray) -> np.ndarray:
    """Per-class IoU from a confusion matrix; NaN for classes absent from ground truth and prediction."""
    num_classes = confusion.shape[0]
    tp = np.diag(confusion[:, :num_classes]).astype(np.float64)
    gt_total = confusion.sum(axis=1)  # TP + FN (FN includes unpredicted pixels)
    pred_total = confusion[:, :num_classes].sum(axis=0)  # TP + FP
    union = gt_total + pred_total - tp
    return np.divide(tp, union, out=np.full(num_classes, np.nan), where=union > 0)


def mean_iou(confusion: np.ndarray) -> float:
    """Mean IoU over classes present in the ground truth or the prediction (NaN when none is)."""
    iou = class_iou(confusion)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float('nan')


def pixel_accuracy(confusion: np.ndarray) -> float:
    """Correct pixels / scored pixels (NaN when no pixel is scored)."""
    total = confusion.sum()
    return float(np.trace(confusion[:, :confusion.shape[0]]) / total) if total else float('nan')


class SegmentationScore:
    """Accumulates a confusion matrix over image pairs; reports mIoU and PA of the whole set."""

    def __init__(self, num_classes: int, ignore_index: Optional[int] = 255):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.confusion = np.zeros((num_classes, num_classes + 1), np.int64)
        self.num_images = 0

    def update(self, gt: np.ndarray, pred: np.ndarray) -> None:
        self.confusion += confusion_matrix(gt, pred, self.num_classes, self.ignore_index)
        self.num_images += 1

    def result(self) -> Dict[str, float]:
        return {'mIoU': mean_iou(self.confusion), 'PA': pixel_accuracy(self.confusion)}
