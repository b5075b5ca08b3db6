"""The intensity normalisation contract shared by training, validation, testing and ``mpt-deblur``.

A dataset's ``normalize`` option names how raw pixel values become the floats the network sees. Every mode
except the legacy ``gt_percentile`` is computable from the **blurry input alone**, so ``mpt-deblur -opt <train
yml>`` applies exactly the map the network was trained with and inverts it on the output (back to the input's
units and dtype). One map is applied to both images of a training pair, so their relation stays affine.

Modes (dataset option ``normalize``; ``norm_percentiles``, ``norm_max``):

* ``input_percentile`` (BBBC006 default): ``low``/``high`` = the ``norm_percentiles`` (default [0.1, 99.9]) of
  the *input*; ``x -> (x - low) / (high - low)``, **not clipped** (the sharper ground truth may exceed 1; the
  map stays exactly invertible). A flat input (high == low) is an error.
* ``dtype`` (default of the other datasets): divide by the dtype's maximum (255, 65535; float images as they are).
* ``fixed``: divide by ``norm_max`` (e.g. 4095 for 12-bit data), clipped to [0, 1].
* ``gt_percentile`` (alias ``percentile``, the pre-contract BBBC006 default): the percentiles of the in-focus
  ground truth, clipped to [0, 1]. Kept so that old option files evaluate as before; it needs the ground truth,
  so ``mpt-deblur`` refuses it (:func:`require_input_only`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from mpt_data.image_io import ImageReadError, percentile_range

MODES = ('input_percentile', 'dtype', 'fixed', 'gt_percentile', 'percentile')
LEGACY_GT_MODES = ('gt_percentile', 'percentile')
SUPPORTED_DTYPES = (np.uint8, np.uint16, np.float32)


class NormalizationError(ImageReadError):
    """A normalisation option or an image it is applied to cannot be used; the message names both."""


@dataclass(frozen=True)
class IntensityMap:
    """The affine map ``x -> (x - low) / scale`` (optionally clipped to [0, 1]) and its inverse."""

    low: float
    scale: float
    clip: bool = False

    def forward(self, img: np.ndarray) -> np.ndarray:
        """Raw values (any supported dtype) -> float32 network input."""
        out = (img.astype(np.float32) - np.float32(self.low)) / np.float32(self.scale)
        return np.clip(out, 0.0, 1.0) if self.clip else out

    def inverse(self, out: np.ndarray, dtype: np.dtype, clipped: Optional[Dict[str, int]] = None) -> np.ndarray:
        """Network output -> raw units as ``dtype`` (integers: rounded and clipped to the dtype's range; the values
        clipped below and above are added to ``clipped['low']`` / ``clipped['high']`` when given)."""
        raw = out.astype(np.float32) * np.float32(self.scale) + np.float32(self.low)
        return to_dtype(raw, dtype, clipped)


def to_dtype(raw: np.ndarray, dtype: np.dtype, clipped: Optional[Dict[str, int]] = None) -> np.ndarray:
    """Values in raw units as ``dtype``: integers rounded and clipped to the dtype's range, the values clipped below
    and above added to ``clipped['low']`` / ``clipped['high']`` when given; floats cast."""
    dtype = np.dtype(dtype)
    if dtype.kind not in 'ui':
        return raw.astype(dtype)
    info = np.iinfo(dtype)
    rounded = np.round(raw)
    if clipped is not None:
        clipped['low'] = clipped.get('low', 0) + int(np.count_nonzero(rounded < info.min))
        clipped['high'] = clipped.get('high', 0) + int(np.count_nonzero(rounded > info.max))
    return np.clip(rounded, info.min, info.max).astype(dtype)


@dataclass(frozen=True)
class Normalization:
    """A ``normalize`` option resolved: :meth:`map_for` gives the :class:`IntensityMap` of one image (pair)."""

    mode: str
    percentiles: Tuple[float, float] = (0.1, 99.9)
    norm_max: Optional[float] = None

    @property
    def needs_gt(self) -> bool:
        """True for the legacy map computed from the ground truth (unusable at inference)."""
        return self.mode in LEGACY_GT_MODES

    def map_for(self, lq: np.ndarray, path: str, gt: Optional[np.ndarray] = None,
                gt_path: Optional[str] = None) -> IntensityMap:
        """The map of the image ``lq`` (``gt`` only for the legacy ``gt_percentile`` mode)."""
        check_dtype(lq, path)
        if self.mode == 'dtype':
            top = float(np.iinfo(lq.dtype).max) if lq.dtype.kind in 'ui' else 1.0
            return IntensityMap(0.0, top)
        if self.mode == 'fixed':
            return IntensityMap(0.0, float(self.norm_max), clip=True)
        if self.needs_gt:
            if gt is None:
                raise NormalizationError(f'normalize: {self.mode} needs the ground truth of {path!r}.')
            low, high = percentile_range(gt, self.percentiles, gt_path or path)
            return IntensityMap(low, high - low, clip=True)
        low, high = percentile_range(lq, self.percentiles, path)
        return IntensityMap(low, high - low)

    def pair_maps(self, lq: np.ndarray, lq_path: str, gt: np.ndarray,
                  gt_path: str) -> Tuple[IntensityMap, IntensityMap]:
        """Maps of a training pair: one map for both, except ``dtype``, whose constant follows each image's dtype."""
        imap = self.map_for(lq, lq_path, gt, gt_path)
        return imap, (self.map_for(gt, gt_path) if self.mode == 'dtype' else imap)


