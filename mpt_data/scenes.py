"""Procedural fluorescence-like scenes: sharp images that look like microscopy, made on the fly (no files).

A scene is dark background (an offset of 0.2-5 % of the range, most pixels near it) with a few bright structures,
as in a 16-bit fluorescence image that uses a few per cent of its range:

* ``nuclei``: filled ellipses with a textured interior (chromatin: band-passed noise) and soft edges;
* ``filaments``: smooth curvilinear fibres (cytoskeleton), random walks of slowly turning direction, anti-aliased;
* ``puncta``: diffraction-sized spots (vesicles, foci), Gaussian, of varying brightness;
* ``membranes``: the boundaries of a random Voronoi tessellation (cell outlines), thin and uneven.

Every scale and density is drawn at random per scene; a grayscale scene mixes one to three kinds, an RGB scene
puts a kind per channel (like three stains). Values are float32 in [0, 1]. Pure function of the generator:
the same seed gives the same scene.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

SCENE_KINDS = ('nuclei', 'filaments', 'puncta', 'membranes')


def _texture(rng: np.random.Generator, shape: Tuple[int, int], scale: float) -> np.ndarray:
    """Band-passed noise in [0, 1] with structures of about ``scale`` pixels."""
    noise = rng.random(shape).astype(np.float32)
    fine = cv2.GaussianBlur(noise, (0, 0), max(0.6, scale / 4))
    coarse = cv2.GaussianBlur(noise, (0, 0), max(1.2, scale))
    band = fine - coarse
    return (band - band.min()) / max(float(np.ptp(band)), 1e-6)


def nuclei(rng: np.random.Generator, shape: Tuple[int, int]) -> np.ndarray:
    h, w = shape
    out = np.zeros(shape, np.float32)
    radius = rng.uniform(6, 28)
    count = int(rng.integers(1, max(2, int(h * w / (radius * radius * 12)) + 1)))
    texture = _texture(rng, shape, rng.uniform(1.5, 4))
    for _ in range(count):
        mask = np.zeros(shape, np.float32)
        axes = (int(radius * rng.uniform(0.7, 1.3)), int(radius * rng.uniform(0.6, 1.1)))
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1, cv2.LINE_AA)
        mask = cv2.GaussianBlur(mask, (0, 0), rng.uniform(0.5, 1.5))
        out = np.maximum(out, mask * rng.uniform(0.3, 1.0) * (0.5 + 0.5 * texture))
    return out


def filaments(rng: np.random.Generator, shape: Tuple[int, int]) -> np.ndarray:
    h, w = shape
    out = np.zeros(shape, np.float32)
    for _ in range(int(rng.integers(2, 30))):
        point = np.array([rng.uniform(0, w), rng.uniform(0, h)])
        angle, step = rng.uniform(0, 2 * np.pi), rng.uniform(1.5, 4)
        points = []
        for _ in range(int(rng.integers(20, 200))):
            angle += rng.normal(0, 0.15)
            point = point + step * np.array([np.cos(angle), np.sin(angle)])
            points.append(point.copy())
        layer = np.zeros(shape, np.float32)
        cv2.polylines(layer, [np.round(np.array(points) * 16).astype(np.int32)], False, float(rng.uniform(0.2, 1.0)),
                      int(rng.integers(1, 3)), cv2.LINE_AA, shift=4)
        out = np.maximum(out, layer)
    return cv2.GaussianBlur(out, (0, 0), 0.5)


def puncta(rng: np.random.Generator, shape: Tuple[int, int]) -> np.ndarray:
    h, w = shape
    out = np.zeros(shape, np.float32)
    count = int(rng.integers(5, max(6, h * w // 150)))
    ys, xs = rng.integers(0, h, count), rng.integers(0, w, count)
    out[ys, xs] = rng.uniform(0.2, 1.0, count).astype(np.float32) ** 2
    sigma = rng.uniform(0.6, 1.8)
    out = cv2.GaussianBlur(out, (0, 0), sigma) * (2 * np.pi * sigma * sigma)
    return np.clip(out, 0, 1)


def membranes(rng: np.random.Generator, shape: Tuple[int, int]) -> np.ndarray:
    h, w = shape
    count = int(rng.integers(4, 40))
    seeds = np.stack([rng.uniform(0, w, count), rng.uniform(0, h, count)], 1).astype(np.float32)
    subdiv = cv2.Subdiv2D((0, 0, w, h))
    for x, y in seeds:
        subdiv.insert((float(min(x, w - 1)), float(min(y, h - 1))))
    facets, _ = subdiv.getVoronoiFacetList([])
    out = np.zeros(shape, np.float32)
    for facet in facets:
        cv2.polylines(out, [np.round(facet * 16).astype(np.int32)], True, float(rng.uniform(0.3, 1.0)), 1,
                      cv2.LINE_AA, shift=4)
    return out * (0.6 + 0.4 * _texture(rng, shape, 6.0))


GENERATORS = {'nuclei': nuclei, 'filaments': filaments, 'puncta': puncta, 'membranes': membranes}


def make_scene(rng: np.random.Generator, size: Tuple[int, int], channels: int = 1,
               kinds: Optional[Sequence[str]] = None) -> np.ndarray:
    """One scene, float32 ``H x W x channels`` in [0, 1] (module docstring); ``kinds`` limits what it may hold."""
    kinds = list(kinds or SCENE_KINDS)
    unknown = [k for k in kinds if k not in GENERATORS]
    if unknown:
        raise ValueError(f'unknown scene kind(s) {unknown}; choose from {SCENE_KINDS}.')
    shape = (int(size[0]), int(size[1]))
    layers = []
    for _ in range(channels):
        chosen = rng.choice(kinds, size=int(rng.integers(1, min(3, len(kinds)) + 1)), replace=False)
        img = np.zeros(shape, np.float32)
        for kind in chosen:
            img = np.maximum(img, GENERATORS[str(kind)](rng, shape))
        offset = rng.uniform(0.002, 0.05)
        gain = rng.uniform(0.05, 1.0) ** 1.5  # bright scenes and dim ones (a few per cent of the range)
        layers.append(np.clip(offset + gain * img, 0, 1))
    return np.stack(layers, axis=2).astype(np.float32)
