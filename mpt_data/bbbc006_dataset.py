"""BBBC006 z-stacks (Broad Bioimage Benchmark Collection) as defocus pairs (Sec. 4.1 and Supp. Sec. 6).

Published layout: one folder per focal plane ``BBBC006_v1_images_z_NN`` (NN = 00..33, z = 16 in focus) holding
16-bit grayscale TIFFs ``mcf-z-stacks-03212011_<well>_s<site>_w<channel><UUID>.tif``. The trailing identifier
differs between planes, so images are matched by (well, site, channel) parsed with :data:`FILE_PATTERN`. The paper
pairs inputs z in {2, 6, 10} with z = 16, per channel (w1 Hoechst, w2 phalloidin).

Options (``type: BBBC006Dataset``):

* ``dataroot``: folder holding the ``BBBC006_v1_images_z_NN`` folders, or with ``io_backend: {type: lmdb}`` the
  ``.lmdb`` made by ``scripts/make_lmdb.py bbbc006`` (keys ``z{NN}_{well}_s{site}_w{channel}``, :func:`lmdb_key`).
* ``channel``: ``w1``, ``w2`` or ``both`` (both stains pooled; every sample stays one grayscale channel).
* ``gt_plane`` (16), ``input_planes`` ([2, 6, 10]).
* ``split``: ``train``, ``test`` or ``all``. Deterministic split by well, so no field of view (nor any other
  site of its well) is in both: a well is in the test split when ``md5(f'{split_seed}:{well}')`` maps below
  ``test_fraction`` (default 0.2, ``split_seed`` 0). Hash based, so a well's split does not depend on which
  other wells are present. ``test_wells`` (list) overrides the hash.
* ``normalize`` (intensity normalisation, one map for the input and the ground truth of a pair; the contract
  shared with ``mpt-deblur``, :mod:`mpt_data.normalization`):

  - ``input_percentile`` (default): the ``norm_percentiles`` (default [0.1, 99.9]) of the blurry *input* give
    ``low``/``high``; both images become ``(x - low) / (high - low)`` (not clipped). Computable from the input
    alone, so ``mpt-deblur`` applies the same map to images without ground truth and inverts it. BBBC006 uses a
    small, well-dependent part of the 16-bit range; dividing by 65535 would squash images into roughly
    [0, 0.06]. A flat input is an error.
  - ``gt_percentile`` (alias ``percentile``, the former default): the same with the in-focus image's
    percentiles, clipped to [0, 1]; for evaluating old option files only (``mpt-deblur`` refuses it).
  - ``dtype``: divide by 65535 (physically linear across the whole set).
  - ``fixed``: divide by ``norm_max`` (e.g. 4095 for 12-bit data), clipped to [0, 1].

* Training (``phase: train``): ``gt_size`` crop, random scaling, flips (:mod:`mpt_data.transforms`);
  ``extra_dataset`` / ``extra_sampling``: :mod:`mpt_data.extra_data`.

Returns ``lq``, ``gt`` (1 x H x W float in [0, 1]), ``lq_path``, ``gt_path``.
"""

from __future__ import annotations

import hashlib
import os
import os.path as osp
import re
from typing import Dict, Iterable, List, Tuple

import numpy as np
from basicsr.utils import img2tensor
from basicsr.utils.registry import DATASET_REGISTRY

from mpt_data.extra_data import ExtraDatasetMixin
from mpt_data.file_checks import note_ignored, raise_unpaired
from mpt_data.image_io import ImageLoader, ImageReadError, check_same_size, read_lmdb_keys
from mpt_data.normalization import from_options as normalization_from_options
from mpt_data.plugin_dataset import PluginDataset
from mpt_data.transforms import train_augment

FILE_PATTERN = re.compile(r'mcf-z-stacks-03212011_([A-Za-z0-9]+)_s([0-9])_w([0-9])')
KEY_PATTERN = re.compile(r'^z(\d+)_([A-Za-z0-9]+)_s([0-9])_w([0-9])$')
Field = Tuple[str, str, str]  # (well, site, channel digit)


def plane_folder(plane: int) -> str:
    """Folder name of a focal plane in the published layout."""
    return f'BBBC006_v1_images_z_{plane:02d}'


