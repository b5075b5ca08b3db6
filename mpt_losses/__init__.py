"""Losses registered in BasicSR's LOSS_REGISTRY: EFCR (paper Sec. 3.2) and its helpers."""

import mpt_common.basicsr_compat  # noqa: F401  (before any basicsr import)

from .efcr_loss import EFCRLoss
from .haar import haar_dwt
from .reblur import gaussian_kernel2d, random_gaussian_reblur

__all__ = ['EFCRLoss', 'gaussian_kernel2d', 'haar_dwt', 'random_gaussian_reblur']
