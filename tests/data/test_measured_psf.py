"""Measured PSFs (a bead image, a PSF z-stack TIFF) as a PSF source of SyntheticDefocusDataset."""

import cv2
import numpy as np
import pytest
import tifffile

from mpt_data import SyntheticDefocusDataset
from mpt_data.measured_psf import MeasuredPSFError, load_measured_psf, measured_psf
from mpt_data.psf import make_psf, widefield_psf


def _embed(kernel, canvas=45, at=(20, 24)):
    out = np.zeros((canvas, canvas))
    half = kernel.shape[0] // 2
    out[at[0] - half:at[0] + half + 1, at[1] - half:at[1] + half + 1] = kernel
    return out


@pytest.fixture
def stack_file(tmp_path):
    """Three defocus planes of a widefield PSF (0, 1, 2 waves), off-centre in a 45 x 45 frame, offset 100."""
    kernels = [widefield_psf(1.5, w) for w in (0.0, 1.0, 2.0)]
    size = max(k.shape[0] for k in kernels)
    kernels = [np.pad(k, (size - k.shape[0]) // 2) for k in kernels]
    planes = [100 + 60000 * _embed(k / kernels[0].max()) for k in kernels]
    path = tmp_path / 'psf_stack.tif'
    tifffile.imwrite(path, np.round(np.stack(planes)).astype(np.uint16), photometric='minisblack')
    return str(path), kernels


def test_a_z_stack_gives_one_normalised_centred_kernel_per_plane(stack_file):
    path, truth = stack_file
    kernels = load_measured_psf(path)
    assert kernels.shape[0] == 3 and kernels.shape[1] == kernels.shape[2] and kernels.shape[1] % 2 == 1
    assert np.allclose(kernels.sum(axis=(1, 2)), 1, atol=1e-5) and kernels.min() >= 0
    half = kernels.shape[1] // 2
    assert np.unravel_index(np.argmax(kernels[0]), kernels[0].shape) == (half, half)  # centred on the bead
    for kernel, expected in zip(kernels, truth):  # offset removed, shape kept (16-bit rounding aside)
        pad = half - expected.shape[0] // 2
        full = np.pad(expected, pad) if pad > 0 else expected[-pad:pad or None, -pad:pad or None]
        assert np.abs(kernel - full / full.sum()).max() < 2e-3 * kernel.max() + 1e-4
    assert np.array_equal(measured_psf(path, 2), kernels[2])
    assert not kernels.flags.writeable


def test_a_noisy_bead_image_loses_its_offset(tmp_path):
    rng = np.random.default_rng(0)
    bead = 300 + 5000 * _embed(widefield_psf(2.0, 0.5) / widefield_psf(2.0, 0.5).max(), 51, (25, 22))
    noisy = np.clip(rng.poisson(bead), 0, 65535).astype(np.uint16)
    cv2.imwrite(str(tmp_path / 'bead.png'), noisy)
    kernel = measured_psf(str(tmp_path / 'bead.png'), radius=12)
    assert kernel.shape == (25, 25) and kernel.sum() == pytest.approx(1, abs=1e-5)
    yy, xx = np.indices(kernel.shape)
    assert abs((yy * kernel).sum() - 12) < 0.5 and abs((xx * kernel).sum() - 12) < 0.5  # centred on the bead
    ring = np.concatenate([kernel[0], kernel[-1], kernel[:, 0], kernel[:, -1]])
    assert ring.mean() < 0.05 * kernel.max()  # the camera offset of 300 counts is gone


def test_bad_measured_psfs_are_named(tmp_path):
    with pytest.raises(MeasuredPSFError, match='nope.tif.*does not exist'):
        load_measured_psf(str(tmp_path / 'nope.tif'))
    tifffile.imwrite(tmp_path / 'flat.tif', np.full((9, 9), 7, np.uint16))
    with pytest.raises(MeasuredPSFError, match='flat.tif.*0 everywhere'):
        load_measured_psf(str(tmp_path / 'flat.tif'))
    cv2.imwrite(str(tmp_path / 'rgb.png'), np.zeros((9, 9, 3), np.uint8))
    with pytest.raises(MeasuredPSFError, match='rgb.png.*3 colour channels'):
        load_measured_psf(str(tmp_path / 'rgb.png'))
    (tmp_path / 'broken.tif').write_bytes(b'II*\0garbage')
    with pytest.raises(MeasuredPSFError, match='broken.tif'):
        load_measured_psf(str(tmp_path / 'broken.tif'))


def test_the_dataset_draws_planes_of_a_measured_stack(stack_file, tmp_path):
    path, _ = stack_file
    sharp = np.zeros((40, 40), np.uint8)
    sharp[10:30, 18:22] = 200
    (tmp_path / 'sharp').mkdir()
    cv2.imwrite(str(tmp_path / 'sharp' / 'sharp.png'), sharp)
    opt = {'name': 'measured', 'phase': 'val', 'dataroot_gt': str(tmp_path / 'sharp'), 'in_chans': 1,
           'pairs_per_image': 12,
           'psf': {'measured': {'file': path}}, 'noise': {'photons': None, 'read_noise': [0, 0], 'clean_fraction': 1},
           'normalize': 'dtype'}
    ds = SyntheticDefocusDataset(opt)
    kernels = load_measured_psf(path)
    planes = set()
    for i in range(len(ds)):
        pair = ds.pair(i)
        planes.add(pair.params['plane'])
        assert np.array_equal(pair.psf, kernels[pair.params['plane']])
    assert planes == {0, 1, 2}
    assert np.array_equal(make_psf('measured', file=path, plane=1), kernels[1])
    one = SyntheticDefocusDataset({**opt, 'psf': {'measured': {'file': path, 'plane': [2, 2]}}})
    assert {one.pair(i).params['plane'] for i in range(4)} == {2}
    with pytest.raises(ValueError, match=r'psf.measured.plane \[0.0, 5.0\] must be whole plane numbers within 0..2'):
        SyntheticDefocusDataset({**opt, 'psf': {'measured': {'file': path, 'plane': [0, 5]}}})
    with pytest.raises(ValueError, match='psf.measured needs file'):
        SyntheticDefocusDataset({**opt, 'psf': {'measured': {'plane': [0, 1]}}})
