"""Full-reference image quality of a deblurred image against its sharp ground truth, as the benchmarks report it.

PSNR and SSIM are BasicSR's (``basicsr.metrics``), computed on [0, 1] images scaled to 255 with the output clipped
to [0, 1]; LPIPS (:mod:`mpt_metrics.lpips_metric`, AlexNet) where its backbone weights are on disk.
"""

from __future__ import annotations

import os.path as osp
from typing import Dict, List

import numpy as np


def lpips_available() -> bool:
    """True when the LPIPS (AlexNet) backbone weights are on disk (they are never downloaded here)."""
    from mpt_metrics.lpips_metric import backbone_checkpoint

    return osp.isfile(backbone_checkpoint('alex'))


def psnr(out: np.ndarray, gt: np.ndarray) -> float:
    """BasicSR's PSNR of ``out`` (clipped to [0, 1]) against ``gt``, on the 0-255 scale."""
    from basicsr.metrics import calculate_psnr

    return float(calculate_psnr(np.clip(out, 0, 1) * 255.0, np.clip(gt, 0, 1) * 255.0, 0, input_order='HWC'))


def scores(out: np.ndarray, gt: np.ndarray, with_lpips: bool) -> Dict[str, float]:
    """PSNR / SSIM (BasicSR, 0-255 scale) and optionally LPIPS of ``out`` (clipped to [0, 1]) against ``gt``."""
    from basicsr.metrics import calculate_ssim

    result = {'psnr': psnr(out, gt), 'ssim': float(calculate_ssim(np.clip(out, 0, 1) * 255.0,
                                                                   np.clip(gt, 0, 1) * 255.0, 0, input_order='HWC'))}
    if with_lpips:
        from mpt_metrics.lpips_metric import calculate_lpips

        result['lpips'] = float(calculate_lpips(np.clip(out, 0, 1)[:, :, ::-1], np.clip(gt, 0, 1)[:, :, ::-1]))
    return result


def mean_psnr(outs: List[np.ndarray], pairs: list) -> float:
    """Mean :func:`psnr` of ``outs`` against the ``gt`` of ``pairs`` (objects with a ``gt`` array)."""
    return float(np.mean([psnr(o, p.gt) for o, p in zip(outs, pairs)]))
