"""Unlabeled defocus images (WNLO, CataBlur, CUHK; Sec. 4.1): blurry inputs without ground truth.

Used for inference and as the unlabeled extra data of EFCR_ex (Sec. 3.2). Options:

* ``dataroot_lq``: a folder (searched recursively; paths kept relative for ``meta_info_file``) or an ``.lmdb``
  folder with ``io_backend: {type: lmdb}`` (keys from its ``meta_info.txt``).
* ``meta_info_file`` (disk only): image paths relative to ``dataroot_lq``, first token of each line.
* ``in_chans`` (default 3), ``to_gray``; ``normalize`` (default ``dtype``; a mode computable from the input
  alone, :mod:`mpt_data.normalization`); training (``phase: train``): ``gt_size`` crop, random scaling and flips.
* ``check_files`` (default true in training): every header read at start-up (:mod:`mpt_data.file_checks`).
* ``extra_dataset`` / ``extra_sampling``: see :mod:`mpt_data.extra_data`.

Returns ``lq`` (float C x H x W in [0, 1]) and ``lq_path``.
"""

from __future__ import annotations

import os
import os.path as osp

from basicsr.utils import img2tensor, scandir
from basicsr.utils.registry import DATASET_REGISTRY

from mpt_data.extra_data import ExtraDatasetMixin
from mpt_data.image_io import IMAGE_EXTENSIONS, ImageLoader, read_lmdb_keys, read_meta_info
from mpt_data.normalization import from_options as normalization_from_options
from mpt_data.normalization import require_input_only
from mpt_data.plugin_dataset import PluginDataset
from mpt_data.transforms import train_augment


@DATASET_REGISTRY.register()
class UnlabeledDefocusDataset(ExtraDatasetMixin, PluginDataset):
    """Blurry images only, from a folder, a meta-info list or LMDB."""

    OPTION_KEYS = ('dataroot_lq', 'meta_info_file')
    REQUIRED_KEYS = ('dataroot_lq',)
    DEFAULT_NAME = 'unlabeled'

    def __init__(self, opt: dict) -> None:
        super().__init__()
        self.opt = opt
        root = str(opt['dataroot_lq'])
        self.norm = normalization_from_options(opt, default=self.DEFAULT_NORMALIZE)
        require_input_only(self.norm, f'UnlabeledDefocusDataset {root!r}')  # no ground truth here
        io_backend = dict(opt.get('io_backend', {'type': 'disk'}))
        self.is_lmdb = io_backend['type'] == 'lmdb'
        in_chans, to_gray = opt.get('in_chans', 3), opt.get('to_gray', False)
        if self.is_lmdb:
            self.loader = ImageLoader(io_backend, {'lq': root}, in_chans, to_gray)
            self.paths = read_lmdb_keys(root)
        else:
            if not osp.isdir(root):
                raise FileNotFoundError(f'Folder {root!r} (dataroot_lq) does not exist.')
            self.loader = ImageLoader(io_backend, None, in_chans, to_gray)
            if opt.get('meta_info_file'):
                rels = read_meta_info(opt['meta_info_file'])
            else:
                rels = sorted(scandir(root, suffix=IMAGE_EXTENSIONS, recursive=True))
            self.paths = [osp.join(root, rel) for rel in rels]
            missing = [p for p in self.paths if not os.path.isfile(p)]
            if missing:
                raise FileNotFoundError(f'{len(missing)} listed image(s) missing, e.g. {missing[0]!r}.')
        if not self.paths:
            raise ValueError(f'No image found in {root!r}.')
        self.root = root
        self.check_files_if_enabled()
        self.init_extra(opt)

    def header_samples(self) -> list:
        """Each blurry image on its own (:meth:`PluginDataset.check_files`)."""
        key = 'lq' if self.is_lmdb else 'default'
        name = (lambda p: f'{self.root}[{p}]') if self.is_lmdb else (lambda p: p)
        return [[(name(p), lambda p=p: self.loader.inspect(p, key))] for p in self.paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        raw = self.loader.read_raw(path, 'lq' if self.is_lmdb else 'default')
        img = self.norm.map_for(raw, path).forward(raw)
        if self.opt.get('phase') == 'train':
            (img,) = train_augment([img], self.opt, repr(path))
        sample = {'lq': img2tensor(img, bgr2rgb=False, float32=True), 'lq_path': path}
        return self.attach_extra(sample, index)
