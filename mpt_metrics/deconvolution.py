"""Classical deconvolution given the true PSF: the oracle baselines the deblurring benchmarks compare against.

scikit-image's Richardson-Lucy and Wiener-Hunt deconvolutions, per channel, on the image reflect-padded by the
PSF radius (a zero border costs 5-15 dB). A real user rarely knows the PSF; these rows show what knowing it is
worth. :func:`tune` picks the iteration count / balance on separate tuning pairs (never on the test set).
"""

from __future__ import annotations

from typing import Callable, Dict

import numpy as np

from mpt_metrics.image_quality import mean_psnr

RL_ITERATIONS = (5, 10, 20, 40, 80, 160)
WIENER_BALANCES = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)


def _per_channel(img: np.ndarray, psf: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    pad = psf.shape[0] // 2 + 4
    out = []
    for c in range(img.shape[2]):
        padded = np.pad(img[:, :, c].astype(np.float64), pad, mode='reflect')
        out.append(fn(padded)[pad:-pad, pad:-pad])
    return np.stack(out, axis=2).astype(np.float32)


def richardson_lucy(img: np.ndarray, psf: np.ndarray, iterations: int) -> np.ndarray:
    """scikit-image's Richardson-Lucy with the true PSF (non-negative data: the noisy input clipped at 0)."""
    from skimage.restoration import richardson_lucy as rl

    return _per_channel(np.maximum(img, 0), psf, lambda x: rl(x, psf.astype(np.float64), num_iter=iterations,
                                                              clip=False))


def wiener(img: np.ndarray, psf: np.ndarray, balance: float) -> np.ndarray:
    """scikit-image's Wiener-Hunt deconvolution with the true PSF and regularisation ``balance``."""
    from skimage.restoration import wiener as wh

    return _per_channel(img, psf, lambda x: wh(x, psf.astype(np.float64), balance, clip=False))


def tune(pairs: list) -> Dict[str, float]:
    """Best RL iteration count and Wiener balance (mean PSNR) on the tuning pairs."""
    rl = {n: mean_psnr([richardson_lucy(p.lq, p.psf, n) for p in pairs], pairs) for n in RL_ITERATIONS}
    wh = {b: mean_psnr([wiener(p.lq, p.psf, b) for p in pairs], pairs) for b in WIENER_BALANCES}
    return {'rl_iterations': max(rl, key=rl.get), 'wiener_balance': max(wh, key=wh.get)}
