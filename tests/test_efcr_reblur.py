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
            np.testing.assert_allclose(out[i, c].numpy(), ref, atol=1e-10)


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


@pytest.mark.parametrize('kwargs, match', [({'kernel_sizes': (4,)}, 'odd'), ({'kernel_sizes': ()}, 'empty'),
                                            ({'sigma': 0}, 'sigma')])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        random_gaussian_reblur(torch.rand(1, 1, 8, 8), **kwargs)


def test_too_small_image_is_rejected():
    with pytest.raises(ValueError, match='larger than 3'):
        random_gaussian_reblur(torch.rand(1, 1, 3, 8), kernel_sizes=(7,))
