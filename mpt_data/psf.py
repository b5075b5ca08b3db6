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
* :func:`physical_widefield_psf`: the same PSF in a microscopist's units (objective NA, immersion index ``n``,
  emission wavelength, pixel size in the sample plane, defocus ``dz`` in micrometres), with the exact scalar defocus
  phase ``k n dz (1 - cos theta)``, ``sin theta = rho NA / n`` (Gibson and Lanni 1989; Born and Wolf Sec. 8.8).
  Its paraxial limit ``k dz NA^2 rho^2 / (2 n)`` is the ``W rho^2`` above with ``W = dz NA^2 / (2 n lambda)``; the
  two agree at low NA and differ at high NA, where the exact blur is wider (geometric radius ``dz tan theta_max``).
* ``measured``: a bead image or PSF TIFF (2-D, or a 3-D stack whose planes are defocus levels),
  :mod:`mpt_data.measured_psf`.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from mpt_data.defocus import disk_psf

__all__ = ['disk_psf', 'gaussian_psf', 'widefield_psf', 'widefield_geometric_radius', 'physical_widefield_psf',
           'make_psf', 'PSF_TYPES']

AIRY_FIRST_ZERO = 0.6098  # first zero of [2 J1(v)/v]^2 at v = 3.8317, in units of lambda / NA (3.8317 / 2 pi)
PSF_TYPES = ('disk', 'gaussian', 'widefield', 'widefield_physical', 'measured')


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


def widefield_geometric_radius(airy_radius: float, defocus_waves: float, sin_alpha: float = 0.0) -> float:
    """Radius (pixels) of the geometric shadow of the pupil at defocus ``W`` waves: ``2 W lambda / NA`` in the
    paraxial model; ``dz tan theta_max``, i.e. that divided by ``cos theta_max``, with ``sin_alpha = NA / n``."""
    return 2.0 * abs(defocus_waves) * airy_radius / AIRY_FIRST_ZERO / math.sqrt(1.0 - sin_alpha ** 2)


def physical_widefield_psf(na: float, wavelength_um: float, pixel_size_um: float, defocus_um: float = 0.0,
                           immersion_index: float = 1.0, supersample: int = 3) -> np.ndarray:
    """Widefield PSF of an objective of numerical aperture ``na`` in a medium of index ``immersion_index``, at
    emission ``wavelength_um``, sampled at ``pixel_size_um`` (sample plane), ``defocus_um`` from focus; exact
    scalar defocus phase (module docstring), sum 1."""
    checks = {'na': na, 'wavelength_um': wavelength_um, 'pixel_size_um': pixel_size_um,
              'immersion_index': immersion_index}
    bad = [f'{k} = {v!r}' for k, v in checks.items() if not (isinstance(v, (int, float)) and v > 0)]
    if bad:
        raise ValueError(f'widefield_physical PSF: {", ".join(bad)} must be > 0.')
    if na >= immersion_index:
        raise ValueError(f'widefield_physical PSF: na {na} must be below the immersion index {immersion_index} '
                         '(1.0 air, 1.33 water, 1.518 oil).')
    airy_radius = AIRY_FIRST_ZERO * wavelength_um / na / pixel_size_um
    waves = defocus_um * na ** 2 / (2.0 * immersion_index * wavelength_um)  # the paraxial W of this defocus
    return widefield_psf(airy_radius, waves, supersample, sin_alpha=na / immersion_index)


def widefield_psf(airy_radius: float, defocus_waves: float = 0.0, supersample: int = 3,
                  rings: float = 4.0, sin_alpha: float = 0.0) -> np.ndarray:
    """Scalar widefield PSF of a circular pupil with a defocus phase (module docstring), sum 1.

    Results are cached (a read-only array is returned): synthetic datasets draw parameters on a grid.

    Args:
        airy_radius: radius of the in-focus Airy pattern's first dark ring, in pixels (``0.61 lambda/NA / pixel``).
        defocus_waves: defocus coefficient ``W`` (waves of path difference at the pupil edge); 0 is in focus.
        supersample: odd number of samples per pixel side; each pixel is the mean of its samples.
        rings: the kernel extends ``rings * airy_radius`` pixels beyond the geometric radius (truncated there and
            renormalised).
        sin_alpha: ``NA / n``. 0 (default): the paraxial phase ``W rho^2``; otherwise the exact phase
            ``(2 W / sin_alpha^2) (1 - sqrt(1 - sin_alpha^2 rho^2))`` (the same defocus ``dz``, expressed by its
            paraxial ``W``), which tends to ``W rho^2`` as ``sin_alpha`` goes to 0.
    """
    return _widefield_psf(float(airy_radius), float(defocus_waves), int(supersample), float(rings), float(sin_alpha))


@lru_cache(maxsize=8192)
def _widefield_psf(airy_radius: float, defocus_waves: float, supersample: int, rings: float,
                   sin_alpha: float) -> np.ndarray:
    if airy_radius <= 0:
        raise ValueError(f'widefield PSF airy_radius must be > 0, got {airy_radius}.')
    if supersample < 1 or supersample % 2 == 0:
        raise ValueError(f'supersample must be a positive odd integer, got {supersample}.')
    if not 0 <= sin_alpha < 1:
        raise ValueError(f'sin_alpha (NA / n) must be in [0, 1), got {sin_alpha}.')
    half = int(math.ceil(widefield_geometric_radius(airy_radius, defocus_waves, sin_alpha) + rings * airy_radius))
    size = 2 * half + 1
    # sample spacing in lambda/NA units; the pupil (cut-off NA/lambda) then has radius n * dx frequency samples
    dx = AIRY_FIRST_ZERO / (airy_radius * supersample)
    n = 2 ** int(math.ceil(math.log2(max(2 * size * supersample, 48 / dx))))
    freq = np.fft.fftfreq(n, d=dx)  # in units of NA / lambda
    rho2 = freq[:, None] ** 2 + freq[None, :] ** 2
    inside = rho2 <= 1.0
    if sin_alpha > 0:  # exact: k n dz (1 - cos theta) in waves, sin theta = rho NA / n
        s2 = sin_alpha ** 2
        waves = (2.0 * defocus_waves / s2) * (1.0 - np.sqrt(np.clip(1.0 - s2 * rho2, 0.0, None)))
    else:  # paraxial: W rho^2
        waves = defocus_waves * rho2
    pupil = np.where(inside, np.exp(2j * np.pi * waves), 0.0)
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
    ``defocus_waves``; ``widefield_physical``: ``na``, ``wavelength_um``, ``pixel_size_um``, ``defocus_um``,
    ``immersion_index``; ``measured``: ``file``, ``plane``, ``background``, ``radius``,
    :mod:`mpt_data.measured_psf`)."""
    if kind == 'disk':
        return disk_psf(float(params['radius']))
    if kind == 'gaussian':
        return gaussian_psf(float(params['sigma']))
    if kind == 'widefield':
        return widefield_psf(float(params['airy_radius']), float(params.get('defocus_waves', 0.0)))
    if kind == 'widefield_physical':
        return physical_widefield_psf(float(params['na']), float(params['wavelength_um']),
                                      float(params['pixel_size_um']), float(params.get('defocus_um', 0.0)),
                                      float(params.get('immersion_index', 1.0)))
    if kind == 'measured':
        from mpt_data.measured_psf import measured_psf

        return measured_psf(str(params['file']), int(params.get('plane', 0)), params.get('background', 'auto'),
                            params.get('radius'))
    raise ValueError(f'PSF type must be one of {PSF_TYPES}, got {kind!r}.')
