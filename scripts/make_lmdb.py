"""Pack the datasets into LMDB with BasicSR's ``make_lmdb_from_imgs`` (PNG values: 16-bit data stays 16 bit).

Keys are what ``mpt_data`` expects (``meta_info.txt`` is written next to the data, one ``<key>.png (h,w,c) level``
line per image):

* ``bbbc006``: one ``BBBC006.lmdb`` for all requested planes, key ``z{NN}_{well}_s{site}_w{channel}``
  (``mpt_data.bbbc006_dataset.lmdb_key``); use with ``BBBC006Dataset`` and ``io_backend: {type: lmdb}``.
* ``dpdd``: ``<split>_c/source.lmdb`` and ``<split>_c/target.lmdb``, key = file stem.
* ``lfdof``: ``<split>_data/input.lmdb`` (key ``<scene>/<stem>``) and ``<split>_data/ground_truth.lmdb``
  (key ``<scene>``), the pairing ``PairedDefocusDataset`` uses with ``layout: lfdof``.
* ``folder``: any folder (3DHistech blur/GT, CaDISBlur blur_anatomy/blur_instruments/sharp, WNLO, CataBlur,
  CUHK): key = path relative to the folder without extension (paired folders get identical keys).

BasicSR reads images with ``cv2.imread(IMREAD_UNCHANGED)``. That keeps 16-bit PNG/TIFF as uint16 for the common
TIFF encodings; the script checks the first TIFF against ``tifffile`` and, if OpenCV decodes it differently (or
with ``--convert-tiff``), first converts every TIFF losslessly to a 16-bit PNG in a temporary folder.

Examples::

    python scripts/make_lmdb.py bbbc006 datasets/BBBC006 --planes 2 6 10 16
    python scripts/make_lmdb.py dpdd datasets/DPDD --splits train val test
    python scripts/make_lmdb.py lfdof datasets/LFDOF --splits train test
    python scripts/make_lmdb.py folder datasets/CaDISBlur/train/sharp
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import shutil
import sys
import tempfile
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from mpt_data.bbbc006_dataset import (  # imports mpt_common.basicsr_compat first
    lmdb_key,
    plane_folder,
    scan_plane_folder,
)
from mpt_data.image_io import is_image_file


def _check_key(key: str, path: str) -> None:
    if not key.isascii() or '.' in key or ' ' in key:
        raise ValueError(f'Cannot use {path!r} as LMDB key {key!r}: keys must be ASCII without dots or spaces '
                         '(BasicSR splits meta_info.txt lines on them).')


def _cv2_reads_tiff_exactly(path: str) -> bool:
    import tifffile

    ref = np.asarray(tifffile.imread(path))
    got = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    return got is not None and got.dtype == ref.dtype and got.shape == ref.shape and np.array_equal(got, ref)


def _tiff_to_png(paths: Sequence[str], tmp_dir: str) -> List[str]:
    import tifffile

    out = []
    for i, path in enumerate(paths):
        img = np.asarray(tifffile.imread(path))
        if img.ndim == 3 and img.shape[2] == 3:
            img = img[:, :, ::-1]  # tifffile gives RGB, cv2 writes BGR
        target = osp.join(tmp_dir, f'{i:08d}.png')
        if not cv2.imwrite(target, np.ascontiguousarray(img), [cv2.IMWRITE_PNG_COMPRESSION, 1]):
            raise OSError(f'Could not write {target!r} while converting {path!r}.')
        out.append(target)
    return out


def write_lmdb(paths: Sequence[str], keys: Sequence[str], lmdb_path: str, compress_level: int = 1,
               convert_tiff: Optional[bool] = None, n_thread: int = 0) -> str:
    """Write images ``paths`` under ``keys`` to ``lmdb_path`` with BasicSR's make_lmdb_from_imgs.

    ``convert_tiff``: None = decide from the first TIFF (convert only if OpenCV misreads it), True/False = force.
    """
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs  # after mpt_data (compat shim) is imported

    if not paths:
        raise ValueError(f'No image to write to {lmdb_path!r}.')
    if len(set(keys)) != len(keys):
        raise ValueError(f'Duplicate LMDB keys for {lmdb_path!r}.')
    for key, path in zip(keys, paths):
        _check_key(key, path)
    if osp.exists(lmdb_path):
        raise FileExistsError(f'{lmdb_path!r} already exists; remove it first.')
    tiffs = [p for p in paths if p.lower().endswith(('.tif', '.tiff'))]
    if convert_tiff is None:
        convert_tiff = bool(tiffs) and not _cv2_reads_tiff_exactly(tiffs[0])
    os.makedirs(osp.dirname(osp.abspath(lmdb_path)), exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix='tiff2png_', dir=osp.dirname(osp.abspath(lmdb_path))) if convert_tiff else None
    try:
        sources = list(paths)
        if convert_tiff and tiffs:
            converted = dict(zip(tiffs, _tiff_to_png(tiffs, tmp_dir)))
            sources = [converted.get(p, p) for p in paths]
        abs_sources = [osp.abspath(p) for p in sources]
        # BasicSR sizes the map from the first image alone (10 x its PNG x count), which overflows when the first
        # image compresses better than the rest (a blank field) or the images are tiny (LMDB's 4 KiB pages);
        # all sources' sizes with the same margin and a floor (the map is a maximum, not an allocation on Linux)
        map_size = 10 * sum(osp.getsize(p) for p in abs_sources) + (64 << 20)
        make_lmdb_from_imgs('/', lmdb_path, abs_sources, list(keys), compress_level=compress_level,
                            multiprocessing_read=n_thread > 0, n_thread=max(n_thread, 1), map_size=map_size)
    finally:
        if tmp_dir:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return lmdb_path


def folder_items(folder: str) -> Tuple[List[str], List[str]]:
    """All images below ``folder``; key = relative path without extension (forward slashes)."""
    if not osp.isdir(folder):
        raise FileNotFoundError(f'Folder {folder!r} does not exist.')
    paths, keys = [], []
    for base, _, names in sorted(os.walk(folder)):
        for name in sorted(names):
            if is_image_file(name):
                path = osp.join(base, name)
                paths.append(path)
                keys.append(osp.splitext(osp.relpath(path, folder))[0].replace(os.sep, '/'))
    if not paths:
        raise ValueError(f'Folder {folder!r} contains no image.')
    return paths, keys


def make_folder(folder: str, output: Optional[str] = None, **kw) -> str:
    """LMDB of one folder (keys: relative paths without extension)."""
    paths, keys = folder_items(folder)
    return write_lmdb(paths, keys, output or folder.rstrip('/\\') + '.lmdb', **kw)


def make_bbbc006(root: str, output: Optional[str] = None, planes: Sequence[int] = (2, 6, 10, 16), **kw) -> str:
    """One LMDB with the requested focal planes, keys ``z{NN}_{well}_s{site}_w{channel}``."""
    paths, keys = [], []
    for plane in planes:
        folder = osp.join(root, plane_folder(plane))
        if not osp.isdir(folder):
            raise FileNotFoundError(f'BBBC006 plane folder {folder!r} does not exist.')
        for field, path in sorted(scan_plane_folder(folder).items()):
            paths.append(path)
            keys.append(lmdb_key(plane, field))
    return write_lmdb(paths, keys, output or osp.join(root, 'BBBC006.lmdb'), **kw)


def make_dpdd(root: str, splits: Sequence[str] = ('train', 'val', 'test'), **kw) -> List[str]:
    """``<split>_c/source.lmdb`` and ``<split>_c/target.lmdb`` (keys: file stems)."""
    made = []
    for split in splits:
        for side in ('source', 'target'):
            folder = osp.join(root, f'{split}_c', side)
            made.append(make_folder(folder, folder + '.lmdb', **kw))
    return made


def make_lfdof(root: str, splits: Sequence[str] = ('train', 'test'), **kw) -> List[str]:
    """``input.lmdb`` (keys ``<scene>/<stem>``) and ``ground_truth.lmdb`` (keys ``<scene>``) per split."""
    made = []
    for split in splits:
        base = osp.join(root, f'{split}_data')
        made.append(make_folder(osp.join(base, 'input'), osp.join(base, 'input.lmdb'), **kw))
        made.append(make_folder(osp.join(base, 'ground_truth'), osp.join(base, 'ground_truth.lmdb'), **kw))
    return made


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('kind', choices=('bbbc006', 'dpdd', 'lfdof', 'folder'))
    parser.add_argument('input', help='dataset root (bbbc006/dpdd/lfdof) or image folder (folder)')
    parser.add_argument('--output', help='LMDB path for bbbc006/folder (default: next to the input)')
    parser.add_argument('--planes', type=int, nargs='+', default=[2, 6, 10, 16], help='BBBC006 focal planes')
    parser.add_argument('--splits', nargs='+', help='dpdd: train val test; lfdof: train test')
    parser.add_argument('--compress-level', type=int, default=1, help='PNG compression level 0-9 (lossless)')
    parser.add_argument('--convert-tiff', action='store_true', help='always convert TIFF to PNG with tifffile')
    parser.add_argument('--n-thread', type=int, default=0, help='>0: read images with that many processes')
    args = parser.parse_args(argv)
    kw = dict(compress_level=args.compress_level, convert_tiff=True if args.convert_tiff else None,
              n_thread=args.n_thread)
    if args.kind == 'bbbc006':
        made = [make_bbbc006(args.input, args.output, args.planes, **kw)]
    elif args.kind == 'dpdd':
        made = make_dpdd(args.input, args.splits or ('train', 'val', 'test'), **kw)
    elif args.kind == 'lfdof':
        made = make_lfdof(args.input, args.splits or ('train', 'test'), **kw)
    else:
        made = [make_folder(args.input, args.output, **kw)]
    for path in made:
        print(f'wrote {path}')


if __name__ == '__main__':
    sys.exit(main())
