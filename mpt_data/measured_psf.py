"""Measured PSFs: a bead image or a PSF TIFF (2-D, or a 3-D stack whose planes are defocus levels) as kernels.

A measured PSF is the image of a sub-resolution bead (or a PSF computed by other software), sampled at the pixel
size of the images it will blur. Each plane is made a kernel the way the synthetic ones are (``mpt_data.psf``):

1. background: the median of the plane's outermost two-pixel ring is subtracted (camera offset, diffuse light),
   negative values are set to 0; ``background: 0`` (or any number) subtracts that value instead;
2. centre: the intensity centroid of the stack's sum projection above 10 % of its peak (one lateral centre for
   every plane, so a tilted or drifting stack keeps its shape; the threshold keeps the noise floor from pulling
   the centroid towards the middle of the frame), rounded to a pixel;
3. crop: the largest odd square around the centre that fits in the image (``radius`` pixels caps it);
4. normalised to sum 1 (a plane that is 0 after the background is an error naming the file and plane).

Crop a single isolated bead; several beads or a bead near the border give a wrong kernel.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Optional, Tuple, Union

import numpy as np


class MeasuredPSFError(ValueError):
    """A measured PSF file cannot be used; the message names the file and the reason."""


def load_measured_psf(path: str, background: Union[str, float] = 'auto', radius: Optional[int] = None) -> np.ndarray:
    """The kernels of ``path`` (TIFF or any image ``mpt_data.image_io`` reads): ``planes x K x K`` float32, read-only;
    cached per file content (path, size, modification time)."""
    if not os.path.isfile(path):
        raise MeasuredPSFError(f'Measured PSF {path!r} does not exist.')
    stat = os.stat(path)
    return _load(os.path.abspath(path), stat.st_size, stat.st_mtime_ns, str(background), radius)


@lru_cache(maxsize=16)
def _load(path: str, _size: int, _mtime: int, background: str, radius: Optional[int]) -> np.ndarray:
    stack = _read(path)
    if background == 'auto':
        ring = np.concatenate([stack[:, :2].reshape(len(stack), -1), stack[:, -2:].reshape(len(stack), -1),
                               stack[:, :, :2].reshape(len(stack), -1), stack[:, :, -2:].reshape(len(stack), -1)], 1)
        stack = stack - np.median(ring, axis=1)[:, None, None]
    else:
        try:
            stack = stack - float(background)
        except ValueError:
            raise MeasuredPSFError(f'Measured PSF {path!r}: background must be auto or a number, got '
                                   f'{background!r}.') from None
    stack = np.maximum(stack, 0.0)
    cy, cx = _centre(stack.sum(axis=0), path)
    half = min(cy, cx, stack.shape[1] - 1 - cy, stack.shape[2] - 1 - cx)
    if radius is not None:
        half = min(half, int(radius))
    if half < 1:
        raise MeasuredPSFError(f'Measured PSF {path!r}: its centre ({cy}, {cx}) is at the image border; crop the bead '
                               'with a margin around it.')
    kernels = stack[:, cy - half:cy + half + 1, cx - half:cx + half + 1].astype(np.float64)
    sums = kernels.sum(axis=(1, 2))
    empty = [int(i) for i in np.flatnonzero(~(sums > 0))]
    if empty:
        raise MeasuredPSFError(f'Measured PSF {path!r}: plane(s) {empty} are 0 after background subtraction.')
    out = (kernels / sums[:, None, None]).astype(np.float32)
    out.setflags(write=False)
    return out


def _read(path: str) -> np.ndarray:
    """``planes x H x W`` float64 of a 2-D image or a 3-D stack (leading axes of a TIFF flattened to planes)."""
    try:
        if path.lower().endswith(('.tif', '.tiff')):
            import tifffile

            data = np.asarray(tifffile.imread(path))
        else:
            from mpt_data.image_io import decode_image

            with open(path, 'rb') as handle:
                data = decode_image(handle.read(), path)
            if data.shape[2] != 1:
                raise MeasuredPSFError(f'Measured PSF {path!r} has {data.shape[2]} colour channels; give a '
                                       'one-channel image or stack.')
            data = data[:, :, 0]
    except MeasuredPSFError:
        raise
    except Exception as err:  # tifffile and decoders raise many types for damaged files
        raise MeasuredPSFError(f'Cannot read measured PSF {path!r}: {err}') from None
    if data.ndim < 2 or min(data.shape[-2:]) < 3:
        raise MeasuredPSFError(f'Measured PSF {path!r} has shape {data.shape}; expected (y, x) or (z, y, x).')
    data = data.reshape((-1,) + data.shape[-2:]).astype(np.float64)
    if not np.isfinite(data).all():
        raise MeasuredPSFError(f'Measured PSF {path!r} contains NaN or infinite values.')
    return data


def _centre(projection: np.ndarray, path: str) -> Tuple[int, int]:
    if not projection.max() > 0:
        raise MeasuredPSFError(f'Measured PSF {path!r} is 0 everywhere after background subtraction.')
    projection = np.maximum(projection - 0.1 * projection.max(), 0.0)  # the noise floor would pull it to the middle
    total = projection.sum()
    yy, xx = np.indices(projection.shape)
    return int(round(float((yy * projection).sum() / total))), int(round(float((xx * projection).sum() / total)))


def measured_psf(file: str, plane: int = 0, background: Union[str, float] = 'auto',
                 radius: Optional[int] = None) -> np.ndarray:
    """Kernel ``plane`` of the measured PSF ``file`` (:func:`load_measured_psf`)."""
    kernels = load_measured_psf(file, background, radius)
    if not 0 <= int(plane) < len(kernels):
        raise MeasuredPSFError(f'Measured PSF {file!r} has {len(kernels)} plane(s); plane {plane} does not exist.')
    return kernels[int(plane)]
