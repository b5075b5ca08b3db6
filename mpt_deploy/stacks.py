"""Microscopy image files as stacks of 2-D planes: axes, dtype and metadata kept from reading to writing.

Every image is an array with one axis letter per dimension (tifffile's convention): ``Y``, ``X`` (the plane),
``S`` (colour samples of one pixel: RGB, RGBA), and any other letter (``Z``, ``T``, ``C``, ``Q``, ``I``, ...)
for an axis of planes. The network sees one ``H x W x colour`` plane at a time (the paper trains on 2-D
images, Sec. 4.1): :func:`planes` flattens the plane axes, :func:`from_planes` restores them.

* TIFF: the axes of tifffile's first series (from ImageJ/OME/shaped metadata or the photometric tags; a stack
  without axis metadata is ``Q`` = planes, never colour unless its tags say RGB). ``axes=`` overrides them
  (``mpt-deblur --axes``). Uint8, uint16 and float32 are accepted; ImageJ metadata (spacing, unit, ranges,
  ...), the OME-XML and the X/Y resolution are written back unchanged (data written uncompressed).
* PNG/JPEG/BMP: decoded as the training datasets do (BasicSR ``imfrombytes``; ``YX`` or ``YXS`` in RGB order).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import numpy as np

from mpt_common.image_files import TIFF_EXTENSIONS

PLANE_AXES = 'YX'
COLOUR_AXIS = 'S'
IMAGEJ_DERIVED = ('ImageJ', 'images', 'channels', 'slices', 'frames', 'hyperstack', 'axes')


class StackError(ValueError):
    """An image file cannot be read as a stack of planes; the message names the file."""


@dataclass
class ImageFile:
    """A decoded image file: ``data`` with one letter of ``axes`` per dimension, plus what writing needs."""

    path: str
    data: np.ndarray
    axes: str
    is_tiff: bool
    tiff_options: Dict[str, Any] = field(default_factory=dict)

    @property
    def plane_size(self) -> Tuple[int, int]:
        """``(height, width)`` of its planes."""
        return self.data.shape[self.axes.index('Y')], self.data.shape[self.axes.index('X')]


def check_axes(axes: str, ndim: Optional[int] = None, where: str = '--axes') -> str:
    """Upper-case ``axes``; raise unless its letters are distinct, include Y and X and (if given) number ``ndim``."""
    axes = axes.upper()
    if not axes.isalpha() or len(set(axes)) != len(axes) or 'Y' not in axes or 'X' not in axes:
        raise StackError(f'{where}: axes {axes!r} must be distinct letters including Y and X (e.g. ZYX, TZYX, YXS).')
    if ndim is not None and len(axes) != ndim:
        raise StackError(f'{where}: axes {axes!r} name {len(axes)} dimensions but the image has {ndim}.')
    return axes


def read_image_file(path: str, axes: Optional[str] = None) -> ImageFile:
    """Read ``path`` (TIFF through tifffile, other formats as the datasets do); ``axes`` overrides the guess."""
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise StackError(f'{path!r} is empty (0 bytes): nothing to deblur.')
    if path.lower().endswith(TIFF_EXTENSIONS):
        image = _read_tiff(path)
        if image.data.size == 0:
            raise StackError(f'{path!r} has no pixels (shape {image.data.shape}): nothing to deblur.')
    else:
        from mpt_data.image_io import decode_image

        with open(path, 'rb') as handle:
            img = decode_image(handle.read(), path)
        image = ImageFile(path, img[:, :, 0] if img.shape[2] == 1 else img,
                          'YX' if img.shape[2] == 1 else 'YXS', False)
    if axes:
        if not image.is_tiff and check_axes(axes, image.data.ndim, f'{path!r}') != image.axes:
            raise StackError(f'{path!r}: --axes {axes!r} applies to TIFF files only (this file is {image.axes}).')
        image.axes = check_axes(axes, image.data.ndim, f'{path!r} (shape {image.data.shape})')
    else:
        check_axes(image.axes, image.data.ndim, f'{path!r}')
    return image


def _read_tiff(path: str) -> ImageFile:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            data = series.asarray()
            axes = series.axes
            page = tif.pages[0]
            options: Dict[str, Any] = {}
            if tif.is_imagej and tif.imagej_metadata:
                options['imagej'] = {k: v for k, v in tif.imagej_metadata.items() if k not in IMAGEJ_DERIVED}
            elif tif.is_ome and tif.ome_metadata:
                options['ome'] = tif.ome_metadata
            tags = page.tags
            if 'XResolution' in tags and 'YResolution' in tags:
                options['resolution'] = (_rational(tags['XResolution'].value), _rational(tags['YResolution'].value))
                if 'ResolutionUnit' in tags:
                    options['resolutionunit'] = int(tags['ResolutionUnit'].value)
            if page.extrasamples:
                options['extrasamples'] = tuple(int(e) for e in page.extrasamples)
    except FileNotFoundError:
        raise
    except Exception as err:  # tifffile raises many types for damaged files
        raise StackError(f'Cannot decode TIFF {path!r} (unreadable or truncated): {err}') from None
    return ImageFile(path, np.asarray(data), axes.upper(), True, options)


def _rational(value: Any) -> float:
    return value[0] / value[1] if isinstance(value, tuple) else float(value)


def colour_axis(axes: str, shape: Tuple[int, ...], in_chans: Optional[int]) -> Optional[str]:
    """The axis holding a plane's colour: ``S``; else ``C`` when a multi-channel net takes exactly its size."""
    if COLOUR_AXIS in axes:
        return COLOUR_AXIS
    if in_chans and in_chans > 1 and 'C' in axes and shape[axes.index('C')] == in_chans:
        return 'C'
    return None


