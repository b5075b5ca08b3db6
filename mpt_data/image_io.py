"""Reading, validating and normalising images for every dataset of this package.

One place decides how bytes become a float ``H x W x C`` array in [0, 1] (RGB channel order):

* bytes come from BasicSR's :class:`~basicsr.utils.FileClient` (``disk`` or ``lmdb`` backends);
* TIFF files are decoded with ``tifffile`` (lossless, keeps 16 bit); everything else (PNG/JPEG, and the PNG values
  that :func:`basicsr.utils.lmdb_util.make_lmdb_from_imgs` stores) with BasicSR's ``imfrombytes(flag='unchanged')``,
  which keeps 16-bit PNGs 16 bit;
* integer images are divided by their dtype's maximum (8 bit: 255, 16 bit: 65535), see :func:`to_float`.

Every failure raises :class:`ImageReadError` naming the file (unreadable/truncated data, wrong channel count,
unsupported dtype, size mismatch inside a pair, flat images under a data-dependent normalisation).
"""

from __future__ import annotations

import io
import os
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from basicsr.utils import FileClient, imfrombytes

from mpt_common.image_files import IMAGE_EXTENSIONS, TIFF_EXTENSIONS, is_image_file  # noqa: F401  (part of the API)


class ImageReadError(ValueError):
    """An image could not be used; the message names the file and the reason."""


class FlatImageError(ImageReadError):
    """An image is flat between the percentiles of its normalisation (its range would divide by zero)."""


class ImageHeader(NamedTuple):
    """What an image file's header says: height, width, channels and the numpy dtype name of its samples."""

    height: int
    width: int
    channels: int
    dtype: str


_PIL_MODES = {'1': (1, 'uint8'), 'L': (1, 'uint8'), 'P': (3, 'uint8'), 'LA': (2, 'uint8'), 'RGB': (3, 'uint8'),
              'RGBA': (4, 'uint8'), 'CMYK': (4, 'uint8'), 'I;16': (1, 'uint16'), 'I;16B': (1, 'uint16'),
              'I;16L': (1, 'uint16'), 'I': (1, 'uint16'), 'F': (1, 'float32')}


def read_header(source: Union[str, bytes], name: str, tiff: Optional[bool] = None) -> ImageHeader:
    """Size, channels and dtype of an image from its header only (a path on disk, or the encoded bytes).

    TIFFs: ``tifffile`` reads the first page's tags; other formats: Pillow's lazy ``Image.open``. A format neither
    reads is decoded in full as a fallback. Raises :class:`ImageReadError` naming ``name`` when unreadable.
    """
    if tiff is None:
        tiff = name.lower().endswith(TIFF_EXTENSIONS)
    handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    if isinstance(handle, io.BytesIO) and len(source) == 0:
        raise ImageReadError(f'No data for image {name!r} (empty file or LMDB value).')
    try:
        if tiff:
            import tifffile

            with tifffile.TiffFile(handle) as tif:
                page = tif.pages[0]
                shape, dtype = page.shape, np.dtype(page.dtype).name
            if len(shape) == 3 and shape[0] in (1, 3, 4) and shape[-1] not in (1, 3, 4):
                shape = shape[1:] + shape[:1]  # planar (C, H, W)
            channels = shape[2] if len(shape) == 3 else 1
            if len(shape) not in (2, 3):
                raise ImageReadError(f'Image {name!r} has unsupported shape {shape}.')
            return ImageHeader(int(shape[0]), int(shape[1]), int(channels), dtype)
        from PIL import Image

        with Image.open(handle) as img:
            width, height = img.size
            mode = img.mode
        if mode in _PIL_MODES:
            channels, dtype = _PIL_MODES[mode]
            return ImageHeader(int(height), int(width), channels, dtype)
    except ImageReadError:
        raise
    except Exception as err:  # noqa: BLE001 - every decoder failure means the same to the user
        raise ImageReadError(f'Cannot read the header of image {name!r} (unreadable or not an image): '
                             f'{type(err).__name__}: {err}') from err
    if isinstance(source, str):
        with open(source, 'rb') as fin:
            source = fin.read()
    img = decode_image(bytes(source), name, tiff=tiff)  # unusual mode: decode to be sure
    return ImageHeader(img.shape[0], img.shape[1], img.shape[2], img.dtype.name)


