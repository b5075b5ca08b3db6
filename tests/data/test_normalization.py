"""The intensity normalisation contract (``mpt_data.normalization``) on hand-computed cases."""

import numpy as np
import pytest

from helpers.raised import raised
from mpt_data.image_io import ImageReadError
from mpt_data.normalization import (
    IntensityMap,
    Normalization,
    NormalizationError,
    check_dtype,
    from_options,
    from_train_options,
    require_input_only,
)


def _error(func, *args, kind=NormalizationError, **kwargs) -> str:
    return raised(kind, func, *args, **kwargs)


def test_intensity_map_forward_and_clip():
    raw = np.array([0, 10, 30, 50], np.uint16)
    out = IntensityMap(10.0, 20.0).forward(raw)
    assert out.dtype == np.float32 and out.tolist() == [-0.5, 0.0, 1.0, 2.0]
    assert IntensityMap(10.0, 20.0, clip=True).forward(raw).tolist() == [0.0, 0.0, 1.0, 1.0]
    assert IntensityMap(10.0, 20.0).clip is False


def test_intensity_map_inverse_computes_in_float32():
    out = np.random.default_rng(0).random(2000).astype(np.float32)
    imap = IntensityMap(0.1, 3.7)
    expected = out * np.float32(3.7) + np.float32(0.1)  # float32 arithmetic throughout
    np.testing.assert_array_equal(imap.inverse(out, np.float32), expected)


def test_intensity_map_inverse_rounds_and_clips_integers_only():
    imap = IntensityMap(10.0, 20.0)
    out = np.array([-1.0, 0.0, 0.26, 0.5, 13.0], np.float32)  # raw: -10, 10, 15.2, 20, 270
    assert imap.inverse(out, np.uint8).tolist() == [0, 10, 15, 20, 255]
    assert imap.inverse(out, np.uint8).dtype == np.uint8
    assert imap.inverse(out, 'int8').tolist() == [-10, 10, 15, 20, 127]
    assert imap.inverse(np.array([-3000.0], np.float32), np.int16).tolist() == [-32768]
    as_float = imap.inverse(out, np.float32)
    assert as_float.dtype == np.float32
    np.testing.assert_allclose(as_float, [-10.0, 10.0, 15.2, 20.0, 270.0], rtol=1e-6)
    np.testing.assert_array_equal(imap.inverse(imap.forward(np.arange(0, 65535, 7, dtype=np.uint16)), np.uint16),
                                  np.arange(0, 65535, 7, dtype=np.uint16))


@pytest.mark.parametrize('dtype, top', [(np.uint8, 255.0), (np.uint16, 65535.0), (np.float32, 1.0)])
def test_dtype_mode_divides_by_the_dtype_maximum(dtype, top):
    assert Normalization('dtype').map_for(np.zeros((2, 2), dtype), 'a.tif') == IntensityMap(0.0, top, False)


def test_fixed_mode():
    assert Normalization('fixed', norm_max=4095.0).map_for(np.zeros(2, np.uint16), 'a') == \
        IntensityMap(0.0, 4095.0, True)


def test_input_percentile_uses_the_input_and_does_not_clip():
    lq = np.arange(1001, dtype=np.float32)  # the p-th percentile is 10 p
    gt = lq * 3
    norm = Normalization('input_percentile', (10.0, 90.0))
    assert norm.map_for(lq, 'lq', gt, 'gt') == IntensityMap(100.0, 800.0, False)
    assert norm.pair_maps(lq, 'lq', gt, 'gt') == (IntensityMap(100.0, 800.0), IntensityMap(100.0, 800.0))
    default = Normalization('input_percentile').map_for(lq, 'lq')  # percentiles (0.1, 99.9)
    assert (default.low, default.scale) == pytest.approx((1.0, 998.0))


@pytest.mark.parametrize('mode', ['gt_percentile', 'percentile'])
def test_legacy_modes_use_the_ground_truth_and_clip(mode):
    lq, gt = np.arange(1001, dtype=np.float32), np.arange(0, 2002, 2, dtype=np.float32)
    norm = Normalization(mode, (10.0, 90.0))
    assert norm.needs_gt and not Normalization('input_percentile').needs_gt
    assert norm.map_for(lq, 'lq', gt, 'gt') == IntensityMap(200.0, 1600.0, True)
    assert norm.pair_maps(lq, 'lq', gt, 'gt') == (IntensityMap(200.0, 1600.0, True),) * 2
    assert _error(norm.map_for, lq, 'lq.tif') == f"normalize: {mode} needs the ground truth of 'lq.tif'."
    flat = np.ones(10, np.float32)
    assert "'gt.tif' is flat" in _error(norm.map_for, lq, 'lq.tif', flat, 'gt.tif', kind=ImageReadError)
    assert "'lq.tif' is flat" in _error(norm.map_for, lq, 'lq.tif', flat, kind=ImageReadError)  # no gt path


def test_dtype_mode_pairs_follow_each_images_dtype():
    maps = Normalization('dtype').pair_maps(np.zeros(2, np.uint16), 'lq', np.zeros(2, np.uint8), 'gt')
    assert maps == (IntensityMap(0.0, 65535.0), IntensityMap(0.0, 255.0))


def test_flat_input_is_an_error():
    msg = _error(Normalization('input_percentile').map_for, np.full((4, 4), 7, np.uint16), 'flat.tif',
                 kind=ImageReadError)
    assert msg.startswith("Image 'flat.tif' is flat between the 0.1th and 99.9th percentiles (value 7.0)")


