"""StarDist-style matching AP (Table 6) against hand-computed cases."""

import numpy as np
import pytest

from mpt_metrics.instance_ap import (
    MatchCounts,
    average_precision,
    dataset_average_precision,
    label_iou,
    match_counts,
)


def _boxes(shape, boxes):
    """Label image with object i+1 filling boxes[i] = (r0, r1, c0, c1)."""
    labels = np.zeros(shape, np.int32)
    for i, (r0, r1, c0, c1) in enumerate(boxes):
        labels[r0:r1, c0:c1] = i + 1
    return labels


GT_BOXES = [(0, 10, 0, 10), (20, 30, 20, 30), (0, 10, 30, 40)]


def test_perfect_prediction_with_other_ids():
    gt = _boxes((40, 40), GT_BOXES)
    pred = np.where(gt > 0, 100 - gt, 0)  # same objects, different (non-consecutive) ids
    for t in (0.5, 0.7, 0.9):
        assert average_precision(gt, pred, t) == 1.0


def test_one_missed_object():
    gt = _boxes((40, 40), GT_BOXES)
    pred = _boxes((40, 40), GT_BOXES[:2])
    counts = match_counts(gt, pred)[0.5]
    assert counts == MatchCounts(tp=2, fp=0, fn=1)
    assert counts.ap == pytest.approx(2 / 3)


def test_one_false_positive():
    gt = _boxes((40, 40), GT_BOXES[:2])
    pred = _boxes((40, 40), GT_BOXES)
    assert match_counts(gt, pred)[0.9] == MatchCounts(tp=2, fp=1, fn=0)
    assert average_precision(gt, pred, 0.9) == pytest.approx(2 / 3)


def test_partial_overlap_crosses_threshold():
    gt = _boxes((20, 20), [(0, 10, 0, 10)])
    pred = _boxes((20, 20), [(0, 10, 2, 12)])  # intersection 80, union 120: IoU 2/3
    iou, _, _ = label_iou(gt, pred)
    assert iou[0, 0] == pytest.approx(2 / 3)
    scores = dataset_average_precision([(gt, pred)])
    assert scores['0.5'] == 1.0
    assert scores['0.7'] == 0.0  # unmatched: one FP and one FN
    assert scores['0.9'] == 0.0
    assert scores['mean'] == pytest.approx(1 / 3)


def test_empty_prediction_and_empty_ground_truth():
    gt = _boxes((20, 20), [(0, 5, 0, 5), (10, 15, 10, 15)])
    empty = np.zeros((20, 20), np.int32)
    assert match_counts(gt, empty)[0.5] == MatchCounts(tp=0, fp=0, fn=2)
    assert average_precision(gt, empty) == 0.0
    assert match_counts(empty, gt)[0.5] == MatchCounts(tp=0, fp=2, fn=0)
    assert average_precision(empty, gt) == 0.0


def test_both_empty_is_perfect_and_adds_nothing_to_a_pooled_set():
    empty = np.zeros((8, 8), np.int32)
    assert average_precision(empty, empty) == 1.0
    gt = _boxes((8, 8), [(0, 4, 0, 4)])
    half = _boxes((8, 8), [(0, 4, 0, 2)])  # IoU 0.5
    pooled = dataset_average_precision([(gt, half), (empty, empty)], thresholds=(0.5, 0.7))
    assert pooled['0.5'] == 1.0 and pooled['0.7'] == 0.0


def test_dataset_ap_pools_counts_instead_of_averaging_images():
    gt_a = _boxes((20, 20), [(0, 5, 0, 5), (10, 15, 10, 15)])
    gt_b = _boxes((20, 20), [(0, 5, 0, 5)])
    pooled = dataset_average_precision([(gt_a, gt_a), (gt_b, np.zeros_like(gt_b))], thresholds=(0.5,))
    assert pooled['0.5'] == pytest.approx(2 / 3)  # TP 2, FN 1 (a per-image mean would give 0.5)


def test_tie_at_one_half_matches_only_one_pair():
    gt = _boxes((10, 10), [(0, 10, 0, 10)])
    pred = _boxes((10, 10), [(0, 10, 0, 5), (0, 10, 5, 10)])  # each half has IoU exactly 0.5
    assert match_counts(gt, pred, (0.5,))[0.5] == MatchCounts(tp=1, fp=1, fn=0)


def test_low_threshold_uses_optimal_not_greedy_matching():
    # 1-D strips: A=[0,10), B=[10,20); P=[3,16) overlaps A (0.4375) and B (0.353); Q=[0,3) overlaps A (0.3).
    gt = np.zeros((1, 20), np.int32)
    gt[0, 0:10], gt[0, 10:20] = 1, 2
    pred = np.zeros((1, 20), np.int32)
    pred[0, 3:16], pred[0, 0:3] = 1, 2
    # Greedy by best IoU would take P-A and leave Q and B unmatched (TP 1); the optimum is Q-A, P-B.
    assert match_counts(gt, pred, (0.25,))[0.25] == MatchCounts(tp=2, fp=0, fn=0)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match='shape'):
        label_iou(np.zeros((4, 4), int), np.zeros((4, 5), int))
    with pytest.raises(ValueError, match='negative'):
        label_iou(-np.ones((4, 4), int), np.zeros((4, 4), int))
    with pytest.raises(ValueError, match='threshold'):
        average_precision(np.zeros((4, 4), int), np.zeros((4, 4), int), 1.5)
