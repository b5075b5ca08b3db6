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
from typing import List

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


def random_flips(imgs: List[np.ndarray], hflip: bool = True, vflip: bool = True,
                 rotation: bool = False) -> List[np.ndarray]:
    """Same random flips for every image: BasicSR's ``augment`` (h-flip, rotation) then an optional v-flip."""
    # BasicSR flips in place (cv2.flip(img, 1, img)): never on a read-only array (a cached image, whole) or a view
    imgs = [np.array(img, order='C') for img in imgs]
    out = augment(imgs, hflip=hflip, rotation=rotation)
    out = out if isinstance(out, list) else [out]
    if vflip and not rotation and random.random() < 0.5:  # BasicSR's rotation already includes a v-flip
        out = [img[::-1] for img in out]
    return [np.ascontiguousarray(img) for img in out]


def train_augment(imgs: List[np.ndarray], opt: dict, names: str = '') -> List[np.ndarray]:
    """Random scale, one aligned random crop of ``opt['gt_size']`` and flips for aligned images (e.g. [gt, lq]).

    Scaling then cropping is done as crop-then-scale: a window of ``round(gt_size / factor)`` pixels is cut with
    BasicSR's ``paired_random_crop`` and resized to ``gt_size`` (same result as rescaling the whole image, without
    resizing megapixel frames for a 256-pixel patch). ``names`` identifies the sample in errors.
    """
    gt_size = int(opt['gt_size'])
    h, w = imgs[0].shape[:2]
    window = gt_size
    if opt.get('use_scale', True):
        low, high = (float(v) for v in opt.get('scale_range', DEFAULT_SCALE_RANGE))
        if not 0 < low <= high:
            raise ValueError(f'scale_range must satisfy 0 < min <= max, got {[low, high]}.')
        factor = max(random.uniform(low, high), gt_size / min(h, w))
        window = min(int(round(gt_size / factor)), h, w)
    if h < window or w < window:
        raise ValueError(f'Image {names} is {w}x{h}, smaller than gt_size {gt_size}.')
    first, rest = paired_random_crop(imgs[:1], list(imgs[1:]) or imgs[:1], window, 1, names)
    cropped = [first] + ((rest if isinstance(rest, list) else [rest]) if len(imgs) > 1 else [])
    if window != gt_size:
        cropped = [_resize(img, (gt_size, gt_size)) for img in cropped]
    return random_flips(cropped, opt.get('use_hflip', True), opt.get('use_vflip', True), opt.get('use_rot', False))
