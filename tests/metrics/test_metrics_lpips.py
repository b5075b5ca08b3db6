"""calculate_lpips: registered, BasicSR calling convention, offline backbone check, per-device cache."""


import numpy as np
import pytest
from basicsr.metrics import calculate_metric

from mpt_metrics import lpips_metric

PLUMBING = {'type': 'calculate_lpips', 'pretrained_backbone': False}  # random backbone: plumbing only


def _img(seed, shape=(32, 32, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_basicsr_calls_it_with_img_img2_and_identical_images_score_zero():
    a, b = _img(0), _img(1)
    same = calculate_metric({'img': a, 'img2': a.copy()}, PLUMBING)
    diff = calculate_metric({'img': a, 'img2': b}, PLUMBING)
    assert same == pytest.approx(0.0, abs=1e-6)
    assert diff > 1e-4


def test_grayscale_and_16_bit_match_their_8_bit_rgb_equivalent():
    a8, b8 = _img(2, (32, 32)), _img(3, (32, 32))
    gray = calculate_metric({'img': a8, 'img2': b8}, PLUMBING)
    rgb = calculate_metric({'img': np.repeat(a8[:, :, None], 3, 2), 'img2': np.repeat(b8[:, :, None], 3, 2)}, PLUMBING)
    sixteen = calculate_metric({'img': a8.astype(np.uint16) * 257, 'img2': b8.astype(np.uint16) * 257}, PLUMBING)
    assert gray == pytest.approx(rgb, rel=1e-5)
    assert sixteen == pytest.approx(gray, rel=1e-4)


def test_network_is_cached_per_device():
    first = lpips_metric.get_lpips_net('alex', False, 'cpu')
    assert lpips_metric.get_lpips_net('alex', False, 'cpu') is first


def test_missing_backbone_is_downloaded_by_the_real_code_and_reported_with_its_path(offline_torch_home):
    expected, attempts = offline_torch_home
    with pytest.raises(FileNotFoundError, match='alexnet-owt-7be5be79.pth') as err:
        calculate_metric({'img': _img(0), 'img2': _img(1)}, {'type': 'calculate_lpips'})
    assert str(expected) in str(err.value) and 'if_missing: skip' in str(err.value)
    assert attempts and attempts[0].endswith('/alexnet-owt-7be5be79.pth')


def test_missing_ground_truth_and_shape_mismatch_are_clear_errors():
    with pytest.raises(ValueError, match='no ground truth'):
        calculate_metric({'img': _img(0)}, PLUMBING)
    with pytest.raises(ValueError, match='shapes differ'):
        calculate_metric({'img': _img(0), 'img2': _img(0, (16, 16, 3))}, PLUMBING)
