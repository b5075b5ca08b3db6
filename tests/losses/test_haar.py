"""Haar transform (f^l, f^h of paper Sec. 3.2) against PyWavelets."""

import numpy as np
import pytest
import pywt
import torch

from mpt_losses import haar_dwt


def _pywt_bands(x: np.ndarray):
    """pywt.dwt2 per sample and channel -> (LL, [LH, HL, HH] band-major along channels)."""
    lows, highs = [], []
    for sample in x:
        coeffs = [pywt.dwt2(channel, 'haar') for channel in sample]
        lows.append(np.stack([c[0] for c in coeffs]))
        highs.append(np.concatenate([np.stack([c[1][band] for c in coeffs]) for band in range(3)]))
    return np.stack(lows), np.stack(highs)


# odd sizes that are multiples of 3 on one axis only, and one-pixel-wide images, catch a wrong parity test
@pytest.mark.parametrize('shape', [(2, 3, 8, 12), (3, 1, 7, 9), (1, 4, 10, 5), (2, 2, 1, 6), (1, 1, 3, 3),
                                   (1, 2, 9, 4), (1, 1, 4, 9), (1, 1, 6, 1)])
def test_haar_matches_pywt(shape):
    x = torch.rand(*shape, dtype=torch.float64) * 2 - 0.5
    low, high = haar_dwt(x)
    ref_low, ref_high = _pywt_bands(x.numpy())
    assert low.shape == ref_low.shape and high.shape == ref_high.shape
    np.testing.assert_allclose(low.numpy(), ref_low, atol=1e-5, rtol=0)
    np.testing.assert_allclose(high.numpy(), ref_high, atol=1e-5, rtol=0)


def test_haar_float32_and_orthonormal_energy():
    x = torch.rand(2, 3, 16, 16)
    low, high = haar_dwt(x)
    ref_low, ref_high = _pywt_bands(x.double().numpy())
    np.testing.assert_allclose(low.numpy(), ref_low, atol=1e-5)
    np.testing.assert_allclose(high.numpy(), ref_high, atol=1e-5)
    # orthonormal: energy is preserved for even sizes
    assert torch.allclose(x.pow(2).sum(), low.pow(2).sum() + high.pow(2).sum(), rtol=1e-5)


def test_haar_is_differentiable():
    x = torch.rand(1, 2, 5, 6, requires_grad=True)
    low, high = haar_dwt(x)
    (low.sum() + 2 * high.pow(2).sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize('bad', [torch.rand(3, 8, 8), torch.rand(1, 1, 1, 0, 4)])
def test_haar_rejects_bad_shapes(bad):
    with pytest.raises(ValueError, match='N x C x H x W'):
        haar_dwt(bad)


@pytest.mark.parametrize('shape', [(1, 1, 0, 4), (1, 1, 4, 0)])
def test_haar_rejects_empty_images(shape):
    with pytest.raises(ValueError) as err:
        haar_dwt(torch.rand(*shape))
    assert str(err.value) == f'haar_dwt needs a non-empty image, got shape {shape}'


def test_haar_rejects_non_tensors():
    with pytest.raises(TypeError) as err:
        haar_dwt([[1.0]])
    assert str(err.value) == 'haar_dwt expects a torch.Tensor, got list'
