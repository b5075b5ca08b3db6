"""The defocus PSF family of mpt_data.psf: normalisation, symmetry and known-answer cases."""

import math

import numpy as np
import pytest
from scipy.special import j1

from mpt_data.psf import AIRY_FIRST_ZERO, disk_psf, gaussian_psf, make_psf, widefield_geometric_radius, widefield_psf

CASES = [('disk', {'radius': 2.7}), ('gaussian', {'sigma': 1.3}), ('widefield', {'airy_radius': 1.5}),
         ('widefield', {'airy_radius': 1.2, 'defocus_waves': 1.1})]


@pytest.mark.parametrize('kind,params', CASES)
def test_unit_sum_non_negative_odd_and_symmetric(kind, params):
    psf = make_psf(kind, **params)
    assert psf.shape[0] == psf.shape[1] and psf.shape[0] % 2 == 1
    assert psf.min() >= 0
    assert psf.sum() == pytest.approx(1.0, abs=1e-5)
    for sym in (psf[::-1], psf[:, ::-1], psf.T):
        np.testing.assert_allclose(psf, sym, atol=1e-7)
    h = psf.shape[0] // 2
    yy, xx = np.mgrid[-h:h + 1, -h:h + 1]
    assert abs((psf * yy).sum()) < 1e-6 and abs((psf * xx).sum()) < 1e-6  # centred (a defocused ring may be dark
    # in the middle, so the centroid, not the maximum)


def test_disk_of_radius_r_has_the_right_support():
    r = 3.0
    psf = disk_psf(r)
    h = psf.shape[0] // 2
    yy, xx = np.mgrid[-h:h + 1, -h:h + 1]
    dist = np.hypot(yy, xx)
    assert (psf[dist <= r - 0.75] > 0).all()  # pixels wholly inside are covered
    assert (psf[dist >= r + 0.75] == 0).all()  # pixels wholly outside are not
    inner = psf[dist <= r - 0.75]
    np.testing.assert_allclose(inner, inner.max(), rtol=1e-6)  # uniform inside
    assert psf.sum() == pytest.approx(1.0, abs=1e-6)
    # area: the disk's covered pixel area is pi r^2, so its uniform inner value is 1 / (pi r^2)
    assert inner.max() == pytest.approx(1 / (math.pi * r * r), rel=0.02)


def test_gaussian_has_the_requested_variance():
    sigma = 1.7
    psf = gaussian_psf(sigma, truncate=6.0)
    h = psf.shape[0] // 2
    xx = np.arange(-h, h + 1)
    var = float((psf.sum(axis=0) * xx**2).sum())
    # pixel integration adds the box variance 1/12
    assert var == pytest.approx(sigma**2 + 1 / 12, rel=1e-3)
    assert gaussian_psf(0).tolist() == [[1.0]]


def test_in_focus_widefield_psf_is_the_airy_pattern():
    a = 4.0  # first dark ring at 4 pixels
    psf = widefield_psf(a, 0.0, supersample=1)
    h = psf.shape[0] // 2
    r = np.arange(1, h + 1, dtype=np.float64)
    v = 2 * np.pi * r * AIRY_FIRST_ZERO / a
    airy = (2 * j1(v) / v) ** 2
    profile = psf[h, h + 1:] / psf[h, h]
    np.testing.assert_allclose(profile, airy, atol=2e-3)
    assert profile[int(a) - 1] < 1e-3  # the first zero at r = a


def test_defocus_spreads_the_widefield_psf_to_its_geometric_radius():
    a, w = 1.0, 2.0
    psf = widefield_psf(a, w)
    h = psf.shape[0] // 2
    yy, xx = np.mgrid[-h:h + 1, -h:h + 1]
    dist = np.hypot(yy, xx)
    r_geo = widefield_geometric_radius(a, w)
    assert r_geo == pytest.approx(2 * w / AIRY_FIRST_ZERO)
    assert psf[dist <= r_geo + 1.5 * a].sum() > 0.9  # energy inside the geometric shadow (plus diffraction)
    assert psf[dist <= r_geo / 2].sum() < 0.5  # and spread over it, not concentrated at the centre
    focused = widefield_psf(a, 0.0)
    assert psf.max() < focused.max() / 5


def test_bad_parameters_are_errors():
    with pytest.raises(ValueError, match='radius'):
        disk_psf(-1)
    with pytest.raises(ValueError, match='sigma'):
        gaussian_psf(-0.1)
    with pytest.raises(ValueError, match='airy_radius'):
        widefield_psf(0)
    with pytest.raises(ValueError, match='PSF type'):
        make_psf('motion', length=3)


