"""Start-up checks of the option sections that belong to this plugin, run right after the options are parsed.

Called by the patched ``parse_options`` (:mod:`mpt_plugin.patches`), so ``mpt-train``/``mpt-test``,
``scripts/train.py`` and BasicSR's own ``train.py``/``test.py`` all stop *before* any data is read or any
network is built when an option is wrong. Every problem found is reported at once in one
:class:`OptionError`:

* ``network_*`` sections with ``type: MPT``: unknown keys (against the signature of ``MPT.__init__``) and
  required arguments that are missing;
* ``train`` of ``model_type: EFCRModel``: ``efcr_*`` keys (``efcr_opt``, ``efcr_mode``, ``efcr_reblur``),
  their contents (``efcr_opt`` against ``EFCRLoss``'s signature, ``efcr_mode`` against the known modes), and
  any other key that is a near-miss of a known ``train`` key (``pixel_op`` -> ``pixel_opt``);
* ``datasets.*`` of the plugin's dataset types (and their ``extra_dataset``): unknown keys and missing
  required keys (``gt_size`` in training, the data roots of each layout);
* ``val.metrics`` entries of ``calculate_lpips``: the backbone weights (:func:`mpt_metrics.lpips_metric.
  check_lpips_metrics`).

Unknown keys come with a "did you mean" suggestion (:func:`difflib.get_close_matches`). Options of BasicSR itself
and of other plugins are left alone, except for the near-miss check above.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Dict, Iterable, List, Optional

__all__ = ['OptionError', 'check_options', 'check_dataset_options', 'check_network_options', 'check_train_options']


class OptionError(ValueError):
    """One or more option problems; the message lists each with the key's full name."""


# keys BasicSR's data pipeline reads from every dataset section (build_dataloader, prefetchers, parse_options)
BASICSR_DATASET_KEYS = ('name', 'type', 'phase', 'scale', 'io_backend', 'use_shuffle', 'num_worker_per_gpu',
                        'batch_size_per_gpu', 'dataset_enlarge_ratio', 'prefetch_mode', 'pin_memory',
                        'persistent_workers', 'num_prefetch_queue')
PLUGIN_DATASET_KEYS = ('in_chans', 'to_gray', 'extra_dataset', 'extra_sampling', 'check_files',
                       'normalize', 'norm_percentiles', 'norm_max')  # mpt_data.normalization: every dataset
TRAIN_AUGMENT_KEYS = ('gt_size', 'use_scale', 'scale_range', 'use_hflip', 'use_vflip', 'use_rot')
DATASET_KEYS: Dict[str, tuple] = {
    'BBBC006Dataset': ('dataroot', 'channel', 'gt_plane', 'input_planes', 'split', 'test_fraction', 'split_seed',
                       'test_wells'),
    'PairedDefocusDataset': ('layout', 'dataroot', 'split', 'dataroot_lq', 'dataroot_gt', 'meta_info_file',
                             'filename_tmpl'),
    'UnlabeledDefocusDataset': ('dataroot_lq', 'meta_info_file'),
    'SyntheticDefocusDataset': ('dataroot_gt', 'meta_info_file', 'psf', 'noise', 'pairs_per_image', 'val_seed',
                                'val_crop', 'cache_images'),
}
# train keys SRModel / BaseModel / EFCRModel read
EFCR_TRAIN_KEYS = ('efcr_opt', 'efcr_mode', 'efcr_reblur', 'log_grad_norm_freq')
SRMODEL_TRAIN_KEYS = ('ema_decay', 'pixel_opt', 'perceptual_opt', 'optim_g', 'scheduler', 'total_iter',
                      'warmup_iter')
EFCR_REBLUR_KEYS = ('kernel_sizes', 'sigma', 'seed')


def _unknown(keys: Iterable[str], known: Iterable[str], where: str) -> List[str]:
    known = list(known)
    problems = []
    for key in keys:
        if key in known:
            continue
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
        hint = f'; did you mean {close[0]!r}?' if close else f'; allowed: {", ".join(sorted(known))}'
        problems.append(f'{where}: unknown key {key!r}{hint}')
    return problems


def _signature_keys(func: Any) -> tuple:
    """(all keyword names, required names, accepts **kwargs) of ``func`` (without ``self``)."""
    params = [p for p in inspect.signature(func).parameters.values() if p.name != 'self']
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    required = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and p.default is inspect.Parameter.empty]
    return names, required, any(p.kind == p.VAR_KEYWORD for p in params)


def check_network_options(opt: Dict[str, Any]) -> List[str]:
    """Problems in ``network_*`` sections of ``type: MPT`` (keys checked against ``MPT.__init__``)."""
    problems = []
    for section, net_opt in opt.items():
        if not section.startswith('network_') or not isinstance(net_opt, dict) or net_opt.get('type') != 'MPT':
            continue
        from mpt_arch import MPT

        names, required, var_kw = _signature_keys(MPT.__init__)
        if not var_kw:
            problems += _unknown([k for k in net_opt if k != 'type'], names, section)
        problems += [f'{section}: required key {key!r} is missing' for key in required if key not in net_opt]
    return problems


