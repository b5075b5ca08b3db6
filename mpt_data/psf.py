"""Defocus point-spread functions (PSFs) for synthesising blurry/sharp pairs from in-focus images.

Three models of a defocused optical system, each a 2-D kernel of odd size, centred, non-negative and normalised
to sum 1 (see ``docs/guides/synthetic_data.md`` for the physics and the parameter ranges):

* :func:`disk_psf` (re-exported from :mod:`mpt_data.defocus`): geometric optics of a thin lens. A point out of
  focus images to a uniform disk, the circle of confusion, of radius ``radius`` pixels.
* :func:`gaussian_psf`: the common smooth approximation of defocus (and of the in-focus blur of many systems),
  standard deviation ``sigma`` pixels.
* :func:`widefield_psf`: the scalar diffraction PSF of a widefield (fluorescence) microscope with a circular pupil
  and a defocus phase, ``|F{P(rho) exp(i 2 pi W rho^2)}|^2`` (Goodman, *Introduction to Fourier Optics*, Sec. 6.4),
  where ``W`` is the defocus coefficient in waves at the pupil edge. At ``W = 0`` it is the Airy pattern
  ``[2 J1(v) / v]^2``; ``airy_radius`` is the radius of its first dark ring in pixels, ``0.61 lambda / NA``
  divided by the pixel size. For ``W`` of a few waves its support tends to the geometric disk of radius
  ``2 W lambda / NA`` (:func:`widefield_geometric_radius`).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from mpt_data.defocus import disk_psf

__all__ = ['disk_psf', 'gaussian_psf', 'widefield_psf', 'widefield_geometric_radius', 'make_psf', 'PSF_TYPES']

AIRY_FIRST_ZERO = 0.6098  # first zero of [2 J1(v)/v]^2 at v = 3.8317, in units of lambda / NA (3.8317 / 2 pi)
PSF_TYPES = ('disk', 'gaussian', 'widefield')


def gaussian_psf(sigma: float, truncate: float = 3.5) -> np.ndarray:
    """Isotropic Gaussian of standard deviation ``sigma`` pixels, radius ``ceil(truncate * sigma)``, sum 1.

    ``sigma`` 0 is the identity (a single 1). Pixel values are the Gaussian integrated over each pixel (product
    of 1-D error-function differences), so small ``sigma`` are not aliased.
    """
    if sigma < 0:
        raise ValueError(f'Gaussian PSF sigma must be >= 0, got {sigma}.')
    if sigma == 0:
        return np.ones((1, 1), np.float32)
    half = max(1, int(math.ceil(truncate * sigma)))
    edges = (np.arange(-half, half + 2) - 0.5) / (sigma * math.sqrt(2.0))
    cdf = np.array([math.erf(e) for e in edges])
    line = np.diff(cdf)
    psf = np.outer(line, line)
    return (psf / psf.sum()).astype(np.float32)


def widefield_geometric_radius(airy_radius: float, defocus_waves: float) -> float:
    """Radius (pixels) of the geometric shadow of the pupil at defocus ``W`` waves: ``2 W lambda / NA``."""
    return 2.0 * abs(defocus_waves) * airy_radius / AIRY_FIRST_ZERO


def widefield_psf(airy_radius: float, defocus_waves: float = 0.0, supersample: int = 3,
                  rings: float = 4.0) -> np.ndarray:
    """Scalar widefield PSF of a circular pupil with a defocus phase (module docstring), sum 1.

    Results are cached (a read-only array is returned): synthetic datasets draw parameters on a grid.

    Args:
        airy_radius: radius of the in-focus Airy pattern's first dark ring, in pixels (``0.61 lambda/NA / pixel``).
        defocus_waves: defocus coefficient ``W`` (waves of path difference at the pupil edge); 0 is in focus.
        supersample: odd number of samples per pixel side; each pixel is the mean of its samples.
        rings: the kernel extends ``rings * airy_radius`` pixels beyond the geometric radius (truncated there and
            renormalised).
    """
    return _widefield_psf(float(airy_radius), float(defocus_waves), int(supersample), float(rings))


@lru_cache(maxsize=4096)
def _widefield_psf(airy_radius: float, defocus_waves: float, supersample: int, rings: float) -> np.ndarray:
    if airy_radius <= 0:
        raise ValueError(f'widefield PSF airy_radius must be > 0, got {airy_radius}.')
    if supersample < 1 or supersample % 2 == 0:
        raise ValueError(f'supersample must be a positive odd integer, got {supersample}.')
    half = int(math.ceil(widefield_geometric_radius(airy_radius, defocus_waves) + rings * airy_radius))
    size = 2 * half + 1
    # sample spacing in lambda/NA units; the pupil (cut-off NA/lambda) then has radius n * dx frequency samples
    dx = AIRY_FIRST_ZERO / (airy_radius * supersample)
    n = 2 ** int(math.ceil(math.log2(max(2 * size * supersample, 48 / dx))))
    freq = np.fft.fftfreq(n, d=dx)  # in units of NA / lambda
    rho2 = freq[:, None] ** 2 + freq[None, :] ** 2
    pupil = np.where(rho2 <= 1.0, np.exp(2j * np.pi * defocus_waves * rho2), 0.0)
    field = np.fft.fftshift(np.fft.ifft2(pupil))  # centre at index n // 2
    intensity = np.abs(field) ** 2
    start = n // 2 - half * supersample - supersample // 2
    crop = intensity[start:start + size * supersample, start:start + size * supersample]
    psf = crop.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    psf = 0.25 * (psf + psf[::-1] + psf[:, ::-1] + psf[::-1, ::-1])  # remove round-off asymmetry (~1e-16)
    psf = (psf / psf.sum()).astype(np.float32)
    psf.setflags(write=False)
    return psf


def make_psf(kind: str, **params: float) -> np.ndarray:
    """The PSF ``kind`` (``disk``: ``radius``; ``gaussian``: ``sigma``; ``widefield``: ``airy_radius``,
    ``defocus_waves``)."""
    if kind == 'disk':
        return disk_psf(float(params['radius']))
    if kind == 'gaussian':
        return gaussian_psf(float(params['sigma']))
    if kind == 'widefield':
        return widefield_psf(float(params['airy_radius']), float(params.get('defocus_waves', 0.0)))
    raise ValueError(f'PSF type must be one of {PSF_TYPES}, got {kind!r}.')