# --- the physical widefield PSF: NA, immersion, wavelength, pixel size, defocus in micrometres ---------------------
def _radial_profile(psf):
    c = psf.shape[0] // 2
    return psf[c, c:]


def test_in_focus_physical_psf_has_its_first_dark_ring_at_0_61_lambda_over_na():
    from mpt_data.psf import physical_widefield_psf

    for na, wavelength, pixel in ((0.5, 0.5, 0.05), (1.4, 0.52, 0.02)):
        ring = 0.61 * wavelength / na / pixel  # pixels
        profile = _radial_profile(physical_widefield_psf(na, wavelength, pixel, 0.0, 1.518 if na > 1 else 1.0,
                                                         supersample=5))
        first_min = int(np.argmin(profile[int(ring * 0.7):int(ring * 1.3) + 1])) + int(ring * 0.7)
        assert abs(first_min - ring) <= 0.6, (na, first_min, ring)
        assert profile[first_min] < 0.02 * profile[0]


def test_physical_psf_equals_the_paraxial_one_at_low_na_and_differs_at_high_na():
    from mpt_data.psf import AIRY_FIRST_ZERO, physical_widefield_psf, widefield_psf

    def paraxial(na, wavelength, pixel, dz, n):
        return widefield_psf(AIRY_FIRST_ZERO * wavelength / na / pixel, dz * na ** 2 / (2 * n * wavelength))

    low = physical_widefield_psf(0.1, 0.5, 0.5, 20.0, 1.0)  # 10x/0.1: W = 0.2 waves
    ref = paraxial(0.1, 0.5, 0.5, 20.0, 1.0)
    assert low.shape == ref.shape and np.abs(low - ref).max() < 2e-3 * ref.max()
    high = physical_widefield_psf(1.4, 0.52, 0.065, 1.0, 1.518)  # 100x/1.4 oil, 1 um out of focus
    ref = paraxial(1.4, 0.52, 0.065, 1.0, 1.518)
    assert high.shape[0] > ref.shape[0]  # the exact blur is wider: dz tan(theta) > paraxial dz NA / n

    def rms_radius(psf):
        y, x = np.indices(psf.shape) - psf.shape[0] // 2
        return float(np.sqrt((psf * (x ** 2 + y ** 2)).sum()))

    assert rms_radius(high) > 1.3 * rms_radius(ref)


def test_physical_psf_refuses_impossible_optics():
    from mpt_data.psf import physical_widefield_psf

    with pytest.raises(ValueError, match='na 1.4 must be below the immersion index 1.0'):
        physical_widefield_psf(1.4, 0.5, 0.1, 0.0, 1.0)
    with pytest.raises(ValueError, match=r'pixel_size_um = 0 must be > 0'):
        physical_widefield_psf(0.5, 0.5, 0, 0.0)


def test_synthetic_dataset_draws_physical_psfs_within_the_defocus_range(tmp_path):
    import cv2

    from mpt_data import SyntheticDefocusDataset
    from mpt_data.psf import physical_widefield_psf

    cv2.imwrite(str(tmp_path / 'a.png'), (np.random.default_rng(0).random((48, 48)) * 255).astype(np.uint8))
    optics = {'na': 0.75, 'wavelength_um': 0.52, 'pixel_size_um': 0.16, 'defocus_um': [0.5, 2.0]}
    ds = SyntheticDefocusDataset({'name': 's', 'phase': 'val', 'dataroot_gt': str(tmp_path), 'in_chans': 1,
                                  'pairs_per_image': 4, 'psf': {'widefield_physical': optics},
                                  'noise': {'photons': None}})
    for i in range(4):
        pair = ds.pair(i)
        assert pair.params['psf'] == 'widefield_physical' and 0.5 <= pair.params['defocus_um'] <= 2.0
        assert pair.params['immersion_index'] == 1.0 and pair.params['na'] == 0.75
        assert np.array_equal(pair.psf, physical_widefield_psf(0.75, 0.52, 0.16, pair.params['defocus_um']))
    with pytest.raises(ValueError, match='needs pixel_size_um'):
        SyntheticDefocusDataset({'name': 's', 'phase': 'val', 'dataroot_gt': str(tmp_path),
                                 'psf': {'widefield_physical': {'na': 0.75, 'wavelength_um': 0.5}}})
    with pytest.raises(ValueError, match='must be below the immersion index'):
        SyntheticDefocusDataset({'name': 's', 'phase': 'val', 'dataroot_gt': str(tmp_path),
                                 'psf': {'widefield_physical': {**optics, 'na': 1.2}}})