def check_train_options(opt: Dict[str, Any]) -> List[str]:
    """Problems in ``train`` of ``model_type: EFCRModel``: the ``efcr_*`` keys and near-misses of known keys."""
    train = opt.get('train')
    if opt.get('model_type') != 'EFCRModel' or not isinstance(train, dict):
        return []
    problems = []
    known = EFCR_TRAIN_KEYS + SRMODEL_TRAIN_KEYS
    for key in train:
        if key in known:
            continue
        if str(key).startswith('efcr') or difflib.get_close_matches(str(key), known, n=1, cutoff=0.8):
            problems += _unknown([key], known, 'train')
    efcr_opt = train.get('efcr_opt')
    if isinstance(efcr_opt, dict):
        if efcr_opt.get('type', 'EFCRLoss') == 'EFCRLoss':
            from mpt_losses.efcr_loss import EFCRLoss

            names, _, _ = _signature_keys(EFCRLoss.__init__)
            problems += _unknown([k for k in efcr_opt if k != 'type'], names, 'train.efcr_opt')
        if 'type' not in efcr_opt:
            problems.append("train.efcr_opt: required key 'type' is missing (type: EFCRLoss)")
    mode = train.get('efcr_mode')
    if mode is not None:
        from mpt_models.efcr_model import EFCR_MODES

        if mode not in EFCR_MODES:
            close = difflib.get_close_matches(str(mode), list(EFCR_MODES), n=1, cutoff=0.6)
            hint = f'; did you mean {close[0]!r}?' if close else ''
            problems.append(f'train.efcr_mode: unknown mode {mode!r} (one of {", ".join(EFCR_MODES)}){hint}')
    reblur = train.get('efcr_reblur')
    if isinstance(reblur, dict):
        problems += _unknown(reblur, EFCR_REBLUR_KEYS, 'train.efcr_reblur')
    return problems


def _required_dataset_keys(ds_type: str, ds_opt: Dict[str, Any], train_phase: bool, inherits_gt_size: bool) -> list:
    required = ['gt_size'] if train_phase and not inherits_gt_size else []
    if ds_type == 'BBBC006Dataset':
        required.append('dataroot')
    elif ds_type == 'UnlabeledDefocusDataset':
        required.append('dataroot_lq')
    elif ds_type == 'PairedDefocusDataset':
        layout = ds_opt.get('layout', 'folder')
        if layout == 'dpdd' or (layout == 'lfdof' and 'dataroot' in ds_opt):
            required += ['dataroot', 'split']
        else:
            required += ['dataroot_lq', 'dataroot_gt']
    return required


def check_dataset_options(ds_opt: Dict[str, Any], where: str, phase: Optional[str] = None,
                          inherits_gt_size: bool = False) -> List[str]:
    """Problems in one dataset section of a plugin dataset type (and its ``extra_dataset``); others pass."""
    ds_type = ds_opt.get('type')
    if ds_type not in DATASET_KEYS:
        return []
    phase = ds_opt.get('phase', phase)
    train_phase = phase == 'train'
    known = BASICSR_DATASET_KEYS + PLUGIN_DATASET_KEYS + TRAIN_AUGMENT_KEYS + DATASET_KEYS[ds_type]
    problems = _unknown(ds_opt, known, where)
    for key in _required_dataset_keys(ds_type, ds_opt, train_phase, inherits_gt_size):
        if ds_opt.get(key) is None:
            what = ' (the training crop size, e.g. gt_size: 256)' if key == 'gt_size' else ''
            problems.append(f'{where}: required key {key!r} is missing{what}')
    extra = ds_opt.get('extra_dataset')
    if isinstance(extra, dict):
        problems += check_dataset_options(extra, f'{where}.extra_dataset', phase,
                                          inherits_gt_size=inherits_gt_size or 'gt_size' in ds_opt)
    return problems


def check_options(opt: Dict[str, Any], is_train: bool = True) -> None:
    """Run every check above on parsed options; raise :class:`OptionError` listing all problems found."""
    problems = check_network_options(opt)
    if is_train:
        problems += check_train_options(opt)
    for name, ds_opt in (opt.get('datasets') or {}).items():
        if isinstance(ds_opt, dict):
            problems += check_dataset_options(ds_opt, f'datasets.{name}', ds_opt.get('phase', name.split('_')[0]))
    if problems:
        raise OptionError('Option file problems (fix them and start again):\n  - ' + '\n  - '.join(problems))
    if opt.get('val'):
        from mpt_metrics.lpips_metric import check_lpips_metrics

        check_lpips_metrics(opt)
