"""mIoU and pixel accuracy (Table 7) against hand-computed cases."""

import math

import numpy as np
import pytest

from helpers.scripts import load_script
from mpt_metrics.segmentation import SegmentationScore, class_iou, confusion_matrix, mean_iou, pixel_accuracy


def _scores(gt, pred, num_classes=3, ignore_index=255):
    score = SegmentationScore(num_classes, ignore_index)
    score.update(np.array(gt), np.array(pred))
    return score.result()


def test_perfect_prediction():
    assert _scores([[0, 0], [1, 2]], [[0, 0], [1, 2]]) == {'mIoU': 1.0, 'PA': 1.0}


def test_hand_computed_and_absent_class_excluded():
    # class 0: TP 1, FN 1 -> 1/2; class 1: TP 2, FP 1 -> 2/3; class 2 absent in both -> excluded.
    result = _scores([[0, 0, 1, 1]], [[0, 1, 1, 1]])
    assert result['mIoU'] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert result['PA'] == pytest.approx(3 / 4)
    assert math.isnan(class_iou(confusion_matrix(np.array([[0, 0, 1, 1]]), np.array([[0, 1, 1, 1]]), 3))[2])


def test_class_missing_from_ground_truth_but_predicted_counts_as_zero():
    result = _scores([[0, 0, 0, 0]], [[0, 0, 0, 2]])
    assert result['mIoU'] == pytest.approx((3 / 4 + 0) / 2)
    assert result['PA'] == pytest.approx(3 / 4)


def test_ignore_index_pixels_are_not_scored():
    # pixel 2 ignored; class 0: TP 1, FP 1 -> 1/2; class 1: TP 1, FN 1 -> 1/2.
    result = _scores([[0, 255, 1, 1]], [[0, 0, 1, 0]])
    assert result['mIoU'] == pytest.approx(0.5)
    assert result['PA'] == pytest.approx(2 / 3)
    # A custom ignore value works the same way.
    assert _scores([[0, 7, 1, 1]], [[0, 0, 1, 0]], ignore_index=7) == result


def test_empty_prediction_scores_zero():
    result = _scores([[0, 1], [1, 1]], [[255, 255], [255, 255]])
    assert result == {'mIoU': 0.0, 'PA': 0.0}


def test_no_scored_pixel_gives_nan():
    result = _scores([[255, 255]], [[0, 1]])
    assert math.isnan(result['mIoU']) and math.isnan(result['PA'])


def test_confusion_is_pooled_over_images():
    score = SegmentationScore(2, ignore_index=None)
    score.update(np.array([[0, 0, 0, 0]]), np.array([[0, 0, 0, 0]]))
    score.update(np.array([[1, 1]]), np.array([[0, 1]]))
    # class 0: TP 4, FP 1 -> 4/5; class 1: TP 1, FN 1 -> 1/2; PA 5/6 (per-image mean would be 0.75).
    assert mean_iou(score.confusion) == pytest.approx((4 / 5 + 1 / 2) / 2)
    assert pixel_accuracy(score.confusion) == pytest.approx(5 / 6)
    assert score.num_images == 2


def test_bad_values_raise():
    with pytest.raises(ValueError, match='ground truth value 5'):
        _scores([[5, 0]], [[0, 0]])
    with pytest.raises(ValueError, match='prediction value 9'):
        _scores([[1, 0]], [[9, 0]])
    with pytest.raises(ValueError, match='shape'):
        _scores([[1, 0]], [[0, 0, 0]])
    with pytest.raises(ValueError, match='255'):
        _scores([[255, 0]], [[0, 0]], ignore_index=None)


def _load_script():
    return load_script('eval_segmentation')


def test_table7_script_end_to_end(tmp_path):
    import cv2

    gt_a = np.array([[0, 0, 1, 1], [2, 2, 255, 255]], np.uint8)
    gt_b = np.array([[1, 1, 1, 1], [0, 0, 0, 0]], np.uint8)
    folders = {name: tmp_path / name for name in ('gt', 'ins_blur', 'ins_mpt', 'ana_blur', 'sharp')}
    for folder in folders.values():
        (folder / 'Video01').mkdir(parents=True)
    for stem, gt in (('Video01_frame000010', gt_a), ('Video01_frame000020', gt_b)):
        cv2.imwrite(str(folders['gt'] / 'Video01' / f'{stem}.png'), gt)
        cv2.imwrite(str(folders['sharp'] / 'Video01' / f'{stem}.png'), np.where(gt == 255, 0, gt))
        cv2.imwrite(str(folders['ins_mpt'] / 'Video01' / f'{stem}_MPT.png'), np.where(gt == 255, 1, gt))
        cv2.imwrite(str(folders['ana_blur'] / 'Video01' / f'{stem}.png'), np.zeros_like(gt))
    # Blurry-instrument prediction of frame 10 only: one class-2 pixel wrong (predicted 0).
    cv2.imwrite(str(folders['ins_blur'] / 'Video01' / 'Video01_frame000010.png'),
                np.array([[0, 0, 1, 1], [0, 2, 0, 0]], np.uint8))
    script = _load_script()
    out = tmp_path / 'table7'
    assert script.main(['--gt', str(folders['gt']), '--num-classes', '3',
                        '--pred', f"ins:blur={folders['ins_blur']}", '--pred', f"ins:deblurred={folders['ins_mpt']}",
                        '--pred', f"ana:blur={folders['ana_blur']}", '--pred', f"sharp={folders['sharp']}",
                        '--out', str(out)]) == 0
    lines = out.with_suffix('.md').read_text().splitlines()
    assert lines[0] == '| Method | mIoU_ins | PA_ins | mIoU_ana | PA_ana |'
    rows = {line.split('|')[1].strip(): [c.strip() for c in line.split('|')[2:-1]] for line in lines[2:]}
    assert list(rows) == ['blur', 'deblurred', 'sharp']
    # ins blur: class 0 TP 2 FP 1 -> 2/3, class 1 1.0, class 2 TP 1 FN 1 -> 1/2; PA 5/6.
    assert rows['blur'][:2] == [f'{(2 / 3 + 1 + 1 / 2) / 3:.4f}', f'{5 / 6:.4f}']
    # ana blur: everything predicted 0 over 14 scored pixels, 6 of them class 0: IoU_0 = 6/14, others 0.
    assert rows['blur'][2:] == [f'{(6 / 14) / 3:.4f}', f'{6 / 14:.4f}']
    assert rows['deblurred'] == ['1.0000', '1.0000', 'n/a', 'n/a']  # _MPT suffix matched; ignored pixels unscored
    assert rows['sharp'] == ['1.0000'] * 4
    with pytest.raises(KeyError, match='no ground-truth'):
        script.main(['--gt', str(folders['ins_blur']), '--pred', f"sharp={folders['sharp']}"])