def check_dtype(img: np.ndarray, path: str) -> None:
    """Raise unless ``img`` is uint8, uint16 or float32 with finite values."""
    if img.dtype not in SUPPORTED_DTYPES:
        raise NormalizationError(f'Image {path!r} has dtype {img.dtype}; supported: uint8, uint16, float32.')
    if img.dtype.kind == 'f' and not np.isfinite(img).all():
        raise NormalizationError(f'Image {path!r} contains NaN or infinite values.')


def from_options(opt: Mapping[str, Any], default: str = 'dtype') -> Normalization:
    """Resolve a dataset's ``normalize`` / ``norm_percentiles`` / ``norm_max`` options (errors name the key)."""
    mode = str(opt.get('normalize', default))
    name = opt.get('name', opt.get('type', 'dataset'))
    if mode not in MODES:
        raise NormalizationError(f'{name}: normalize must be one of {MODES}, got {mode!r}.')
    pct = opt.get('norm_percentiles', (0.1, 99.9))
    try:
        low, high = (float(v) for v in pct)
    except (TypeError, ValueError):
        raise NormalizationError(f'{name}: norm_percentiles must be two numbers, got {pct!r}.') from None
    if not 0 <= low < high <= 100:
        raise NormalizationError(f'{name}: norm_percentiles must satisfy 0 <= low < high <= 100, got {pct!r}.')
    norm_max = opt.get('norm_max')
    if mode == 'fixed' and not (isinstance(norm_max, (int, float)) and norm_max > 0):
        raise NormalizationError(f'{name}: normalize: fixed needs a positive norm_max, got {norm_max!r}.')
    return Normalization(mode, (low, high), float(norm_max) if norm_max is not None else None)


def dataset_default(ds_type: Any) -> str:
    """The default mode of a registered dataset type: its ``DEFAULT_NORMALIZE`` (:mod:`mpt_data.plugin_dataset`).

    Types without one (BasicSR's own datasets divide by the 8-bit maximum) and unregistered names: ``dtype``.
    """
    from basicsr.utils.registry import DATASET_REGISTRY

    cls = DATASET_REGISTRY.get(str(ds_type)) if str(ds_type) in DATASET_REGISTRY else None
    return getattr(cls, 'DEFAULT_NORMALIZE', 'dtype')



def from_train_options(opt: Mapping[str, Any], source: str = 'option file') -> Normalization:
    """The normalisation the network of a BasicSR option file was trained with (its ``datasets`` entries).

    Every train/val/test dataset must agree (otherwise validation numbers would be on another scale than
    training); a file without datasets means ``dtype``.
    """
    found = {}
    for key, ds in (opt.get('datasets') or {}).items():
        if not isinstance(ds, Mapping):
            continue
        resolved = from_options(ds, dataset_default(ds.get('type')))
        found[key] = resolved
    if not found:
        return Normalization('dtype')
    first_key, first = next(iter(found.items()))
    for key, norm in found.items():
        if norm != first:
            raise NormalizationError(f'{source}: datasets {first_key!r} and {key!r} use different normalisations '
                                     f'({first} vs {norm}); set the same normalize in both.')
    return first


def require_input_only(norm: Normalization, source: str) -> None:
    """Refuse the legacy ground-truth map for inference, saying why and what to set."""
    if norm.needs_gt:
        raise NormalizationError(
            f'{source}: normalize: {norm.mode} maps intensities with the percentiles of the in-focus ground truth, '
            'which a blurry image to deblur does not have, so mpt-deblur cannot reproduce what the network saw in '
            'training. It still works for evaluation (scripts/test.py). For deblurring, train with '
            "normalize: input_percentile (the BBBC006 default: the input's own percentiles), dtype or fixed.")