def test_check_dtype():
    for ok in (np.zeros(2, np.uint8), np.zeros(2, np.uint16), np.zeros(2, np.float32)):
        check_dtype(ok, 'ok')
    assert _error(check_dtype, np.zeros(2, np.int32), 'a.tif') == (
        "Image 'a.tif' has dtype int32; supported: uint8, uint16, float32.")
    assert _error(check_dtype, np.zeros(2, np.float64), 'a.tif').startswith("Image 'a.tif' has dtype float64")
    for bad in (np.nan, np.inf, -np.inf):
        assert _error(check_dtype, np.array([0.0, bad], np.float32), 'b.tif') == (
            "Image 'b.tif' contains NaN or infinite values.")
    int32 = "has dtype int32; supported: uint8, uint16, float32."
    assert _error(Normalization('dtype').map_for, np.zeros(2, np.int32), 'a.tif') == f"Image 'a.tif' {int32}"
    assert _error(Normalization('dtype').pair_maps, np.zeros(2, np.uint8), 'lq.tif', np.zeros(2, np.int32),
                  'gt.tif') == f"Image 'gt.tif' {int32}"


def test_from_options_defaults_and_values():
    assert from_options({}) == Normalization('dtype', (0.1, 99.9), None)
    assert from_options({}, default='input_percentile').mode == 'input_percentile'
    got = from_options({'normalize': 'fixed', 'norm_max': 4095, 'norm_percentiles': [1, 99]})
    assert got == Normalization('fixed', (1.0, 99.0), 4095.0)
    assert isinstance(got.norm_max, float) and all(isinstance(p, float) for p in got.percentiles)
    assert from_options({'norm_percentiles': (0, 100)}).percentiles == (0.0, 100.0)
    assert from_options({'normalize': 'fixed', 'norm_max': 0.5}).norm_max == 0.5  # float data below 1
    assert from_options({'normalize': 'percentile'}).mode == 'percentile'


def test_from_options_errors_name_the_dataset_and_key():
    modes = "('input_percentile', 'dtype', 'fixed', 'gt_percentile', 'percentile')"
    assert _error(from_options, {'name': 'train', 'type': 'X', 'normalize': 'minmax'}) == (
        f"train: normalize must be one of {modes}, got 'minmax'.")
    assert _error(from_options, {'type': 'PairedDefocusDataset', 'normalize': 'x'}).startswith(
        'PairedDefocusDataset: normalize')
    assert _error(from_options, {'normalize': 'x'}).startswith('dataset: normalize')
    for pct in ([1], 'ab', [1, 2, 3], None, ['a', 'b']):
        assert _error(from_options, {'name': 'v', 'norm_percentiles': pct}) == (
            f'v: norm_percentiles must be two numbers, got {pct!r}.')
    for pct in ([-1, 50], [50, 50], [60, 40], [50, 101]):
        assert _error(from_options, {'name': 'v', 'norm_percentiles': pct}) == (
            f'v: norm_percentiles must satisfy 0 <= low < high <= 100, got {pct!r}.')
    for norm_max in (None, 0, -5, '4095'):
        assert _error(from_options, {'name': 'v', 'normalize': 'fixed', 'norm_max': norm_max}) == (
            f'v: normalize: fixed needs a positive norm_max, got {norm_max!r}.')


def test_from_train_options():
    assert from_train_options({}) == Normalization('dtype')
    assert from_train_options({'datasets': None}) == Normalization('dtype')
    opt = {'datasets': {'train': {'type': 'BBBC006Dataset'}, 'val': {'type': 'BBBC006Dataset'}, 'note': 'x'}}
    assert from_train_options(opt) == Normalization('input_percentile')
    assert from_train_options({'datasets': {'t': {'type': 'SyntheticDefocusDataset'}}}).mode == 'dtype'
    assert from_train_options({'datasets': {'t': {'type': 'SomeOther'}}}) == Normalization('dtype')
    assert from_train_options({'datasets': {'t': {}}}) == Normalization('dtype')
    fixed = {'type': 'BBBC006Dataset', 'normalize': 'fixed', 'norm_max': 9}
    assert from_train_options({'datasets': {'note': 'x', 'train': fixed}}) == Normalization('fixed', norm_max=9.0)
    assert from_train_options({'datasets': {'t': {'type': 'SomeOther', 'normalize': 'fixed', 'norm_max': 9}}}) == \
        Normalization('fixed', norm_max=9.0)
    mixed = {'datasets': {'train': {'type': 'BBBC006Dataset'}, 'val': {'type': 'PairedDefocusDataset'}}}
    assert _error(from_train_options, mixed, 'a.yml') == (
        f"a.yml: datasets 'train' and 'val' use different normalisations ({Normalization('input_percentile')} vs "
        f"{Normalization('dtype')}); set the same normalize in both.")
    assert _error(from_train_options, mixed).startswith('option file: datasets')


def test_require_input_only():
    for mode in ('input_percentile', 'dtype', 'fixed'):
        require_input_only(Normalization(mode), 'a.yml')
    for mode in ('gt_percentile', 'percentile'):
        assert _error(require_input_only, Normalization(mode), 'a.yml') == (
            f'a.yml: normalize: {mode} maps intensities with the percentiles of the in-focus ground truth, which a '
            'blurry image to deblur does not have, so mpt-deblur cannot reproduce what the network saw in training. '
            'It still works for evaluation (scripts/test.py). For deblurring, train with normalize: input_percentile '
            "(the BBBC006 default: the input's own percentiles), dtype or fixed.")
