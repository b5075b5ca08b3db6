"""Single-level orthonormal 2-D Haar wavelet transform, the f^l / f^h operators of EFCR (paper Sec. 3.2).

``haar_dwt(x)`` splits an ``N x C x H x W`` tensor into

* ``low``  (``N x C x H' x W'``): the LL band (``f^l`` in Eqs. 4-10), pywt's ``cA``;
* ``high`` (``N x 3C x H' x W'``): the LH, HL and HH bands concatenated along channels (``f^h``), in the
  band-major order ``[LH of channels 0..C-1, HL of channels 0..C-1, HH of channels 0..C-1]`` where
  LH = pywt's ``cH`` (horizontal detail), HL = ``cV`` (vertical detail), HH = ``cD`` (diagonal detail).

Per channel the bands equal ``pywt.dwt2(x, 'haar')`` (default mode ``'symmetric'``), signs included:
with ``a, b, c, d`` the top-left, top-right, bottom-left and bottom-right pixels of each 2 x 2 block,
``cA = (a+b+c+d)/2``, ``cH = (a+b-c-d)/2``, ``cV = (a-b+c-d)/2``, ``cD = (a-b-c+d)/2``.

Odd sizes: pywt's symmetric extension appends a mirror copy of the last row/column, which for the
2-tap Haar filter is one replicated row/column at the bottom/right; ``H' = ceil(H/2)``, ``W' = ceil(W/2)``,
exactly as pywt. Implemented with pads and strided slicing, so it is differentiable and runs on the input's
device and dtype.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F

__all__ = ['haar_dwt']


def haar_dwt(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Return ``(low, high)`` = (LL band, [LH, HL, HH] bands) of ``x`` (``N x C x H x W``), see module doc."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f'haar_dwt expects a torch.Tensor, got {type(x).__name__}')
    if x.dim() != 4:
        raise ValueError(f'haar_dwt expects an N x C x H x W tensor, got shape {tuple(x.shape)}')
    height, width = x.shape[-2:]
    if height < 1 or width < 1:
        raise ValueError(f'haar_dwt needs a non-empty image, got shape {tuple(x.shape)}')
    if height % 2 or width % 2:
        # symmetric extension by one sample == replicate the last row / column (pywt mode 'symmetric')
        x = F.pad(x, (0, width % 2, 0, height % 2), mode='replicate')
    a = x[..., 0::2, 0::2]
    b = x[..., 0::2, 1::2]
    c = x[..., 1::2, 0::2]
    d = x[..., 1::2, 1::2]
    top, bottom = a + b, c + d
    left_minus_right_top, left_minus_right_bottom = a - b, c - d
    low = (top + bottom) * 0.5
    lh = (top - bottom) * 0.5  # pywt cH
    hl = (left_minus_right_top + left_minus_right_bottom) * 0.5  # pywt cV
    hh = (left_minus_right_top - left_minus_right_bottom) * 0.5  # pywt cD
    return low, torch.cat((lh, hl, hh), dim=1)
