"""Training augmentation of Sec. 4.1: random scaling, random crop and horizontal/vertical flips.

Cropping and the flip/rotation step reuse BasicSR's :func:`paired_random_crop` and :func:`augment`; this module
adds the random rescaling (same factor for every image of a sample, so pairs stay aligned) and an optional
vertical flip that does not imply the 90-degree rotations of BasicSR's ``rotation`` flag.

Option keys read by :func:`train_augment` (all optional except ``gt_size``):

* ``gt_size`` (int): square crop size.
* ``use_scale`` (bool, default True) and ``scale_range`` ([min, max], default [0.75, 1.25]): one factor drawn
  uniformly per sample; it is raised when needed so the rescaled image still holds a ``gt_size`` crop.
* ``use_hflip`` (default True), ``use_vflip`` (default True): independent flips with probability 0.5.
* ``use_rot`` (default False): BasicSR's rotation (vertical flip + transpose), off in the paper.
"""

from __future__ import annotations

import random
from typing import List, Sequence

import cv2
import numpy as np
from basicsr.data.transforms import augment, paired_random_crop

DEFAULT_SCALE_RANGE = (0.75, 1.25)


def _resize(img: np.ndarray, size_wh: tuple) -> np.ndarray:
    interp = cv2.INTER_AREA if size_wh[0] < img.shape[1] else cv2.INTER_CUBIC
    out = cv2.resize(img, size_wh, interpolation=interp)
    if out.ndim == 2:
        out = out[:, :, None]
    return np.clip(out, 0.0, 1.0) if out.dtype == np.float32 else out


def random_scale(imgs: Sequence[np.ndarray], scale_range: Sequence[float] = DEFAULT_SCALE_RANGE,
                 min_size: int = 0) -> List[np.ndarray]:
    """Rescale every image by one random factor (paper: "random scaling").

    The factor is drawn from ``scale_range`` and raised to keep both sides >= ``min_size``. Float images stay
    clipped to [0, 1] (bicubic up-sampling may overshoot).
    """
    low, high = float(scale_range[0]), float(scale_range[1])
    if not 0 < low <= high:
        raise ValueError(f'scale_range must satisfy 0 < min <= max, got {list(scale_range)}.')
    h, w = imgs[0].shape[:2]
    factor = random.uniform(low, high)
    factor = max(factor, min_size / min(h, w))
    new_w, new_h = max(int(round(w * factor)), min_size), max(int(round(h * factor)), min_size)
    if (new_w, new_h) == (w, h):
        return list(imgs)
    return [_resize(img, (new_w, new_h)) for img in imgs]


def random_flips(imgs: List[np.ndarray], hflip: bool = True, vflip: bool = True,
                 rotation: bool = False) -> List[np.ndarray]:
    """Same random flips for every image: BasicSR's ``augment`` (h-flip, rotation) then an optional v-flip."""
    imgs = [np.ascontiguousarray(img) for img in imgs]
    out = augment(imgs, hflip=hflip, rotation=rotation)
    out = out if isinstance(out, list) else [out]
    if vflip and not rotation and random.random() < 0.5:  # BasicSR's rotation already includes a v-flip
        out = [img[::-1] for img in out]
    return [np.ascontiguousarray(img) for img in out]


def train_augment(imgs: List[np.ndarray], opt: dict, names: str = '') -> List[np.ndarray]:
    """Random scale, one aligned random crop of ``opt['gt_size']`` and flips for aligned images (e.g. [gt, lq]).

    ``names`` identifies the sample in the error raised for images smaller than the crop.
    """
    gt_size = int(opt['gt_size'])
    if opt.get('use_scale', True):
        imgs = random_scale(imgs, opt.get('scale_range', DEFAULT_SCALE_RANGE), min_size=gt_size)
    h, w = imgs[0].shape[:2]
    if h < gt_size or w < gt_size:
        raise ValueError(f'Image {names} is {w}x{h}, smaller than gt_size {gt_size}.')
    first, rest = paired_random_crop(imgs[:1], list(imgs[1:]) or imgs[:1], gt_size, 1, names)
    cropped = [first] + ((rest if isinstance(rest, list) else [rest]) if len(imgs) > 1 else [])
    return random_flips(cropped, opt.get('use_hflip', True), opt.get('use_vflip', True), opt.get('use_rot', False))
