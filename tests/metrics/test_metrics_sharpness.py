"""calculate_sharpness: ranks sharp above blurred, bit-depth independent, flat images score 0, no gt needed."""

import cv2
import numpy as np
import pytest
from basicsr.metrics import calculate_metric


def _scene(size=64):
    rng = np.random.default_rng(0)
    small = (rng.random((size // 8, size // 8)) > 0.5).astype(np.float32)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_NEAREST)


@pytest.mark.parametrize('measure', ['laplacian', 'tenengrad'])
def test_sharp_image_ranks_above_its_blurred_versions(measure):
    sharp = _scene()
    blurred = cv2.GaussianBlur(sharp, (0, 0), 1.5)
    more_blurred = cv2.GaussianBlur(sharp, (0, 0), 3.0)
    opt = {'type': 'calculate_sharpness', 'measure': measure}
    images = [np.round(x * 255).astype(np.uint8) for x in (sharp, blurred, more_blurred)]
    scores = [calculate_metric({'img': img}, opt) for img in images]
    assert scores[0] > scores[1] > scores[2] > 0


@pytest.mark.parametrize('measure', ['laplacian', 'tenengrad'])
def test_8_and_16_bit_versions_of_a_scene_score_alike(measure):
    scene = cv2.GaussianBlur(_scene(), (0, 0), 1.0)
    opt = {'type': 'calculate_sharpness', 'measure': measure}
    s8 = calculate_metric({'img': np.round(scene * 255).astype(np.uint8)}, opt)
    s16 = calculate_metric({'img': np.round(scene * 65535).astype(np.uint16)}, opt)
    assert s16 == pytest.approx(s8, rel=0.02)


def test_flat_images_score_zero_and_img2_is_ignored():
    flat = np.full((32, 32, 3), 77, np.uint8)
    opt = {'type': 'calculate_sharpness'}
    assert calculate_metric({'img': flat}, opt) == 0.0
    sharp = np.round(_scene(32) * 255).astype(np.uint8)
    assert calculate_metric({'img': sharp, 'img2': flat}, opt) == calculate_metric({'img': sharp}, opt)


def test_bad_measure_and_tiny_image_are_clear_errors():
    with pytest.raises(ValueError, match='measure'):
        calculate_metric({'img': np.zeros((8, 8), np.uint8)}, {'type': 'calculate_sharpness', 'measure': 'fft'})
    with pytest.raises(ValueError, match='too small'):
        calculate_metric({'img': np.zeros((2, 8), np.uint8)}, {'type': 'calculate_sharpness'})