def planes(data: np.ndarray, axes: str, colour: Optional[str]) -> Tuple[np.ndarray, tuple]:
    """``N x H x W x colour`` view of ``data`` and the layout :func:`from_planes` needs to undo it."""
    order = [i for i, a in enumerate(axes) if a not in PLANE_AXES and a != colour]
    order += [axes.index('Y'), axes.index('X')]
    if colour:
        order.append(axes.index(colour))
    moved = np.transpose(data, order)
    lead = moved.shape[:len(moved.shape) - (3 if colour else 2)]
    h, w = moved.shape[len(lead)], moved.shape[len(lead) + 1]
    flat = moved.reshape((-1, h, w, moved.shape[-1] if colour else 1))
    return flat, (order, moved.shape)


def from_planes(flat: np.ndarray, layout: tuple) -> np.ndarray:
    """Inverse of :func:`planes` (the planes may have a new dtype)."""
    order, moved_shape = layout
    return np.transpose(flat.reshape(moved_shape), np.argsort(order))


def write_image_file(path: str, image: ImageFile, data: np.ndarray) -> None:
    """Write ``data`` (same shape as ``image.data``) to ``path`` in the format, axes and metadata of ``image``."""
    if image.is_tiff:
        _write_tiff(path, image, data)
        return
    import cv2

    ext = os.path.splitext(image.path)[1].lower()
    if ext in ('.jpg', '.jpeg') and data.dtype != np.uint8:
        raise StackError(f'Cannot write {data.dtype} data as JPEG {path!r} (JPEG is 8 bit).')
    img = data
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext in ('.jpg', '.jpeg') else []
    ok, encoded = cv2.imencode(ext, img, params)
    if not ok:
        raise StackError(f'Could not encode {path!r} as {ext}.')
    with open(path, 'wb') as handle:
        handle.write(encoded.tobytes())


def _write_tiff(path: str, image: ImageFile, data: np.ndarray) -> None:
    import tifffile

    opts = image.tiff_options
    axes = image.axes
    kwargs: Dict[str, Any] = {}
    colour = COLOUR_AXIS in axes and data.shape[axes.index(COLOUR_AXIS)] in (3, 4)
    kwargs['photometric'] = 'rgb' if colour else 'minisblack'
    if colour:
        kwargs['planarconfig'] = 'contig' if axes.endswith(COLOUR_AXIS) else 'separate'
        if data.shape[axes.index(COLOUR_AXIS)] == 4:
            kwargs['extrasamples'] = opts.get('extrasamples', (2,))
    if 'resolution' in opts:
        kwargs['resolution'] = opts['resolution']
        if 'resolutionunit' in opts:
            kwargs['resolutionunit'] = opts['resolutionunit']
    if 'imagej' in opts:
        kwargs.update(imagej=True, metadata={**opts['imagej'], 'axes': axes})
    elif 'ome' in opts:
        kwargs.update(description=opts['ome'], metadata=None)  # the OME-XML as read: same planes, same order
    else:
        kwargs['metadata'] = {'axes': axes}
    tifffile.imwrite(path, data, **kwargs)
