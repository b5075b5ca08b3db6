"""Build a small paired defocus set from real microscopy images shipped inside scikit-image (nothing downloaded).

Sources (``skimage/data/``): the ``gray`` subset is ``cell.png`` (grayscale microscopy, halved: at full size its
detail is below the 8-bit quantisation step), ``microaneurysms.png`` (grayscale retinal angiography crop) and the
luminance of ``ihc.png``; the ``rgb`` subset is ``ihc.png`` (immunohistochemistry) and ``retina.jpg`` (fundus
photograph, reduced to 720 px).

Each image is split by region *before* blurring: the last ``--val-fraction`` of its rows (along the longer side)
is validation, the rest training, with a ``--gap`` of unused rows between them larger than the largest PSF
radius, so no pixel (nor any pixel within a PSF of it) is shared by the two splits. Every region is blurred with
the defocus disk PSF (``mpt_data.defocus``) at each radius of ``--radii``; validation regions are cut into up to
``--val-tiles`` tiles of ``--tile`` pixels (the most detailed ones) to keep validation quick.

Layout (pairs share file names, ``PairedDefocusDataset`` with the default ``folder`` layout)::

    demo_data/<gray|rgb>/<train|val>/<lq|gt>/<image>[_t<k>]_r<radius>.png

Example: ``python -m mpt_data.demo_data --out demo_data``
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
from typing import Dict, Optional, Sequence

import cv2
import numpy as np

from mpt_data.defocus import defocus_blur

SOURCES = {'gray': ('cell.png', 'microaneurysms.png', 'ihc.png'), 'rgb': ('ihc.png', 'retina.jpg')}
SCALES = {'cell.png': 0.5}
MAX_SIDE = 720  # retina.jpg (1411 px) is reduced to keep the demo small


def skimage_data_dir() -> str:
    """Folder of the images bundled with scikit-image."""
    import skimage

    return osp.join(osp.dirname(skimage.__file__), 'data')


def load_source(name: str, subset: str) -> np.ndarray:
    """Read a bundled image as uint8 (H x W for gray, H x W x 3 BGR for rgb)."""
    path = osp.join(skimage_data_dir(), name)
    img = cv2.imread(path, cv2.IMREAD_GRAYSCALE if subset == 'gray' else cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f'Bundled image {path!r} is missing from this scikit-image install.')
    factor = min(SCALES.get(name, 1.0), MAX_SIDE / max(img.shape[:2]))
    if factor < 1:
        img = cv2.resize(img, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    return img


def split_regions(img: np.ndarray, val_fraction: float, gap: int):
    """(train region, val region) split along the longer side with ``gap`` unused pixels between them."""
    transpose = img.shape[1] > img.shape[0]
    work = np.swapaxes(img, 0, 1) if transpose else img
    n = work.shape[0]
    n_val = int(round(n * val_fraction))
    train, val = work[: n - n_val - gap], work[n - n_val:]
    if transpose:
        train, val = np.swapaxes(train, 0, 1), np.swapaxes(val, 0, 1)
    return np.ascontiguousarray(train), np.ascontiguousarray(val)


def blur_uint8(img: np.ndarray, radius: float) -> np.ndarray:
    """Disk-PSF defocus of an 8-bit image, rounded back to 8 bit."""
    out = defocus_blur(img.astype(np.float32) / 255.0, radius)
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


def val_tiles(region: np.ndarray, tile: int, count: int):
    """Up to ``count`` non-overlapping ``tile`` x ``tile`` crops of the region, the most detailed ones (highest
    Laplacian variance) first, so validation is not spent on empty background (none if the region is smaller)."""
    h, w = region.shape[:2]
    if h < tile or w < tile:
        return []
    slots = [(r, c) for r in range(h // tile) for c in range(w // tile)]
    crops = [region[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] for r, c in slots]
    detail = [float(cv2.Laplacian(crop.astype(np.float32), cv2.CV_32F).var()) for crop in crops]
    best = sorted(sorted(range(len(crops)), key=lambda i: -detail[i])[:count])
    return [crops[i] for i in best]


def _write(path: str, img: np.ndarray) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    if not cv2.imwrite(path, img):
        raise OSError(f'Could not write {path!r}.')


def build_demo_data(out: str = 'demo_data', radii: Sequence[float] = (2.0, 3.0, 4.0), val_fraction: float = 0.25,
                    gap: int = 16, tile: int = 64, n_val_tiles: int = 2,
                    subsets: Sequence[str] = ('gray', 'rgb')) -> Dict[str, Dict[str, int]]:
    """Write the demo pairs; returns ``{subset: {'train': n, 'val': n}}``."""
    if gap <= max(radii):
        raise ValueError(f'gap {gap} must exceed the largest PSF radius {max(radii)} so splits share no pixel.')
    counts = {}
    for subset in subsets:
        if subset not in SOURCES:
            raise ValueError(f'Unknown subset {subset!r}; choose from {sorted(SOURCES)}.')
        counts[subset] = {'train': 0, 'val': 0}
        for name in SOURCES[subset]:
            stem = osp.splitext(name)[0]
            train, val = split_regions(load_source(name, subset), val_fraction, gap)
            tiles = val_tiles(val, tile, n_val_tiles)
            for radius in radii:
                tag = f'r{radius:g}'.replace('.', 'p')
                base = osp.join(out, subset)
                _write(osp.join(base, 'train', 'gt', f'{stem}_{tag}.png'), train)
                _write(osp.join(base, 'train', 'lq', f'{stem}_{tag}.png'), blur_uint8(train, radius))
                counts[subset]['train'] += 1
                for k, crop in enumerate(tiles):
                    _write(osp.join(base, 'val', 'gt', f'{stem}_t{k}_{tag}.png'), crop)
                    _write(osp.join(base, 'val', 'lq', f'{stem}_t{k}_{tag}.png'), blur_uint8(crop, radius))
                    counts[subset]['val'] += 1
    return counts


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='demo_data', help='output folder (default: ./demo_data)')
    parser.add_argument('--radii', type=float, nargs='+', default=[2.0, 3.0, 4.0], help='disk PSF radii (pixels)')
    parser.add_argument('--val-fraction', type=float, default=0.25)
    parser.add_argument('--gap', type=int, default=16, help='unused rows between train and val regions')
    parser.add_argument('--tile', type=int, default=64, help='validation tile size')
    parser.add_argument('--val-tiles', type=int, default=2, help='validation tiles per image')
    parser.add_argument('--subsets', nargs='+', default=['gray', 'rgb'], choices=sorted(SOURCES))
    args = parser.parse_args(argv)
    counts = build_demo_data(args.out, args.radii, args.val_fraction, args.gap, args.tile, args.val_tiles,
                             args.subsets)
    for subset, n in counts.items():
        print(f'{subset}: {n["train"]} training and {n["val"]} validation pairs in {osp.join(args.out, subset)}')


if __name__ == '__main__':
    sys.exit(main())
