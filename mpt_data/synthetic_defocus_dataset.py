"""Blurry/sharp pairs synthesised on the fly from in-focus images: train a deblur model for a microscope from
sharp images alone (the physics and ranges are in ``docs/guides/synthetic_data.md``).

Each sample: a sharp image (or a training crop of it) is convolved with a random defocus PSF of
:mod:`mpt_data.psf` (disk, Gaussian or widefield) and Poisson-Gaussian noise of :mod:`mpt_data.noise` is added.

Options (YAML keys of a ``datasets`` entry with ``type: SyntheticDefocusDataset``):

* ``dataroot_gt``: a folder (or a list of folders) of sharp images, 8/16-bit or float TIFF, any size; with
  ``io_backend: {type: lmdb}`` an ``.lmdb`` folder made by ``scripts/make_lmdb.py``. ``meta_info_file`` (disk):
  one file name per line, relative to the (single) folder.
* ``in_chans`` 1 or 3, ``to_gray``; ``gray_channels`` (``in_chans: 1``): an RGB image gives one of its colour
  channels per sample (training: a random one; validation pair ``k`` of an image: channel ``k mod 3``), as
  ``mpt-deblur`` applies a one-channel network to each channel, instead of ``to_gray``'s luminance; ``normalize``
  (:mod:`mpt_data.normalization`), applied from the synthesised *input* to both images, as ``mpt-deblur`` applies
  it to a real input.
* ``psf``: ``{<type>: {weight: w, <param>: [min, max], ...}}`` for the types to draw (by weight), parameters
  uniform in their range (widefield ones on a grid of :data:`PSF_GRID`, whose PSFs are cached):
  ``disk: {radius}``, ``gaussian: {sigma}``, ``widefield: {airy_radius, defocus_waves}``. Default
  :data:`DEFAULT_PSF`. In a microscopist's units: ``widefield_physical: {na, wavelength_um, pixel_size_um,
  immersion_index, defocus_um: [min, max]}`` (the optics fixed, the defocus drawn; exact defocus phase,
  :func:`mpt_data.psf.physical_widefield_psf`). A measured PSF: ``measured: {file, plane: [first, last], background,
  radius}`` (a bead image or PSF TIFF; a 3-D stack's planes are drawn as defocus levels; :mod:`mpt_data.measured_psf`).
* ``noise``: ``photons: [min, max]`` (log-uniform; ``~`` = no shot noise), ``read_noise: [min, max]``
  (uniform), ``clean_fraction`` (share of noise-free samples). Default :data:`DEFAULT_NOISE`.
* ``procedural``: ``{images: N, size: S or [H, W], kinds: [nuclei, filaments, puncta, membranes]}`` adds ``N``
  fluorescence-like scenes made on the fly (:mod:`mpt_data.scenes`; without ``dataroot_gt`` they are the whole
  set). Training draws a new scene at every visit; validation scene ``i`` is a function of ``(val_seed, i)``.
* ``cache_images`` (default false): keep every decoded sharp image in memory (small sets: no PNG decoding per
  sample; each DataLoader worker holds its own copy).
* Training (``phase: train``): ``gt_size`` crops (images smaller than a crop are reflect-padded), random scale
  (``use_scale``, ``scale_range``) and flips as :func:`mpt_data.transforms.train_augment`. The sharp crop is
  taken with a margin of the PSF's radius, blurred, then the margin is cut, so no border is ever extrapolated.
  Randomness comes from numpy's and Python's global generators, which BasicSR seeds (``manual_seed``) per worker.
  ``norm_context`` (pixels, default 0: the crop itself): the normalisation map is computed from a region of that
  size (at most the image) degraded with the crop and containing it, closer to inference, which computes it from a
  whole image; for sparse fluorescence, where a small crop's own percentiles blow background noise up to full range.
* Validation/test (any other phase): every image is used whole (``val_crop``: a centred crop of that size) with
  ``pairs_per_image`` draws each; pair ``i`` comes from ``numpy.random.default_rng([val_seed, i])``, so the
  validation set is identical across runs, processes and machines. Borders are reflected.
* ``extra_dataset`` / ``extra_sampling`` (:mod:`mpt_data.extra_data`): e.g. your real blurry images as the
  unlabeled extra data of EFCR's ``extra_unlabeled`` mode (``docs/reference/efcr.md``).

Samples: ``lq``, ``gt`` (float C x H x W), ``lq_path`` (``<gt stem>_s<index>_<psf type>``, no file), ``gt_path``;
:meth:`SyntheticDefocusDataset.pair` also gives the PSF and its parameters (the oracle of the quality benchmark).
"""

