"""Paired defocus datasets (blurry input, sharp ground truth): 3DHistech, CaDISBlur, DPDD, LFDOF (Sec. 4.1).

Options (YAML keys of a ``datasets.train``/``datasets.val`` entry with ``type: PairedDefocusDataset``):

* ``layout``: how inputs are paired with ground truths.

  - ``folder`` (default): ``dataroot_lq`` and ``dataroot_gt`` hold files with the same names (BasicSR's
    ``filename_tmpl``, default ``'{}'``, maps a gt stem to the lq stem). ``dataroot_lq`` may be a list of
    folders all paired with the one ``dataroot_gt`` (CaDISBlur: ``blur_anatomy`` and ``blur_instruments``
    against ``sharp``). 3DHistech: its blur and ground-truth folders.
  - ``dpdd``: ``dataroot`` is the DPDD root and ``split`` one of ``train``/``val``/``test``; pairs
    ``<split>_c/source`` with ``<split>_c/target`` (``source.lmdb``/``target.lmdb`` with the lmdb backend).
  - ``lfdof``: several inputs per ground truth. Either ``dataroot`` + ``split`` (``train``/``test``:
    ``<split>_data/input`` and ``<split>_data/ground_truth``) or ``dataroot_lq``/``dataroot_gt``;
    ``input/<scene>/<any name>`` is paired with ``ground_truth/<scene>.<ext>``. LMDB keys: ``<scene>/<stem>``
    for inputs, ``<scene>`` for ground truths (what ``scripts/make_lmdb.py lfdof`` writes).

* ``meta_info_file`` (disk only): restricts/orders the pairs. ``folder``/``dpdd``: one gt file name per line
  (BasicSR convention); ``lfdof``: one input path relative to the input folder (``<scene>/<file>``) per line.
* ``io_backend``: ``{type: disk}`` or ``{type: lmdb}`` (then the data roots are ``.lmdb`` folders).
* ``in_chans``: 1 (grayscale) or 3 (RGB, default); a mismatching image is an error unless ``to_gray: true``
  converts RGB to one channel (the paper's grayscale LFDOF for EFCR_ex on BBBC006).
* ``normalize`` (default ``dtype``: 8/16-bit images divided by their dtype's maximum), ``norm_percentiles``,
  ``norm_max``: the contract shared with ``mpt-deblur``, see :mod:`mpt_data.normalization`.
* Training (``phase: train``): ``gt_size`` crop, random scaling and flips (see :mod:`mpt_data.transforms`).
* ``extra_dataset`` / ``extra_sampling``: see :mod:`mpt_data.extra_data`.

Returns ``lq``, ``gt`` (float C x H x W in [0, 1]), ``lq_path``, ``gt_path``.
"""

from __future__ import annotations

import os
import os.path as osp
from typing import List, Tuple

from basicsr.data.data_util import paired_paths_from_lmdb, paired_paths_from_meta_info_file
from basicsr.utils import img2tensor
from basicsr.utils.registry import DATASET_REGISTRY

from mpt_data.extra_data import ExtraDatasetMixin
from mpt_data.file_checks import note_ignored, raise_unpaired
from mpt_data.image_io import ImageLoader, check_same_size, is_image_file, read_lmdb_keys, read_meta_info
from mpt_data.normalization import from_options as normalization_from_options
from mpt_data.plugin_dataset import PluginDataset
from mpt_data.transforms import train_augment

LAYOUTS = ('folder', 'dpdd', 'lfdof')


def _require_dir(folder: str, what: str) -> None:
    if not osp.isdir(folder):
        raise FileNotFoundError(f'{what} folder {folder!r} does not exist.')


def _list_images(folder: str) -> List[str]:
    """Image file names of ``folder`` (sorted); other files are ignored with a note."""
    _require_dir(folder, 'Image')
    files = [n for n in os.listdir(folder) if osp.isfile(osp.join(folder, n))]
    names = sorted(n for n in files if is_image_file(n))
    note_ignored(folder, (n for n in files if not is_image_file(n)))
    if not names:
        raise ValueError(f'Folder {folder!r} contains no image.')
    return names


