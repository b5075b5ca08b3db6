"""Random Gaussian re-blur that builds the extended samples B^in of EFCR (paper Sec. 3.2, Eqs. 6 and 10).

Each sample of a batch is blurred with its own isotropic Gaussian kernel whose size is drawn uniformly from
``kernel_sizes`` (the paper's {3, 5, 7}; the authors' code draws from {3, 5, 5, 7}), with a fixed ``sigma``
(10 in the authors' code, which makes the kernels close to box filters). Borders use reflect padding.
All kernels are embedded, centred, in one ``K_max x K_max`` kernel (zeros outside), so the whole batch is one
grouped convolution; zero taps never read the extra padded pixels, so the result equals blurring each sample
with its own kernel and reflect padding of ``k // 2``.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

__all__ = ['gaussian_kernel2d', 'random_gaussian_reblur']

DEFAULT_KERNEL_SIZES = (3, 5, 7)
DEFAULT_SIGMA = 10.0


def gaussian_kernel2d(size: int, sigma: float, dtype: torch.dtype = torch.float32,
                      device: Optional[torch.device] = None) -> torch.Tensor:
    """Normalised ``size x size`` isotropic Gaussian kernel (``size`` odd, ``sigma`` > 0)."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f'Gaussian kernel size must be a positive odd integer, got {size}')
    if not sigma > 0:
        raise ValueError(f'Gaussian sigma must be > 0, got {sigma}')
    coords = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g1d = torch.exp(-coords**2 / (2.0 * float(sigma) ** 2))
    kernel = torch.outer(g1d, g1d)
    return (kernel / kernel.sum()).to(dtype)


def random_gaussian_reblur(x: torch.Tensor, kernel_sizes: Sequence[int] = DEFAULT_KERNEL_SIZES,
                           sigma: float = DEFAULT_SIGMA, generator: Optional[torch.Generator] = None,
                           return_sizes: bool = False):
    """Blur every sample of ``x`` (``N x C x H x W``) with a Gaussian of a randomly drawn kernel size.

    Args:
        x: input batch; the output has the same shape, dtype and device.
        kernel_sizes: candidate odd kernel sizes, drawn uniformly per sample (repeat a size to weight it).
        sigma: Gaussian standard deviation (pixels), shared by all kernel sizes.
        generator: optional ``torch.Generator`` used for the draws (reproducibility); its device is used
            for the draw, the kernels are then moved to ``x``'s device.
        return_sizes: also return the ``N`` drawn kernel sizes (a LongTensor on the CPU).
    """
    if x.dim() != 4:
        raise ValueError(f'random_gaussian_reblur expects an N x C x H x W tensor, got shape {tuple(x.shape)}')
    sizes = [int(k) for k in kernel_sizes]
    if not sizes:
        raise ValueError('kernel_sizes must not be empty')
    for k in sizes:
        if k < 1 or k % 2 == 0:
            raise ValueError(f'kernel_sizes must be positive odd integers, got {list(kernel_sizes)}')
    n, c, h, w = x.shape
    k_max = max(sizes)
    pad = k_max // 2
    if pad >= h or pad >= w:
        raise ValueError(f'Reflect padding of {pad} needs images larger than {pad} x {pad}; got {h} x {w}')
    draw_device = generator.device if generator is not None else torch.device('cpu')
    picks = torch.randint(len(sizes), (n,), generator=generator, device=draw_device).cpu()
    drawn = torch.tensor(sizes, dtype=torch.long)[picks]

    bank = {}
    for k in set(drawn.tolist()):
        kernel = torch.zeros(k_max, k_max, dtype=x.dtype, device=x.device)
        off = (k_max - k) // 2
        kernel[off:off + k, off:off + k] = gaussian_kernel2d(k, sigma, dtype=x.dtype, device=x.device)
        bank[k] = kernel
    weight = torch.stack([bank[k] for k in drawn.tolist()])  # N x K x K
    weight = weight.repeat_interleave(c, dim=0).unsqueeze(1)  # (N*C) x 1 x K x K

    padded = F.pad(x.reshape(1, n * c, h, w), (pad, pad, pad, pad), mode='reflect')
    out = F.conv2d(padded, weight, groups=n * c).reshape(n, c, h, w)
    return (out, drawn) if return_sizes else out
