"""Miniature replicas of the published dataset layouts, written into pytest's tmp_path (shared by the tests)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Dict, Iterable, Tuple

import cv2
import numpy as np
import tifffile

BBBC_PREFIX = 'mcf-z-stacks-03212011'


def bbbc_field_image(index: int, h: int = 40, w: int = 48, seed: int = 0) -> np.ndarray:
    """Deterministic 16-bit texture, brightness distinct per field index (values inside the 12-bit range)."""
    rng = np.random.default_rng(seed * 1000 + index)
    img = rng.uniform(0, 1, (h, w))
    img = cv2.GaussianBlur(img, (0, 0), 1.0)
    img = (img - img.min()) / (img.max() - img.min())
    return (200 + 100 * index + img * 3000).astype(np.uint16)


def make_bbbc006(root: Path, wells: Iterable[str] = ('a01', 'a02', 'b03', 'c04', 'd05', 'e06', 'f07', 'g08'),
                 sites: Iterable[str] = ('1', '2'), channels: Iterable[str] = ('1', '2'),
                 planes: Iterable[int] = (2, 6, 10, 16), identical: bool = False) -> Dict[Tuple[str, str, str], int]:
    """BBBC006 layout: BBBC006_v1_images_z_NN/mcf-z-stacks-03212011_<well>_s<site>_w<ch><UUID>.tif (16 bit).

    Inputs are the in-focus image blurred with a plane-dependent sigma (identical=True: an exact copy).
    Returns field -> index (the index sets the field's brightness).
    """
    fields = {}
    for well in wells:
        for site in sites:
            for ch in channels:
                fields[(well, site, ch)] = len(fields)
    for plane in planes:
        folder = root / f'BBBC006_v1_images_z_{plane:02d}'
        folder.mkdir(parents=True, exist_ok=True)
        for field, index in fields.items():
            gt = bbbc_field_image(index)
            if plane == 16 or identical:
                img = gt
            else:
                sigma = abs(16 - plane) / 3.0
                img = np.round(cv2.GaussianBlur(gt.astype(np.float32), (0, 0), sigma)).astype(np.uint16)
            suffix = str(uuid.UUID(int=(plane * 100000 + index * 7 + 13))).upper()  # differs between planes
            name = f'{BBBC_PREFIX}_{field[0]}_s{field[1]}_w{field[2]}{suffix}.tif'
            tifffile.imwrite(folder / name, img)
    return fields


def write_png(path: Path, img: np.ndarray) -> None:
    """Write an 8/16-bit image given in RGB order (cv2 expects BGR)."""
    os.makedirs(path.parent, exist_ok=True)
    if img.ndim == 3 and img.shape[2] == 3:
        img = img[:, :, ::-1]
    assert cv2.imwrite(str(path), np.ascontiguousarray(img))


def texture(seed: int, h: int, w: int, c: int, dtype=np.uint8) -> np.ndarray:
    """Random smooth texture of the dtype's full range, H x W x C (C may be 1 -> H x W)."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.uniform(0, 1, (h, w, c)).astype(np.float32), (0, 0), 1.0)
    img = img.reshape(h, w, c)
    img = (img - img.min()) / (img.max() - img.min() + 1e-8)
    out = np.round(img * np.iinfo(dtype).max).astype(dtype)
    return out[:, :, 0] if c == 1 else out


def make_paired_folder(lq_dir: Path, gt_dir: Path, names: Iterable[str], h: int = 36, w: int = 44, c: int = 3,
                       dtype=np.uint8, identical: bool = False, seed: int = 0) -> None:
    """Two folders with identical file names; lq = gt blurred (or an exact copy)."""
    for i, name in enumerate(names):
        gt = texture(seed + i, h, w, c, dtype)
        lq = gt if identical else cv2.GaussianBlur(gt, (5, 5), 1.5)
        write_png(gt_dir / name, gt)
        write_png(lq_dir / name, lq)


def make_dpdd(root: Path, split: str = 'train', n: int = 3, h: int = 36, w: int = 52) -> None:
    """DPDD layout: <split>_c/source|target/*.png, 16-bit RGB."""
    base = root / f'{split}_c'
    make_paired_folder(base / 'source', base / 'target', [f'{i:04d}.png' for i in range(n)], h, w, 3, np.uint16)


def make_lfdof(root: Path, split: str = 'train', scenes=('s001', 's002', 's003'), per_scene: int = 3,
               h: int = 34, w: int = 50) -> None:
    """LFDOF layout: <split>_data/input/<scene>/*.png (several) and ground_truth/<scene>.png, 8-bit RGB."""
    base = root / f'{split}_data'
    for k, scene in enumerate(scenes):
        gt = texture(100 + k, h, w, 3)
        write_png(base / 'ground_truth' / f'{scene}.png', gt)
        for j in range(per_scene):
            write_png(base / 'input' / scene / f'{j:03d}.png', cv2.GaussianBlur(gt, (0, 0), 0.5 + j))