def decode_image(content: Optional[bytes], path: str, tiff: Optional[bool] = None) -> np.ndarray:
    """Decode encoded image bytes into an ``H x W x C`` array in RGB order, keeping the stored dtype.

    ``path`` names the image in errors and, unless ``tiff`` is given, picks the decoder by its extension.
    """
    if content is None or len(content) == 0:
        raise ImageReadError(f'No data for image {path!r} (missing file or LMDB key).')
    if tiff is None:
        tiff = path.lower().endswith(TIFF_EXTENSIONS)
    if tiff:
        import tifffile

        try:
            img = tifffile.imread(io.BytesIO(content))
        except Exception as err:  # tifffile raises many types for damaged files
            raise ImageReadError(f'Cannot decode TIFF {path!r} (unreadable or truncated): {err}') from err
        img = np.asarray(img)
        if img.ndim == 3 and img.shape[0] in (1, 3, 4) and img.shape[-1] not in (1, 3, 4):
            img = np.moveaxis(img, 0, -1)  # planar (C, H, W) TIFF
        bgr = False
    else:
        img = imfrombytes(content, flag='unchanged', float32=False)
        if img is None:
            raise ImageReadError(f'Cannot decode image {path!r} (unreadable or truncated).')
        bgr = True
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3:
        raise ImageReadError(f'Image {path!r} has unsupported shape {img.shape} (expected H x W or H x W x C).')
    if bgr and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif bgr and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return img


def match_channels(img: np.ndarray, in_chans: int, path: str, to_gray: bool = False) -> np.ndarray:
    """Check that ``img`` has ``in_chans`` channels; with ``to_gray`` RGB images become one channel.

    ``to_gray`` is the paper's conversion of LFDOF to one channel for EFCR_ex on BBBC006 (Supp. Sec. 6).
    """
    channels = img.shape[2]
    if to_gray and in_chans == 1 and channels == 3:
        gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        return gray[:, :, None]
    if channels != in_chans:
        hint = ' (set to_gray: true to convert RGB to one channel)' if in_chans == 1 and channels == 3 else ''
        raise ImageReadError(f'Image {path!r} has {channels} channel(s) but the dataset option in_chans is '
                             f'{in_chans}{hint}.')
    return img


def to_float(img: np.ndarray, path: str) -> np.ndarray:
    """Integer image -> float32 in [0, 1], dividing by the dtype's maximum (8 bit: 255, 16 bit: 65535).

    Dividing by a constant keeps intensities physically linear and identical for both images of a pair.
    """
    if img.dtype == np.uint8 or img.dtype == np.uint16:
        return img.astype(np.float32) / float(np.iinfo(img.dtype).max)
    raise ImageReadError(f'Image {path!r} has dtype {img.dtype}; only 8- and 16-bit unsigned images are supported.')


def check_same_size(img_a: np.ndarray, path_a: str, img_b: np.ndarray, path_b: str) -> None:
    """Raise when two images of a pair differ in height or width."""
    if img_a.shape[:2] != img_b.shape[:2]:
        raise ImageReadError(f'Pair size mismatch: {path_a!r} is {img_a.shape[1]}x{img_a.shape[0]} but {path_b!r} '
                             f'is {img_b.shape[1]}x{img_b.shape[0]} (W x H).')


def percentile_range(img: np.ndarray, percentiles: Sequence[float], path: str) -> Tuple[float, float]:
    """Low/high intensity at the given percentiles; raises for flat images (their range would divide by zero)."""
    low, high = (float(v) for v in np.percentile(img, [percentiles[0], percentiles[1]]))
    if not high > low:
        raise FlatImageError(f'Image {path!r} is flat between the {percentiles[0]}th and {percentiles[1]}th '
                             f'percentiles (value {low}); percentile normalisation would divide by zero.')
    return low, high


