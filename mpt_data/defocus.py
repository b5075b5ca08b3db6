"""Defocus blur synthesis: disk point-spread function, blur and layered (matte) compositing.

Used by ``scripts/make_cadisblur.py`` (CaDISBlur: instruments and anatomy blurred separately with the CaDIS
segmentation masks to simulate two focal planes, Sec. 4.1 / Supp. Sec. 6) and by the demo data builder.

* :func:`disk_psf`: geometric-optics defocus PSF, a uniform disk (circle of confusion) of a given radius, with
  anti-aliased edges (area coverage by sub-pixel sampling), normalised to sum 1. Not a Gaussian.
* :func:`defocus_blur`: convolution with that PSF (reflected borders), any number of channels.
* :func:`composite_two_planes`: blur one layer and keep the other sharp, with a soft (feathered) matte:

  - layer colours come only from "pure" pixels (outside the feathered border band, :func:`pure_weights`); the
    part of a layer hidden by the other is filled from its own pure pixels (:func:`fill_occluded`, push-pull);
  - blurred background behind a sharp foreground: the filled background layer is blurred on its own, so no
    foreground colour bleeds into it (no halo), then the sharp foreground is laid over it with the soft matte;
  - blurred foreground over a sharp background: the foreground is blurred *premultiplied*
    (``blur(F * a)`` and ``blur(a)``) and composited "over" the filled background, so the soft edge is a convex
    mix of the two layers (no dark or bright fringe, no hard edge).
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


def fill_occluded(img: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Fill pixels hidden by the foreground (``weight`` < 1) from the visible ones (push-pull interpolation).

    ``weight`` in [0, 1] is the visibility of the background. A weighted image pyramid is built (push) and each
    level's normalised estimate ``sum(w * I) / sum(w)`` fills the finer level where its weight is missing (pull),
    so the fill is always a convex combination of visible pixels. Visible pixels (weight 1) are kept.
    """
    img = np.asarray(img, np.float32)
    w = np.asarray(weight, np.float32)
    if (w >= 1.0).all():
        return img.copy()
    if w.max() <= 1e-6:
        raise ValueError('fill_occluded: the whole image is occluded, nothing to fill from.')
    nums, dens = [img * _expand(w, img)], [w]
    while min(dens[-1].shape[:2]) > 2 and dens[-1].min() <= 1e-6:
        num = cv2.pyrDown(nums[-1])
        den = cv2.pyrDown(dens[-1])
        nums.append(num.reshape(den.shape + img.shape[2:]))
        dens.append(den)
    estimate = None
    for num, den in zip(reversed(nums), reversed(dens)):
        den_c = np.clip(den, 0.0, 1.0)
        if estimate is None:
            estimate = num / _expand(np.maximum(den_c, 1e-6), img)
            continue
        up = cv2.resize(estimate, (den.shape[1], den.shape[0]), interpolation=cv2.INTER_LINEAR)
        up = up.reshape(num.shape)
        missing = _expand(1.0 - den_c, img)
        estimate = (num + missing * up) / (_expand(den_c, img) + missing)
    return _expand(w, img) * img + (1 - _expand(w, img)) * estimate


def pure_weights(fg_mask: np.ndarray, feather: float) -> tuple:
    """Binary weights of pixels that belong purely to the foreground / background (outside the feather band).

    Colours of the layers are taken only from these pixels, so a pixel whose colour mixes both layers at the
    border never lends its colour to the other layer (the source of halos). Falls back to the plain mask when an
    object is thinner than the band.
    """
    mask = (np.asarray(fg_mask) > 0.5).astype(np.uint8)
    band = 2 * int(math.ceil(2 * feather)) + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (band, band))
    fg = cv2.erode(mask, kernel, borderType=cv2.BORDER_REPLICATE).astype(np.float32)
    bg = 1.0 - cv2.dilate(mask, kernel, borderType=cv2.BORDER_REPLICATE).astype(np.float32)
    if fg.max() == 0:
        fg = mask.astype(np.float32)
    if bg.max() == 0:
        bg = 1.0 - mask.astype(np.float32)
    return fg, bg


def blur_background(img: np.ndarray, fg_mask: np.ndarray, radius: float, feather: float = 1.0) -> np.ndarray:
    """Focal plane on the foreground: sharp foreground over the background layer blurred on its own.

    The background layer is the image with the foreground (and the mixed border band) replaced by a fill from
    pure background pixels, so no foreground colour is blurred into it.
    """
    img = np.asarray(img, np.float32)
    matte = _expand(feather_mask(fg_mask, feather), img)
    _, bg_weight = pure_weights(fg_mask, feather)
    background = defocus_blur(fill_occluded(img, bg_weight), radius)
    return matte * img + (1 - matte) * background


def blur_foreground(img: np.ndarray, fg_mask: np.ndarray, radius: float, feather: float = 1.0) -> np.ndarray:
    """Focal plane on the background: the foreground layer (colour x matte) is blurred premultiplied and laid
    "over" the sharp background, whose hidden part is filled from pure background pixels."""
    img = np.asarray(img, np.float32)
    matte = feather_mask(fg_mask, feather)
    fg_weight, bg_weight = pure_weights(fg_mask, feather)
    foreground = fill_occluded(img, fg_weight)  # pure foreground colour, extended under the soft border
    premult = defocus_blur(foreground * _expand(matte, img), radius)
    alpha = _expand(defocus_blur(matte, radius), img)
    background = fill_occluded(img, bg_weight)
    sharp_bg = _expand(bg_weight, img) * img + (1 - _expand(bg_weight, img)) * background
    return premult + (1 - alpha) * sharp_bg


def composite_two_planes(img: np.ndarray, fg_mask: np.ndarray, radius: float, blur: str,
                         feather: float = 1.0) -> np.ndarray:
    """Blur one of two layers of ``img`` (float in [0, 1]); ``fg_mask`` marks the foreground (instruments).

    ``blur='background'``: focal plane on the foreground (anatomy blurred); ``blur='foreground'``: focal plane
    on the background (instruments blurred). Output clipped to [0, 1].
    """
    if blur == 'background':
        out = blur_background(img, fg_mask, radius, feather)
    elif blur == 'foreground':
        out = blur_foreground(img, fg_mask, radius, feather)
    else:
        raise ValueError(f"blur must be 'background' or 'foreground', got {blur!r}.")
    return np.clip(out, 0.0, 1.0)