from __future__ import annotations

import math
import os
import os.path as osp
from typing import Any, Dict, List, Mapping, NamedTuple, Optional

import cv2
import numpy as np
from basicsr.utils import img2tensor
from basicsr.utils.registry import DATASET_REGISTRY

from mpt_data.extra_data import ExtraDatasetMixin
from mpt_data.file_checks import note_ignored
from mpt_data.image_io import FlatImageError, ImageLoader, is_image_file, read_lmdb_keys, read_meta_info
from mpt_data.noise import poisson_gaussian
from mpt_data.normalization import from_options as normalization_from_options
from mpt_data.plugin_dataset import PluginDataset
from mpt_data.psf import PSF_TYPES, make_psf
from mpt_data.scenes import SCENE_KINDS, make_scene
from mpt_data.transforms import train_augment

DEFAULT_PSF: Dict[str, Dict[str, Any]] = {
    'disk': {'weight': 1.0, 'radius': [1.0, 4.0]},
    'gaussian': {'weight': 1.0, 'sigma': [0.7, 2.5]},
    'widefield': {'weight': 1.0, 'airy_radius': [1.0, 2.0], 'defocus_waves': [0.0, 1.5]},
}
PSF_PARAMS = {'disk': ('radius',), 'gaussian': ('sigma',), 'widefield': ('airy_radius', 'defocus_waves'),
              'widefield_physical': ('na', 'wavelength_um', 'pixel_size_um', 'immersion_index', 'defocus_um'),
              'measured': ('file', 'plane', 'background', 'radius')}
# widefield_physical: the optics are fixed numbers (one objective, camera and dye), the defocus is a range
OPTICS_DEFAULTS = {'immersion_index': 1.0}
FLAT_CROP_RETRIES = 20  # training crops flat to the percentile map are drawn again this often, then it is an error
PSF_GRID = 0.05  # widefield parameters are drawn on this grid: their PSFs (~50 ms each) are computed once (cache of
#                  mpt_data.psf.widefield_psf, 8192 entries: the v2 starter ranges are ~4,600 grid points)
DEFAULT_NOISE: Dict[str, Any] = {'photons': [100.0, 3000.0], 'read_noise': [0.0, 0.01], 'clean_fraction': 0.2}


class SyntheticPair(NamedTuple):
    """One synthesised pair as float ``H x W x C`` arrays (after normalisation), the PSF and the drawn values."""

    lq: np.ndarray
    gt: np.ndarray
    psf: np.ndarray
    params: Dict[str, Any]
    name: str


def _range(spec: Any, key: str, positive: bool = False) -> tuple:
    try:
        low, high = (float(v) for v in spec)
    except (TypeError, ValueError):
        raise ValueError(f'SyntheticDefocusDataset: {key} must be [min, max], got {spec!r}.') from None
    if not (0 <= low <= high) or (positive and low <= 0):
        raise ValueError(f'SyntheticDefocusDataset: {key} must satisfy {"0 <" if positive else "0 <="} min <= max, '
                         f'got {spec!r}.')
    return low, high