def pair_folder(lq_root: str, gt_root: str, gt_names: List[str], tmpl: str = '{}') -> Tuple[list, List[str]]:
    """BasicSR's folder pairing (gt ``<stem><ext>`` <-> lq ``tmpl.format(stem)<ext>``) over image files only.

    Returns (sorted ``(lq path, gt path)`` pairs, every unpaired file as a message) instead of BasicSR's
    ``different number of images`` assertion, which neither ignores non-image files nor names the culprit.
    """
    lq_names = set(_list_images(lq_root))
    pairs, unpaired = [], []
    for gt_name in gt_names:
        stem, ext = osp.splitext(gt_name)
        lq_name = f'{tmpl.format(stem)}{ext}'
        if lq_name in lq_names:
            lq_names.discard(lq_name)
            pairs.append((osp.join(lq_root, lq_name), osp.join(gt_root, gt_name)))
        else:
            unpaired.append(f'{osp.join(gt_root, gt_name)!r} has no input {lq_name!r} in {lq_root!r}')
    unpaired += [f'{osp.join(lq_root, name)!r} has no ground truth in {gt_root!r}' for name in sorted(lq_names)]
    return sorted(pairs), unpaired


def _lfdof_gt_index(gt_root: str) -> dict:
    index = {}
    for name in _list_images(gt_root):
        scene = osp.splitext(name)[0]
        if scene in index:
            raise ValueError(f'Two ground truths for LFDOF scene {scene!r} in {gt_root!r}: '
                             f'{index[scene]!r} and {name!r}.')
        index[scene] = name
    return index


