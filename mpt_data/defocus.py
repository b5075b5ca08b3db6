"""Defocus blur synthesis: disk point-spread function, blur and layered (matte) compositing.

Used by ``scripts/make_cadisblur.py`` (CaDISBlur: instruments and anatomy blurred separately with the CaDIS
segmentation masks to simulate two focal planes, Sec. 4.1 / Supp. Sec. 6) and by the demo data builder.

* :func:`disk_psf`: geometric-optics defocus PSF, a uniform disk (circle of confusion) of a given radius, with
  anti-aliased edges (area coverage by sub-pixel sampling), normalised to sum 1. Not a Gaussian.
* :func:`defocus_blur`: convolution with that PSF (reflected borders), any number of channels.
* :func:`composite_two_planes`: blur one layer and keep the other sharp, with a soft (feathered) matte:

  - blurred background behind a sharp foreground: the background is blurred by *normalised convolution*
    ``blur(I * w) / blur(w)`` with ``w`` the background matte, so foreground colours never bleed into it (no halo);
  - blurred foreground over a sharp background: the foreground is blurred *premultiplied*
    (``blur(I * a)`` and ``blur(a)``) and composited "over" a background whose occluded part was filled from its
    surroundings, so the soft edge is a convex mix of the two layers (no dark or bright fringe, no hard edge).
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def disk_psf(radius: float, supersample: int = 8) -> np.ndarray:
    """Anti-aliased uniform disk of ``radius`` pixels, odd square size, float32, sum 1 (radius 0: identity)."""
    if radius < 0:
        raise ValueError(f'PSF radius must be >= 0, got {radius}.')
    half = int(math.ceil(radius - 0.5)) if radius > 0.5 else 0
    size = 2 * half + 1
    if radius <= 0.5:
        psf = np.zeros((size, size), np.float32)
        psf[half, half] = 1.0
        return psf
    offsets = (np.arange(size * supersample) + 0.5) / supersample - size / 2.0
    yy, xx = np.meshgrid(offsets, offsets, indexing='ij')
    inside = (xx**2 + yy**2 <= radius**2).astype(np.float32)
    psf = inside.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    return (psf / psf.sum()).astype(np.float32)


def defocus_blur(img: np.ndarray, radius: float) -> np.ndarray:
    """Convolve an ``H x W`` or ``H x W x C`` float image with :func:`disk_psf` (reflected borders)."""
    img = np.asarray(img, np.float32)
    if radius <= 0.5:
        return img.copy()
    out = cv2.filter2D(img, -1, disk_psf(radius), borderType=cv2.BORDER_REFLECT_101)
    return out.reshape(img.shape)


def feather_mask(mask: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Binary mask -> soft matte in [0, 1] (Gaussian feathering of ``sigma`` pixels; 0 keeps it binary)."""
    soft = np.asarray(mask, np.float32)
    if sigma > 0:
        soft = cv2.GaussianBlur(soft, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    return np.clip(soft, 0.0, 1.0)


def _expand(mask: np.ndarray, img: np.ndarray) -> np.ndarray:
    return mask[..., None] if img.ndim == 3 else mask


def fill_occluded(img: np.ndarray, weight: np.ndarray, eps: float = 1e-3) -> np.ndarray:
    """Fill where ``weight`` ~ 0 from the surroundings by normalised Gaussian convolution at growing scales.

    Where ``weight`` is 1 the image is kept; elsewhere the fill is a weighted average of visible pixels.
    """
    img = np.asarray(img, np.float32)
    w = np.asarray(weight, np.float32)
    out = img.copy()
    missing = w < 1.0
    if not missing.any():
        return out
    if w.max() <= eps:
        raise ValueError('fill_occluded: the whole image is occluded, nothing to fill from.')
    filled = np.zeros(w.shape, bool)
    sigma = 2.0
    while True:
        num = cv2.GaussianBlur(img * _expand(w, img), (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
        den = cv2.GaussianBlur(w, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
        ok = (den > eps) & ~filled & missing
        estimate = num / _expand(np.maximum(den, eps), img)
        out[ok] = estimate.reshape(out.shape)[ok]
        filled |= ok
        if filled[missing].all() or sigma > 4 * max(w.shape):
            break
        sigma *= 2.0
    # keep visible pixels, blend the partially visible ones with the estimate
    return _expand(w, img) * img + (1 - _expand(w, img)) * out


def blur_background(img: np.ndarray, fg_matte: np.ndarray, radius: float, eps: float = 1e-4) -> np.ndarray:
    """Focal plane on the foreground: sharp foreground over a background blurred without foreground colours."""
    img = np.asarray(img, np.float32)
    a = _expand(fg_matte, img)
    w = 1.0 - fg_matte
    background = fill_occluded(img, w)  # colour behind the foreground, only used where w ~ 0
    num = defocus_blur(background * _expand(w, img), radius)
    den = defocus_blur(w, radius)
    blurred_bg = np.where(_expand(den, img) > eps, num / _expand(np.maximum(den, eps), img), background)
    return a * img + (1 - a) * blurred_bg


def blur_foreground(img: np.ndarray, fg_matte: np.ndarray, radius: float) -> np.ndarray:
    """Focal plane on the background: the foreground is blurred premultiplied and composited over it."""
    img = np.asarray(img, np.float32)
    premult = defocus_blur(img * _expand(fg_matte, img), radius)
    alpha = _expand(defocus_blur(fg_matte, radius), img)
    background = fill_occluded(img, 1.0 - fg_matte)
    return premult + (1 - alpha) * background


def composite_two_planes(img: np.ndarray, fg_mask: np.ndarray, radius: float, blur: str,
                         feather: float = 1.0) -> np.ndarray:
    """Blur one of two layers of ``img`` (float in [0, 1]); ``fg_mask`` marks the foreground (instruments).

    ``blur='background'``: focal plane on the foreground (anatomy blurred); ``blur='foreground'``: focal plane
    on the background (instruments blurred). Output clipped to [0, 1].
    """
    matte = feather_mask(fg_mask, feather)
    if blur == 'background':
        out = blur_background(img, matte, radius)
    elif blur == 'foreground':
        out = blur_foreground(img, matte, radius)
    else:
        raise ValueError(f"blur must be 'background' or 'foreground', got {blur!r}.")
    return np.clip(out, 0.0, 1.0)