def parse_psf_options(spec: Optional[Mapping[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """Validate a ``psf`` option (unknown types or parameters are errors naming the key)."""
    spec = DEFAULT_PSF if spec is None else spec
    if not isinstance(spec, Mapping) or not spec:
        raise ValueError(f'SyntheticDefocusDataset: psf must map PSF types to their ranges, got {spec!r}.')
    out = {}
    for kind, params in spec.items():
        if kind not in PSF_TYPES:
            raise ValueError(f'SyntheticDefocusDataset: unknown psf type {kind!r}; choose from {PSF_TYPES}.')
        params = dict(params or {})
        weight = float(params.pop('weight', 1.0))
        if weight < 0:
            raise ValueError(f'SyntheticDefocusDataset: psf.{kind}.weight must be >= 0, got {weight}.')
        unknown = set(params) - set(PSF_PARAMS[kind])
        if unknown:
            raise ValueError(f'SyntheticDefocusDataset: psf.{kind} has unknown key(s) {sorted(unknown)}; '
                             f'it takes weight and {list(PSF_PARAMS[kind])}.')
        if kind == 'widefield_physical':
            out[kind] = {'weight': weight, **_optics(params)}
            continue
        if kind == 'measured':
            out[kind] = {'weight': weight, **_measured(params)}
            continue
        ranges = {}
        for name in PSF_PARAMS[kind]:
            default = DEFAULT_PSF[kind][name]
            ranges[name] = _range(params.get(name, default), f'psf.{kind}.{name}', positive=name == 'airy_radius')
        out[kind] = {'weight': weight, **ranges}
    if sum(v['weight'] for v in out.values()) <= 0:
        raise ValueError('SyntheticDefocusDataset: the psf weights sum to 0.')
    return out


def _optics(params: Mapping[str, Any]) -> Dict[str, Any]:
    """``psf.widefield_physical``: fixed ``na``, ``wavelength_um``, ``pixel_size_um``, ``immersion_index`` (default
    1.0) and a ``defocus_um`` range, checked by building the PSF at both ends of the range."""
    out: Dict[str, Any] = {}
    for name in PSF_PARAMS['widefield_physical'][:4]:
        value = params.get(name, OPTICS_DEFAULTS.get(name))
        if value is None:
            raise ValueError(f'SyntheticDefocusDataset: psf.widefield_physical needs {name} (na, wavelength_um, '
                             'pixel_size_um, defocus_um; immersion_index defaults to 1.0, air).')
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f'SyntheticDefocusDataset: psf.widefield_physical.{name} must be a positive number, '
                             f'got {value!r}.')
        out[name] = float(value)
    out['defocus_um'] = _range(params.get('defocus_um', [0.0, 0.0]), 'psf.widefield_physical.defocus_um')
    make_psf('widefield_physical', **{**out, 'defocus_um': out['defocus_um'][1]})  # na < n and the like
    return out


def _measured(params: Mapping[str, Any]) -> Dict[str, Any]:
    """``psf.measured``: ``file`` (bead image or PSF TIFF, 2-D or a z-stack), ``plane: [first, last]`` (default all
    planes, drawn uniformly), ``background`` (``auto``: border median) and ``radius`` (crop cap), read once here so
    a bad file fails before training."""
    from mpt_data.measured_psf import load_measured_psf

    if not params.get('file'):
        raise ValueError('SyntheticDefocusDataset: psf.measured needs file (a bead image or PSF TIFF).')
    out = {'file': str(params['file']), 'background': params.get('background', 'auto'),
           'radius': None if params.get('radius') is None else int(params['radius'])}
    planes = len(load_measured_psf(out['file'], out['background'], out['radius']))
    low, high = _range(params.get('plane', [0, planes - 1]), 'psf.measured.plane')
    if high > planes - 1 or low != int(low) or high != int(high):
        raise ValueError(f'SyntheticDefocusDataset: psf.measured.plane {[low, high]} must be whole plane numbers '
                         f'within 0..{planes - 1} of {out["file"]!r}.')
    out['plane'] = (int(low), int(high))
    return out


PROCEDURAL = 'procedural'  # the client key of procedural scenes in ``samples``


def parse_procedural_options(spec: Any, name: str) -> Optional[Dict[str, Any]]:
    """Validate a ``procedural`` option (None: no procedural scenes)."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise ValueError(f'{name}: procedural must be a mapping (images, size, kinds), got {spec!r}.')
    unknown = set(spec) - {'images', 'size', 'kinds'}
    if unknown:
        raise ValueError(f'{name}: procedural has unknown key(s) {sorted(unknown)}; it takes images, size, kinds.')
    images, size = spec.get('images', 64), spec.get('size', 256)
    size = (size, size) if isinstance(size, int) else tuple(size) if isinstance(size, (list, tuple)) else size
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise ValueError(f'{name}: procedural.images must be a positive integer, got {images!r}.')
    if not (isinstance(size, tuple) and len(size) == 2 and all(isinstance(v, int) and v >= 16 for v in size)):
        raise ValueError(f'{name}: procedural.size must be S or [H, W] with sides >= 16, got {spec.get("size")!r}.')
    kinds = list(spec.get('kinds') or SCENE_KINDS)
    unknown_kinds = [k for k in kinds if k not in SCENE_KINDS]
    if unknown_kinds:
        raise ValueError(f'{name}: procedural.kinds {unknown_kinds} unknown; choose from {list(SCENE_KINDS)}.')
    return {'images': images, 'size': size, 'kinds': kinds}


def parse_noise_options(spec: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """Validate a ``noise`` option (``photons`` ``~`` disables shot noise)."""
    spec = dict(DEFAULT_NOISE if spec is None else spec)
    unknown = set(spec) - set(DEFAULT_NOISE)
    if unknown:
        raise ValueError(f'SyntheticDefocusDataset: noise has unknown key(s) {sorted(unknown)}; it takes '
                         f'{list(DEFAULT_NOISE)}.')
    photons = spec.get('photons', DEFAULT_NOISE['photons'])
    out = {'photons': None if photons is None else _range(photons, 'noise.photons', positive=True),
           'read_noise': _range(spec.get('read_noise', DEFAULT_NOISE['read_noise']), 'noise.read_noise'),
           'clean_fraction': float(spec.get('clean_fraction', DEFAULT_NOISE['clean_fraction']))}
    if not 0 <= out['clean_fraction'] <= 1:
        raise ValueError(f"SyntheticDefocusDataset: noise.clean_fraction must be in [0, 1], got "
                         f"{out['clean_fraction']}.")
    return out


def draw_degradation(psf_opt: Mapping[str, Any], noise_opt: Mapping[str, Any],
                     rng: np.random.Generator) -> Dict[str, Any]:
    """Draw a PSF type (by weight), its parameters and the noise level."""
    kinds = list(psf_opt)
    weights = np.array([psf_opt[k]['weight'] for k in kinds], np.float64)
    kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
    params: Dict[str, Any] = {'psf': kind}
    for name in PSF_PARAMS[kind]:
        if kind == 'measured' and name == 'plane':  # a whole plane number of the stack
            params[name] = int(rng.integers(psf_opt[kind][name][0], psf_opt[kind][name][1] + 1))
            continue
        if not isinstance(psf_opt[kind][name], tuple):  # a fixed optical parameter
            params[name] = psf_opt[kind][name]
            continue
        low, high = psf_opt[kind][name]
        value = float(rng.uniform(low, high))
        if kind.startswith('widefield'):  # on a grid of PSF_GRID: diffraction PSFs are cached, not recomputed
            value = min(max(round(value / PSF_GRID) * PSF_GRID, low), high)
        params[name] = value
    clean = rng.random() < noise_opt['clean_fraction']
    photons = noise_opt['photons']
    params['photons'] = None if clean or photons is None else float(
        math.exp(rng.uniform(math.log(photons[0]), math.log(photons[1]))))
    params['read_noise'] = 0.0 if clean else float(rng.uniform(*noise_opt['read_noise']))
    return params


def psf_of(params: Mapping[str, Any]) -> np.ndarray:
    """The PSF drawn by :func:`draw_degradation`."""
    return make_psf(params['psf'], **{k: params[k] for k in PSF_PARAMS[params['psf']]})


def degrade(sharp: np.ndarray, psf: np.ndarray, params: Mapping[str, Any], rng: np.random.Generator,
            border: int = cv2.BORDER_REFLECT_101) -> np.ndarray:
    """Blur ``sharp`` (float ``H x W x C``, >= 0) with ``psf`` (same kernel for every channel) and add noise."""
    blurred = cv2.filter2D(sharp, -1, psf, borderType=border).reshape(sharp.shape)
    blurred = np.maximum(blurred, 0.0)
    return poisson_gaussian(blurred, params['photons'], params['read_noise'], rng)


@DATASET_REGISTRY.register()
class SyntheticDefocusDataset(ExtraDatasetMixin, PluginDataset):
    """Pairs made from sharp images with random defocus PSFs and camera noise (module docstring)."""

    OPTION_KEYS = ('dataroot_gt', 'meta_info_file', 'psf', 'noise', 'pairs_per_image', 'val_seed', 'val_crop',
                   'cache_images', 'procedural', 'norm_context', 'gray_channels')
    DEFAULT_NAME = 'SyntheticDefocusDataset'
    CHECK_CROP_SIZE = False  # images smaller than a crop are reflect-padded

    def __init__(self, opt: dict) -> None:
        super().__init__()
        self.opt = opt
        self.name = self.dataset_name
        self.train = opt.get('phase') == 'train'
        self.norm = normalization_from_options(opt, default=self.DEFAULT_NORMALIZE)
        if self.norm.needs_gt:
            raise ValueError(f'{self.name}: normalize: {self.norm.mode} is not available for synthetic pairs '
                             '(the map is computed from the synthesised input).')
        self.psf_opt = parse_psf_options(opt.get('psf'))
        self.noise_opt = parse_noise_options(opt.get('noise'))
        self.pairs_per_image = int(opt.get('pairs_per_image', 1))
        self.val_seed = int(opt.get('val_seed', 0))
        self.val_crop = opt.get('val_crop')
        self.norm_context = int(opt.get('norm_context') or 0)
        if self.norm_context < 0:
            raise ValueError(f'{self.name}: norm_context must be >= 0 (0: the crop itself), got {self.norm_context}.')
        self.cache: Optional[Dict[int, np.ndarray]] = {} if opt.get('cache_images', False) else None
        if self.pairs_per_image < 1:
            raise ValueError(f'{self.name}: pairs_per_image must be >= 1, got {self.pairs_per_image}.')
        if self.train and not opt.get('gt_size'):
            raise ValueError(f'{self.name}: phase train needs gt_size (the crop size).')
        io_backend = dict(opt.get('io_backend', {'type': 'disk'}))
        roots = opt.get('dataroot_gt')
        self.procedural = parse_procedural_options(opt.get('procedural'), self.name)
        if not roots and self.procedural is None:
            raise ValueError(f'{self.name}: dataroot_gt (folder(s) of sharp images) is required.')
        roots = [str(r) for r in roots] if isinstance(roots, (list, tuple)) else [str(roots)] if roots else []
        in_chans, to_gray = opt.get('in_chans', 3), opt.get('to_gray', False)
        self.gray_channels = bool(opt.get('gray_channels', False))
        if self.gray_channels and (in_chans != 1 or to_gray):
            raise ValueError(f'{self.name}: gray_channels needs in_chans: 1 and no to_gray (it replaces the luminance '
                             f'of to_gray by one colour channel per sample), got in_chans {in_chans}, to_gray '
                             f'{to_gray}.')
        to_gray = to_gray or self.gray_channels  # the loader's checks accept RGB; _sharp keeps its channels
        if not roots:
            self.loader = ImageLoader(io_backend, None, in_chans, to_gray)
            self.samples = []
        elif io_backend['type'] == 'lmdb':
            self.loader = ImageLoader(io_backend, {f'gt{i}': r for i, r in enumerate(roots)}, in_chans, to_gray)
            self.samples = [(key, f'gt{i}') for i, r in enumerate(roots) for key in read_lmdb_keys(r)]
        else:
            self.loader = ImageLoader(io_backend, None, in_chans, to_gray)
            self.samples = [(p, 'default') for p in self._disk_paths(roots, opt.get('meta_info_file'))]
        if not self.samples and roots:
            raise ValueError(f'{self.name}: no image in {roots}.')
        if self.procedural is not None:
            self.samples += [(f'procedural_{i:05d}', PROCEDURAL) for i in range(self.procedural['images'])]
        self.check_files_if_enabled()
        self.init_extra(opt)

    def header_samples(self) -> list:
        """Each sharp image on its own (:meth:`PluginDataset.check_files`)."""
        return [[(self._label(p, k), lambda p=p, k=k: self.loader.inspect(p, k))] for p, k in self.samples
                if k != PROCEDURAL]

    @staticmethod
    def _disk_paths(roots: List[str], meta: Optional[str]) -> List[str]:
        if meta:
            if len(roots) != 1:
                raise ValueError('SyntheticDefocusDataset: meta_info_file needs a single dataroot_gt folder.')
            return [osp.join(roots[0], rel) for rel in read_meta_info(meta)]
        paths = []
        for root in roots:
            if not osp.isdir(root):
                raise FileNotFoundError(f'SyntheticDefocusDataset: dataroot_gt folder {root!r} does not exist.')
            names = sorted(n for n in os.listdir(root) if osp.isfile(osp.join(root, n)))
            note_ignored(root, [n for n in names if not is_image_file(n)])
            paths += [osp.join(root, n) for n in names if is_image_file(n)]
        return paths

    def _label(self, path: str, key: str) -> str:
        return f'{self.loader.lmdb_roots[key]}[{path}]' if self.loader.is_lmdb and key != PROCEDURAL else path

    def __len__(self) -> int:
        return len(self.samples) * (1 if self.train else self.pairs_per_image)

    def _sharp(self, image_index: int) -> np.ndarray:
        if self.cache is not None and image_index in self.cache:
            return self.cache[image_index]
        path, key = self.samples[image_index]
        if key == PROCEDURAL:
            seed = np.random.randint(0, 2**31 - 1) if self.train else [self.val_seed, 7919, image_index]
            img = make_scene(np.random.default_rng(seed), self.procedural['size'], self.loader.in_chans,
                             self.procedural['kinds'])
            if self.train:
                return img  # a new scene at every visit, never cached
        elif self.gray_channels:
            img = self.loader.read_unconverted(path, key)
        else:
            img = self.loader.read(path, key)
        if self.cache is not None:
            img.setflags(write=False)
            self.cache[image_index] = img
        return img

    @staticmethod
    def _channel(img: np.ndarray, k: int) -> np.ndarray:
        """Channel ``k`` (mod the channel count) of ``img`` as an ``H x W x 1`` copy; a one-channel image as is."""
        if img.shape[2] == 1:
            return img
        c = k % img.shape[2]
        return np.ascontiguousarray(img[:, :, c:c + 1])

    def pair(self, index: int) -> SyntheticPair:
        """Pair ``index``: training crops use the global generators; validation pairs are a function of
        ``(val_seed, index)`` only."""
        image_index = index % len(self.samples)
        path, key = self.samples[image_index]
        if self.train:  # a crop flat to the percentile map (dark background, no noise) is drawn again
            for attempt in range(FLAT_CROP_RETRIES):
                try:
                    return self._train_pair(image_index, path, key, index)
                except FlatImageError:
                    if attempt == FLAT_CROP_RETRIES - 1:
                        raise
        sharp = self._sharp(image_index)
        if self.gray_channels:
            sharp = self._channel(sharp, index // len(self.samples))
        rng = np.random.default_rng([self.val_seed, index])
        params = draw_degradation(self.psf_opt, self.noise_opt, rng)
        psf = psf_of(params)
        if self.val_crop:
            c = int(self.val_crop)
            top, left = max(0, (sharp.shape[0] - c) // 2), max(0, (sharp.shape[1] - c) // 2)
            sharp = np.ascontiguousarray(sharp[top:top + c, left:left + c])
        lq = degrade(sharp, psf, params, rng)
        return self._normalised(lq, sharp, psf, params, path, index)

    def _normalised(self, lq: np.ndarray, gt: np.ndarray, psf: np.ndarray, params: Dict[str, Any], path: str,
                    index: int, crop: Optional[tuple] = None) -> SyntheticPair:
        """The pair in the network's units, the map computed from the whole of ``lq``; ``crop`` ``(top, left,
        size)``: then cut to that square."""
        name = f'{osp.splitext(osp.basename(str(path)))[0]}_s{index}_{params["psf"]}'
        imap = self.norm.map_for(lq, name)
        if crop is not None:
            top, left, size = crop
            lq, gt = lq[top:top + size, left:left + size], gt[top:top + size, left:left + size]
        return SyntheticPair(imap.forward(lq), imap.forward(gt), psf, params, name)

    def _train_pair(self, image_index: int, path: str, key: str, index: int) -> SyntheticPair:
        """A random training crop of image ``image_index``, degraded (global generators). With ``norm_context``
        the normalisation map comes from a region of that size around the crop, degraded alike, as inference
        computes it from a whole image rather than from one crop."""
        sharp = self._sharp(image_index)
        if self.gray_channels:
            sharp = self._channel(sharp, np.random.randint(0, 3))
        rng = np.random.default_rng(np.random.randint(0, 2**31 - 1))
        params = draw_degradation(self.psf_opt, self.noise_opt, rng)
        psf = psf_of(params)
        margin = psf.shape[0] // 2
        crop = int(self.opt['gt_size'])
        region = max(crop, min(self.norm_context, min(sharp.shape[:2]) - 2 * margin))
        size = region + 2 * margin
        pad_h, pad_w = max(0, size - sharp.shape[0]), max(0, size - sharp.shape[1])
        if pad_h or pad_w:  # reflect-pad small images up to one crop
            sharp = cv2.copyMakeBorder(sharp, 0, pad_h, 0, pad_w, cv2.BORDER_REFLECT_101).reshape(
                sharp.shape[0] + pad_h, sharp.shape[1] + pad_w, -1)
        crop_opt = dict(self.opt, gt_size=size)
        sharp = train_augment([sharp], crop_opt, repr(self._label(path, key)))[0]
        lq = degrade(sharp, psf, params, rng)
        gt = sharp
        if margin:
            lq, gt = lq[margin:-margin, margin:-margin], gt[margin:-margin, margin:-margin]
        if region == crop:
            return self._normalised(lq, gt, psf, params, path, index)
        top, left = (int(v) for v in np.random.randint(0, region - crop + 1, size=2))
        return self._normalised(lq, gt, psf, params, path, index, crop=(top, left, crop))

    def __getitem__(self, index: int) -> dict:
        sample = self.pair(index)
        lq, gt = img2tensor([sample.lq, sample.gt], bgr2rgb=False, float32=True)
        path, key = self.samples[index % len(self.samples)]
        return self.attach_extra({'lq': lq, 'gt': gt, 'lq_path': sample.name, 'gt_path': self._label(path, key)},
                                 index)
