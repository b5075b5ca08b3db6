"""Random Gaussian re-blur that creates B^in (paper Sec. 3.2) against OpenCV's Gaussian blur."""

import cv2
import numpy as np
import pytest
import torch

from mpt_losses import random_gaussian_reblur


def test_each_sample_matches_opencv_gaussian_with_reflect_border():
    x = torch.rand(12, 2, 11, 13, dtype=torch.float64)
    out, sizes = random_gaussian_reblur(x, kernel_sizes=(3, 5, 7), sigma=1.5, return_sizes=True)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert set(sizes.tolist()) <= {3, 5, 7}
    for i, k in enumerate(sizes.tolist()):
        for c in range(2):
            ref = cv2.GaussianBlur(x[i, c].numpy(), (k, k), 1.5, borderType=cv2.BORDER_REFLECT_101)
            np.testing.assert_allclose(out[i, c].numpy(), ref, rtol=0, atol=1e-12)


def test_generator_reproducible_and_all_sizes_drawn():
    x = torch.rand(64, 1, 9, 9)
    a, sa = random_gaussian_reblur(x, generator=torch.Generator().manual_seed(5), return_sizes=True)
    b, sb = random_gaussian_reblur(x, generator=torch.Generator().manual_seed(5), return_sizes=True)
    assert torch.equal(a, b) and torch.equal(sa, sb)
    assert set(sa.tolist()) == {3, 5, 7}  # 64 uniform draws over 3 sizes
    _, sc = random_gaussian_reblur(x, generator=torch.Generator().manual_seed(6), return_sizes=True)
    assert not torch.equal(sa, sc)


def test_default_sigma_blurs_and_keeps_mean_and_grad():
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    out = random_gaussian_reblur(x)
    assert (out - x).abs().mean() > 0.05  # actually blurred
    assert torch.allclose(out.mean(), x.mean(), atol=0.02)  # normalised kernels
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_defaults_are_the_papers_sizes_and_the_authors_sigma():
    """Defaults: sizes {3, 5, 7} drawn uniformly (Sec. 3.2), sigma 10 (authors' code), against OpenCV."""
    x = torch.rand(48, 1, 9, 10, dtype=torch.float64)
    out = random_gaussian_reblur(x, generator=torch.Generator().manual_seed(0))
    _, sizes = random_gaussian_reblur(x, generator=torch.Generator().manual_seed(0), return_sizes=True)
    assert isinstance(out, torch.Tensor) and sorted(set(sizes.tolist())) == [3, 5, 7]
    for i, k in enumerate(sizes.tolist()):
        ref = cv2.GaussianBlur(x[i, 0].numpy(), (k, k), 10.0, borderType=cv2.BORDER_REFLECT_101)
        np.testing.assert_allclose(out[i, 0].numpy(), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize('size, sigma', [(1, 1.0), (3, 0.5), (5, 2.0), (7, 10.0)])
def test_gaussian_kernel_is_the_normalised_sampled_gaussian(size, sigma):
    from mpt_losses.reblur import gaussian_kernel2d

    t = np.arange(size) - (size - 1) / 2
    ref = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * sigma ** 2))
    kernel = gaussian_kernel2d(size, sigma, dtype=torch.float64)
    assert kernel.dtype == torch.float64 and gaussian_kernel2d(size, sigma).dtype == torch.float32
    np.testing.assert_allclose(kernel.numpy(), ref / ref.sum(), rtol=1e-12)


@pytest.mark.parametrize('size, sigma, message', [
    (0, 1.0, 'Gaussian kernel size must be a positive odd integer, got 0'),
    (4, 1.0, 'Gaussian kernel size must be a positive odd integer, got 4'),
    (3, 0.0, 'Gaussian sigma must be > 0, got 0.0'), (3, float('nan'), 'Gaussian sigma must be > 0, got nan')])
def test_gaussian_kernel_bad_arguments(size, sigma, message):
    from mpt_losses.reblur import gaussian_kernel2d

    with pytest.raises(ValueError) as err:
        gaussian_kernel2d(size, sigma)
    assert str(err.value) == message


PAD_3 = 'Reflect padding of 3 needs images larger than 3 x 3; got '


@pytest.mark.parametrize('x, kwargs, message', [
    (torch.rand(1, 8, 8), {}, 'random_gaussian_reblur expects an N x C x H x W tensor, got shape (1, 8, 8)'),
    (torch.rand(1, 1, 8, 8), {'kernel_sizes': ()}, 'kernel_sizes must not be empty'),
    (torch.rand(1, 1, 8, 8), {'kernel_sizes': (3, 4)}, 'kernel_sizes must be positive odd integers, got [3, 4]'),
    (torch.rand(1, 1, 8, 8), {'kernel_sizes': (-1,)}, 'kernel_sizes must be positive odd integers, got [-1]'),
    (torch.rand(1, 1, 3, 8), {'kernel_sizes': (7,)}, PAD_3 + '3 x 8'),
    (torch.rand(1, 1, 8, 3), {'kernel_sizes': (3, 7)}, PAD_3 + '8 x 3'),
])
def test_bad_arguments_messages(x, kwargs, message):
    with pytest.raises(ValueError) as err:
        random_gaussian_reblur(x, **kwargs)
    assert str(err.value) == message


def test_smallest_image_the_padding_allows():
    x = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    out = random_gaussian_reblur(x, kernel_sizes=(7,), sigma=1.0)
    ref = cv2.GaussianBlur(x[0, 0].numpy(), (7, 7), 1.0, borderType=cv2.BORDER_REFLECT_101)
    np.testing.assert_allclose(out[0, 0].numpy(), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize('kwargs, match', [({'kernel_sizes': (4,)}, 'odd'), ({'kernel_sizes': ()}, 'empty'),
                                            ({'sigma': 0}, 'sigma')])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        random_gaussian_reblur(torch.rand(1, 1, 8, 8), **kwargs)


def test_too_small_image_is_rejected():
    with pytest.raises(ValueError, match='larger than 3'):
        random_gaussian_reblur(torch.rand(1, 1, 3, 8), kernel_sizes=(7,))


def test_kernel_size_one_is_the_identity():
    x = torch.rand(3, 2, 6, 7)
    assert torch.equal(random_gaussian_reblur(x, kernel_sizes=(1,)), x)


def test_kernels_are_built_on_the_inputs_device():
    """On the meta device nothing is computed, but a kernel on another device fails loudly."""
    from mpt_losses.reblur import gaussian_kernel2d

    assert gaussian_kernel2d(3, 1.0, device='meta').device.type == 'meta'
    out = random_gaussian_reblur(torch.empty(2, 3, 8, 8, device='meta'))
    assert out.device.type == 'meta' and out.shape == (2, 3, 8, 8)
