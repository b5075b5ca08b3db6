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