def parse_file_name(name: str) -> Field:
    """(well, site, channel) of a BBBC006 file name; raises ValueError when it does not follow the pattern."""
    match = FILE_PATTERN.match(name)
    if match is None:
        raise ValueError(f'{name!r} does not match the BBBC006 pattern {FILE_PATTERN.pattern}.')
    return match.group(1), match.group(2), match.group(3)


def lmdb_key(plane: int, field: Field) -> str:
    """LMDB key of one image: ``z{NN}_{well}_s{site}_w{channel}`` (written by scripts/make_lmdb.py)."""
    well, site, channel = field
    return f'z{plane:02d}_{well}_s{site}_w{channel}'


def is_test_well(well: str, test_fraction: float, seed: int = 0) -> bool:
    """Hash-based, order-independent well split (a well is either all train or all test)."""
    digest = hashlib.md5(f'{seed}:{well.upper()}'.encode()).hexdigest()
    return int(digest[:8], 16) / 0x100000000 < test_fraction


def scan_plane_folder(folder: str) -> Dict[Field, str]:
    """Map (well, site, channel) -> TIFF path for one plane folder."""
    found: Dict[Field, str] = {}
    names = sorted(os.listdir(folder))
    note_ignored(folder, [n for n in names if not n.lower().endswith(('.tif', '.tiff'))])
    for name in names:
        if not name.lower().endswith(('.tif', '.tiff')):
            continue
        field = parse_file_name(name)
        if field in found:
            raise ValueError(f'Two images for well {field[0]} site {field[1]} channel w{field[2]} in {folder!r}: '
                             f'{osp.basename(found[field])!r} and {name!r}.')
        found[field] = osp.join(folder, name)
    return found