@DATASET_REGISTRY.register()
class PairedDefocusDataset(ExtraDatasetMixin, PluginDataset):
    """Blurry/sharp pairs from folders, a meta-info list or LMDB (Sec. 4.1 datasets)."""

    OPTION_KEYS = ('layout', 'dataroot', 'split', 'dataroot_lq', 'dataroot_gt', 'meta_info_file', 'filename_tmpl')

    @classmethod
    def required_keys(cls, opt, train: bool) -> list:
        """The data roots of the layout: ``dataroot`` + ``split`` (DPDD, LFDOF by split) or the two folders."""
        layout = opt.get('layout', 'folder')
        split_layout = layout == 'dpdd' or (layout == 'lfdof' and 'dataroot' in opt)
        roots = ['dataroot', 'split'] if split_layout else ['dataroot_lq', 'dataroot_gt']
        return super().required_keys(opt, train) + roots

    def __init__(self, opt: dict) -> None:
        super().__init__()
        self.opt = opt
        self.layout = opt.get('layout', 'folder')
        self.norm = normalization_from_options(opt, default=self.DEFAULT_NORMALIZE)
        if self.layout not in LAYOUTS:
            raise ValueError(f'layout must be one of {LAYOUTS}, got {self.layout!r}.')
        io_backend = dict(opt.get('io_backend', {'type': 'disk'}))
        self.is_lmdb = io_backend['type'] == 'lmdb'
        lq_roots, gt_root = self._roots()
        # each entry: (lq path or key, lq client key, gt path or key)
        if self.is_lmdb:
            roots = {f'lq{i}': root for i, root in enumerate(lq_roots)}
            roots['gt'] = gt_root
            self.loader = ImageLoader(io_backend, roots, opt.get('in_chans', 3), opt.get('to_gray', False))
            self.samples = self._lmdb_samples(lq_roots, gt_root)
        else:
            self.loader = ImageLoader(io_backend, None, opt.get('in_chans', 3), opt.get('to_gray', False))
            self.samples = self._disk_samples(lq_roots, gt_root)
        if not self.samples:
            raise ValueError(f'No pair found in {lq_roots} / {gt_root!r}.')
        self.check_files_if_enabled()
        self.init_extra(opt)

    def header_samples(self) -> list:
        """Each pair's input and ground truth (:meth:`PluginDataset.check_files`)."""
        gt_key = 'gt' if self.is_lmdb else 'default'
        return [[(self._name(lq, lq_key), lambda p=lq, k=lq_key: self.loader.inspect(p, k)),
                 (self._name(gt, gt_key), lambda p=gt: self.loader.inspect(p, gt_key))]
                for lq, lq_key, gt in self.samples]

    def _roots(self) -> Tuple[List[str], str]:
        opt = self.opt
        ext = '.lmdb' if self.is_lmdb else ''
        if self.layout == 'dpdd' or (self.layout == 'lfdof' and 'dataroot' in opt):
            if 'dataroot' not in opt or 'split' not in opt:
                raise ValueError(f'layout {self.layout} needs dataroot and split.')
            split = opt['split']
            if self.layout == 'dpdd':
                if split not in ('train', 'val', 'test'):
                    raise ValueError(f'DPDD split must be train, val or test, got {split!r}.')
                base = osp.join(opt['dataroot'], f'{split}_c')
                return [osp.join(base, 'source' + ext)], osp.join(base, 'target' + ext)
            if split not in ('train', 'test'):
                raise ValueError(f'LFDOF split must be train or test, got {split!r}.')
            base = osp.join(opt['dataroot'], f'{split}_data')
            return [osp.join(base, 'input' + ext)], osp.join(base, 'ground_truth' + ext)
        if 'dataroot_lq' not in opt or 'dataroot_gt' not in opt:
            raise ValueError(f'layout {self.layout} needs dataroot_lq and dataroot_gt.')
        lq = opt['dataroot_lq']
        lq_roots = [str(p) for p in lq] if isinstance(lq, (list, tuple)) else [str(lq)]
        if self.layout == 'lfdof' and len(lq_roots) != 1:
            raise ValueError('layout lfdof takes a single dataroot_lq (the input folder).')
        return lq_roots, str(opt['dataroot_gt'])

    def _disk_samples(self, lq_roots: List[str], gt_root: str) -> list:
        opt = self.opt
        meta = opt.get('meta_info_file')
        samples = []
        if self.layout == 'lfdof':
            lq_root = lq_roots[0]
            _require_dir(lq_root, 'LFDOF input')
            gt_index = _lfdof_gt_index(gt_root)
            if meta:
                rels = read_meta_info(meta)
            else:
                rels = []
                for scene in sorted(os.listdir(lq_root)):
                    if osp.isdir(osp.join(lq_root, scene)):
                        rels += [f'{scene}/{name}' for name in _list_images(osp.join(lq_root, scene))]
            for rel in rels:
                scene = rel.split('/')[0]
                if scene not in gt_index:
                    raise ValueError(f'Input {osp.join(lq_root, rel)!r} has no ground truth {scene}.* in '
                                     f'{gt_root!r}.')
                samples.append((osp.join(lq_root, rel), 'default', osp.join(gt_root, gt_index[scene])))
            return samples
        gt_names = _list_images(gt_root)  # clear error for a missing or empty gt folder
        tmpl = opt.get('filename_tmpl', '{}')
        unpaired: List[str] = []
        for lq_root in lq_roots:
            if meta:
                _list_images(lq_root)
                pairs = paired_paths_from_meta_info_file([lq_root, gt_root], ['lq', 'gt'], meta, tmpl)
                # BasicSR turns a blank line (a trailing one, say) into the pair (lq folder, gt folder)
                samples += [(p['lq_path'], 'default', p['gt_path']) for p in pairs if osp.basename(p['gt_path'])]
            else:
                pairs, missing = pair_folder(lq_root, gt_root, gt_names, tmpl)
                unpaired += missing
                samples += [(lq, 'default', gt) for lq, gt in pairs]
        raise_unpaired(self.dataset_name, unpaired)
        return samples

    def _lmdb_samples(self, lq_roots: List[str], gt_root: str) -> list:
        samples = []
        if self.layout == 'lfdof':
            gt_keys = set(read_lmdb_keys(gt_root))
            for key in read_lmdb_keys(lq_roots[0]):
                scene = key.split('/')[0]
                if scene not in gt_keys:
                    raise ValueError(f'LMDB input key {key!r} of {lq_roots[0]!r} has no ground-truth key {scene!r} '
                                     f'in {gt_root!r}.')
                samples.append((key, 'lq0', scene))
            return samples
        for i, lq_root in enumerate(lq_roots):
            pairs = paired_paths_from_lmdb([lq_root, gt_root], ['lq', 'gt'])
            samples += [(p['lq_path'], f'lq{i}', p['gt_path']) for p in pairs]
        return samples

    def __len__(self) -> int:
        return len(self.samples)

    def _name(self, path: str, client_key: str) -> str:
        return f'{self.loader.lmdb_roots[client_key]}[{path}]' if self.is_lmdb else path

    def __getitem__(self, index: int) -> dict:
        lq_path, lq_key, gt_path = self.samples[index]
        raw_lq = self.loader.read_raw(lq_path, lq_key)
        raw_gt = self.loader.read_raw(gt_path, 'gt' if self.is_lmdb else 'default')
        lq_name, gt_name = self._name(lq_path, lq_key), self._name(gt_path, 'gt')
        check_same_size(raw_lq, lq_name, raw_gt, gt_name)
        map_lq, map_gt = self.norm.pair_maps(raw_lq, lq_name, raw_gt, gt_name)
        img_lq, img_gt = map_lq.forward(raw_lq), map_gt.forward(raw_gt)
        if self.opt.get('phase') == 'train':
            img_gt, img_lq = train_augment([img_gt, img_lq], self.opt, f'{lq_name!r}/{gt_name!r}')
        img_gt, img_lq = img2tensor([img_gt, img_lq], bgr2rgb=False, float32=True)
        sample = {'lq': img_lq, 'gt': img_gt, 'lq_path': lq_path, 'gt_path': gt_path}
        return self.attach_extra(sample, index)
