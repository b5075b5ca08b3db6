"""No-reference sharpness (``calculate_sharpness``) for validation sets without ground truth.

Unlabeled defocus sets (WNLO, CataBlur, CUHK; Sec. 4.1) have no sharp reference, so PSNR/SSIM/LPIPS do not
apply. Two classical focus measures are offered (higher = sharper):

* ``laplacian`` (default): variance of the 3x3 Laplacian response (Pech-Pacheco et al., 2000);
* ``tenengrad``: mean squared Sobel gradient magnitude (Krotkov, 1987).

The image is first converted to one channel in [0, 1] by dividing by its dtype's maximum (8 bit: 255,
16 bit: 65535; floats are taken as [0, 1]), so the same scene stored in 8 and 16 bit scores the same.
A flat image scores 0.

YAML (``val.metrics``)::

    sharpness: {type: calculate_sharpness, measure: laplacian}   # better: higher (BasicSR's default)

BasicSR calls metrics with ``img`` (the output) and ``img2`` (the ground truth, when there is one);
``img2`` is ignored here.
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np
from basicsr.utils.registry import METRIC_REGISTRY

import mpt_common.basicsr_compat  # noqa: F401  (before any basicsr import)

MEASURES = ('laplacian', 'tenengrad')


def to_unit_gray(img: np.ndarray, input_order: str = 'HWC') -> np.ndarray:
    """``H x W [x C]`` image -> float64 ``H x W`` in [0, 1] (channel mean; integers divided by dtype max)."""
    img = np.asarray(img)
    if img.ndim == 3 and input_order == 'CHW':
        img = img.transpose(1, 2, 0)
    if img.ndim not in (2, 3) or img.size == 0:
        raise ValueError(f'calculate_sharpness: expected an H x W or H x W x C image, got shape {img.shape}.')
    scale = float(np.iinfo(img.dtype).max) if np.issubdtype(img.dtype, np.integer) else 1.0
    img = img.astype(np.float64) / scale
    return img.mean(axis=2) if img.ndim == 3 else img


@METRIC_REGISTRY.register()
def calculate_sharpness(img: np.ndarray, img2: Optional[np.ndarray] = None, crop_border: int = 0,
                        input_order: str = 'HWC', measure: str = 'laplacian', **kwargs) -> float:
    """Focus measure of ``img`` (higher = sharper); see the module docstring."""
    if measure not in MEASURES:
        raise ValueError(f'calculate_sharpness: measure must be one of {MEASURES}, got {measure!r}.')
    gray = to_unit_gray(img, input_order)
    if crop_border:
        gray = gray[crop_border:-crop_border, crop_border:-crop_border]
    if min(gray.shape) < 3:
        raise ValueError(f'calculate_sharpness: image of size {gray.shape} is too small (needs at least 3x3).')
    if measure == 'laplacian':
        return float(cv2.Laplacian(gray, cv2.CV_64F, ksize=3, borderType=cv2.BORDER_REFLECT).var())
    gx = cv2.Sobel(gray, cv2.CV_64F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT)
    gy = cv2.Sobel(gray, cv2.CV_64F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT)
    return float(np.mean(gx * gx + gy * gy))