@DATASET_REGISTRY.register()
class BBBC006Dataset(ExtraDatasetMixin, PluginDataset):
    """BBBC006 defocused planes (inputs) paired with the in-focus plane z = 16 (ground truth)."""

    OPTION_KEYS = ('dataroot', 'channel', 'gt_plane', 'input_planes', 'split', 'test_fraction', 'split_seed',
                   'test_wells')
    REQUIRED_KEYS = ('dataroot',)
    DEFAULT_NORMALIZE = 'input_percentile'  # BBBC006 uses a few per cent of the 16-bit range (module docstring)
    DEFAULT_NAME = 'BBBC006'
    default_in_chans = 1

    def __init__(self, opt: dict) -> None:
        super().__init__()
        self.opt = opt
        self.root = str(opt['dataroot'])
        channel = str(opt.get('channel', 'w1'))
        channels = {'w1': ('1',), 'w2': ('2',), 'both': ('1', '2')}
        if channel not in channels:
            raise ValueError(f"channel must be 'w1', 'w2' or 'both', got {channel!r}.")
        self.channels = channels[channel]
        self.gt_plane = int(opt.get('gt_plane', 16))
        self.input_planes = [int(p) for p in opt.get('input_planes', (2, 6, 10))]
        if self.gt_plane in self.input_planes:
            raise ValueError(f'gt_plane {self.gt_plane} is also listed in input_planes {self.input_planes}.')
        self.split = opt.get('split', 'all')
        if self.split not in ('train', 'test', 'all'):
            raise ValueError(f"split must be 'train', 'test' or 'all', got {self.split!r}.")
        self.test_fraction = float(opt.get('test_fraction', 0.2))
        self.split_seed = int(opt.get('split_seed', 0))
        self.test_wells = {w.upper() for w in opt['test_wells']} if opt.get('test_wells') else None
        self.norm = normalization_from_options(opt, default=self.DEFAULT_NORMALIZE)
        self.normalize = self.norm.mode

        io_backend = dict(opt.get('io_backend', {'type': 'disk'}))
        self.is_lmdb = io_backend['type'] == 'lmdb'
        self.loader = ImageLoader(io_backend, {'default': self.root} if self.is_lmdb else None, in_chans=1)
        planes = self._scan_lmdb() if self.is_lmdb else self._scan_folders()
        self.samples = self._pair(planes)
        if not self.samples:
            raise ValueError(f'No BBBC006 pair for split {self.split!r}, channel {channel!r}, input planes '
                             f'{self.input_planes} in {self.root!r}.')
        self.check_files_if_enabled()
        self.init_extra(opt)

    def header_samples(self) -> list:
        """Each pair's input and ground truth (:meth:`PluginDataset.check_files`)."""
        name = (lambda p: f'{self.root}[{p}]') if self.is_lmdb else (lambda p: p)
        return [[(name(lq), lambda p=lq: self.loader.inspect(p)),
                 (name(gt), lambda p=gt: self.loader.inspect(p))] for lq, gt, _ in self.samples]

    # ---------------------------------------------------------------- indexing
    def _scan_folders(self) -> Dict[int, Dict[Field, str]]:
        if not osp.isdir(self.root):
            raise FileNotFoundError(f'BBBC006 dataroot {self.root!r} does not exist.')
        planes = {}
        for plane in [self.gt_plane] + self.input_planes:
            folder = osp.join(self.root, plane_folder(plane))
            if not osp.isdir(folder):
                raise FileNotFoundError(f'BBBC006 plane folder {folder!r} does not exist.')
            planes[plane] = scan_plane_folder(folder)
            if not planes[plane]:
                raise ValueError(f'BBBC006 plane folder {folder!r} contains no TIFF image.')
        return planes

    def _scan_lmdb(self) -> Dict[int, Dict[Field, str]]:
        planes: Dict[int, Dict[Field, str]] = {p: {} for p in [self.gt_plane] + self.input_planes}
        for key in read_lmdb_keys(self.root):
            match = KEY_PATTERN.match(key)
            if match is None:
                raise ValueError(f'LMDB key {key!r} in {self.root!r} is not a BBBC006 key '
                                 '(z<NN>_<well>_s<site>_w<channel>).')
            plane = int(match.group(1))
            if plane in planes:
                planes[plane][(match.group(2), match.group(3), match.group(4))] = key
        return planes

    def _in_split(self, well: str) -> bool:
        if self.split == 'all':
            return True
        if self.test_wells is not None:
            test = well.upper() in self.test_wells
        else:
            test = is_test_well(well, self.test_fraction, self.split_seed)
        return test == (self.split == 'test')

    def _pair(self, planes: Dict[int, Dict[Field, str]]) -> List[Tuple[str, str, Field]]:
        gt = planes[self.gt_plane]
        samples, unpaired = [], []
        for plane in self.input_planes:
            for field, lq_path in sorted(planes[plane].items()):
                if field[2] not in self.channels or not self._in_split(field[0]):
                    continue
                if field not in gt:
                    where = self.root if self.is_lmdb else osp.join(self.root, plane_folder(self.gt_plane))
                    unpaired.append(f'Missing in-focus plane z{self.gt_plane} for {lq_path!r} (well {field[0]}, '
                                    f'site {field[1]}, channel w{field[2]}) in {where!r}')
                    continue
                samples.append((lq_path, gt[field], field))
        raise_unpaired(self.dataset_name, unpaired)
        return samples

    @property
    def wells(self) -> Iterable[str]:
        """Wells present in this split (sorted)."""
        return sorted({field[0] for _, _, field in self.samples})

    # ---------------------------------------------------------------- reading
    def _normalize(self, lq: np.ndarray, lq_path: str, gt: np.ndarray, gt_path: str) -> Tuple[np.ndarray, np.ndarray]:
        map_lq, map_gt = self.norm.pair_maps(lq, lq_path, gt, gt_path)
        return map_lq.forward(lq), map_gt.forward(gt)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        lq_path, gt_path, _ = self.samples[index]
        lq = self.loader.read_raw(lq_path)
        gt = self.loader.read_raw(gt_path)
        for img, path in ((lq, lq_path), (gt, gt_path)):
            if img.dtype not in (np.uint8, np.uint16):
                raise ImageReadError(f'Image {path!r} has dtype {img.dtype}; BBBC006 images are 16-bit.')
        check_same_size(lq, lq_path, gt, gt_path)
        img_lq, img_gt = self._normalize(lq, lq_path, gt, gt_path)
        if self.opt.get('phase') == 'train':
            img_gt, img_lq = train_augment([img_gt, img_lq], self.opt, f'{lq_path!r}/{gt_path!r}')
        img_gt, img_lq = img2tensor([img_gt, img_lq], bgr2rgb=False, float32=True)
        sample = {'lq': img_lq, 'gt': img_gt, 'lq_path': lq_path, 'gt_path': gt_path}
        return self.attach_extra(sample, index)
