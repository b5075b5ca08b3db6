"""Camera noise for synthetic pairs: the Poisson-Gaussian model of photon shot noise plus read noise.

For a clean image ``x`` in [0, 1] and a photon budget ``photons`` (expected photo-electrons at ``x = 1``)::

    y = Poisson(photons * x) / photons + N(0, read_noise^2)

so ``E[y] = x`` and ``Var[y] = x / photons + read_noise^2`` (Foi et al., IEEE TIP 2008, "Practical
Poissonian-Gaussian noise modeling"). Values are not clipped: ``y`` may leave [0, 1] slightly, as a
background-subtracted camera signal does.
"""

from __future__ import annotations

from typing import Optional

import numpy as np


def poisson_gaussian(img: np.ndarray, photons: Optional[float], read_noise: float,
                     rng: np.random.Generator) -> np.ndarray:
    """Noisy copy of ``img`` (float, >= 0) with ``photons`` at 1 (``None``: no shot noise) and Gaussian read noise
    of standard deviation ``read_noise``; float32."""
    img = np.asarray(img, np.float32)
    if img.size and float(img.min()) < 0:
        raise ValueError(f'poisson_gaussian needs a non-negative image, got a minimum of {float(img.min())}.')
    out = img.astype(np.float64)
    if photons is not None:
        if photons <= 0:
            raise ValueError(f'photons must be > 0, got {photons}.')
        out = rng.poisson(out * photons) / photons
    if read_noise < 0:
        raise ValueError(f'read_noise must be >= 0, got {read_noise}.')
    if read_noise > 0:
        out = out + rng.normal(0.0, read_noise, size=out.shape)
    return out.astype(np.float32)