class ImageLoader:
    """Reads images through BasicSR's FileClient and returns validated float arrays.

    Args:
        io_backend: BasicSR ``io_backend`` option, e.g. ``{'type': 'disk'}`` or ``{'type': 'lmdb'}``.
        lmdb_roots: for the lmdb backend, ``{client_key: lmdb_folder}``; the ``path`` given to :meth:`read` is then
            the LMDB key (BasicSR convention: the file name without extension).
        in_chans: expected channel count (1 grayscale, 3 RGB).
        to_gray: convert RGB images to one channel when ``in_chans`` is 1.
    """

    def __init__(self, io_backend: dict, lmdb_roots: Optional[dict] = None, in_chans: int = 3,
                 to_gray: bool = False) -> None:
        self.io_opt = dict(io_backend)
        self.backend = self.io_opt.pop('type')
        if self.backend not in ('disk', 'lmdb'):
            raise ValueError(f'io_backend type {self.backend!r} is not supported (use disk or lmdb).')
        if self.backend == 'lmdb':
            if not lmdb_roots:
                raise ValueError('io_backend lmdb needs LMDB folders.')
            for root in lmdb_roots.values():
                if not str(root).endswith('.lmdb') or not os.path.isfile(os.path.join(root, 'meta_info.txt')):
                    raise ValueError(f'{root!r} is not an LMDB made by make_lmdb.py (needs a .lmdb folder with '
                                     'meta_info.txt).')
        self.lmdb_roots = dict(lmdb_roots or {})
        self.in_chans = int(in_chans)
        self.to_gray = bool(to_gray)
        self._client = None  # created lazily so that each DataLoader worker opens its own handles

    @property
    def is_lmdb(self) -> bool:
        return self.backend == 'lmdb'

    def _file_client(self) -> FileClient:
        if self._client is None:
            if self.is_lmdb:
                from mpt_data import lmdb_envs

                lmdb_envs.install()  # one environment per folder per process, shared with every other reader
                self._client = FileClient('lmdb', db_paths=list(self.lmdb_roots.values()),
                                          client_keys=list(self.lmdb_roots.keys()), **self.io_opt)
            else:
                self._client = FileClient('disk', **self.io_opt)
        return self._client

    def _decode(self, path: str, client_key: str) -> Tuple[np.ndarray, str]:
        """(decoded image in its stored dtype, its name in messages)."""
        if self.is_lmdb:
            content = self._file_client().get(path, client_key)
            name = f'{self.lmdb_roots[client_key]}[{path}]'
            return decode_image(content, name, tiff=False), name  # make_lmdb_from_imgs stores PNG
        try:
            content = self._file_client().get(path)
        except OSError as err:
            raise ImageReadError(f'Cannot read image file {path!r}: {err}') from err
        return decode_image(content, path), path

    def read_raw(self, path: str, client_key: str = 'default') -> np.ndarray:
        """Decoded image in its stored dtype (H x W x C, RGB), channel-checked."""
        img, name = self._decode(path, client_key)
        return match_channels(img, self.in_chans, name, self.to_gray)

    def inspect(self, path: str, client_key: str = 'default') -> ImageHeader:
        """Decode the whole image (a truncated or damaged file fails here, not at the batch that draws it) and
        return its size, channels and dtype (``check_files``)."""
        self.read_header(path, client_key)  # a missing, empty or damaged header is named as such
        img, _ = self._decode(path, client_key)
        return ImageHeader(img.shape[0], img.shape[1], img.shape[2], img.dtype.name)

    def read_header(self, path: str, client_key: str = 'default') -> ImageHeader:
        """:func:`read_header` of one image (disk: the file's header only; LMDB: the stored PNG's header)."""
        if self.is_lmdb:
            name = f'{self.lmdb_roots[client_key]}[{path}]'
            content = self._file_client().get(path, client_key)
            if content is None:
                raise ImageReadError(f'No data for image {name!r} (missing LMDB key).')
            return read_header(bytes(content), name, tiff=False)
        if not os.path.isfile(path):
            raise ImageReadError(f'Image file {path!r} does not exist.')
        if os.path.getsize(path) == 0:
            raise ImageReadError(f'No data for image {path!r} (empty file).')
        return read_header(path, path)

    def read(self, path: str, client_key: str = 'default') -> np.ndarray:
        """Image as float32 ``H x W x C`` in [0, 1] (divided by the dtype's maximum)."""
        return to_float(self.read_raw(path, client_key), path)

    def read_unconverted(self, path: str, client_key: str = 'default') -> np.ndarray:
        """:meth:`read`, but an RGB image that ``to_gray`` accepts keeps its three channels (the caller picks one:
        ``SyntheticDefocusDataset``'s ``gray_channels``)."""
        img, name = self._decode(path, client_key)
        if not (self.to_gray and self.in_chans == 1 and img.shape[2] == 3):
            img = match_channels(img, self.in_chans, name)
        return to_float(img, name)


def read_meta_info(path: str) -> List[str]:
    """The entries of a ``meta_info`` file (a dataset's ``meta_info_file``, an LMDB's ``meta_info.txt``): the first
    token of each non-blank line, BasicSR's format."""
    with open(path) as fin:
        return [line.strip().split(' ')[0] for line in fin if line.strip()]


def read_lmdb_keys(lmdb_root: str) -> list:
    """Keys of an LMDB made by make_lmdb_from_imgs (first token of each meta_info.txt line, minus '.png')."""
    meta = os.path.join(lmdb_root, 'meta_info.txt')
    if not os.path.isfile(meta):
        raise ValueError(f'LMDB folder {lmdb_root!r} has no meta_info.txt.')
    keys = [name[:-4] if name.endswith('.png') else os.path.splitext(name)[0] for name in read_meta_info(meta)]
    if not keys:
        raise ValueError(f'LMDB {lmdb_root!r} is empty (meta_info.txt lists no image).')
    return keys
