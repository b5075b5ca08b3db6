"""Start-up checks of the option sections that belong to this plugin, run right after the options are parsed.

Called by the patched ``parse_options`` (:mod:`mpt_plugin.patches`), so ``mpt-train``/``mpt-test``,
``scripts/train.py`` and BasicSR's own ``train.py``/``test.py`` all stop *before* any data is read or any
network is built when an option is wrong. Every problem found is reported at once in one
:class:`OptionError`:

* ``network_*`` sections with ``type: MPT``: unknown keys (against the signature of the registered ``MPT``'s
  ``__init__``) and required arguments that are missing;
* ``train`` of ``model_type: EFCRModel``: its own keys (the model class's ``TRAIN_KEYS``: ``efcr_opt``,
  ``efcr_mode``, ``efcr_reblur``, ...), their contents (``efcr_opt`` against the registered ``EFCRLoss``'s
  signature, ``efcr_mode`` against the model's ``EFCR_MODES``, ``efcr_reblur`` against its ``REBLUR_KEYS``), and
  any other key that is a near-miss of a known ``train`` key (``pixel_op`` -> ``pixel_opt``);
* ``datasets.*`` of every registered dataset class that declares its options (the plugin's datasets,
  :class:`mpt_data.plugin_dataset.PluginDataset`), and their ``extra_dataset``: unknown keys against the class's
  ``option_keys()`` and missing keys of its ``required_keys()`` (``gt_size`` in training, the data roots);
* ``val.metrics`` entries whose registered metric function carries a ``check_options`` (LPIPS: the backbone
  weights, :func:`mpt_metrics.lpips_metric.check_lpips_metrics`).

Everything is read through BasicSR's registries, so this module imports no network, loss, dataset, model or
metric package, and a new registered dataset class is checked without editing anything here. Unknown keys come
with a "did you mean" suggestion (:func:`difflib.get_close_matches`). Options of BasicSR itself and of other
plugins are left alone, except for the near-miss check above.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Dict, Iterable, List, Optional

__all__ = ['OptionError', 'check_options', 'check_dataset_options', 'check_network_options', 'check_train_options']


class OptionError(ValueError):
    """One or more option problems; the message lists each with the key's full name."""


# train keys SRModel / BaseModel read (BasicSR 1.4.2); a model class adds its own as TRAIN_KEYS
SRMODEL_TRAIN_KEYS = ('ema_decay', 'pixel_opt', 'perceptual_opt', 'optim_g', 'scheduler', 'total_iter',
                      'warmup_iter')


def registered(registry_name: str, name: Any) -> Any:
    """The object registered as ``name`` in BasicSR's registry ``registry_name`` (e.g. ``'ARCH_REGISTRY'``), or None."""
    from basicsr.utils import registry

    table = getattr(registry, registry_name)
    return table.get(name) if isinstance(name, str) and name in table else None


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
        network_cls = registered('ARCH_REGISTRY', 'MPT')
        if network_cls is None:
            continue
        names, required, var_kw = _signature_keys(network_cls.__init__)
        if not var_kw:
            problems += _unknown([k for k in net_opt if k != 'type'], names, section)
        problems += [f'{section}: required key {key!r} is missing' for key in required if key not in net_opt]
    return problems


def check_train_options(opt: Dict[str, Any]) -> List[str]:
    """Problems in ``train`` of ``model_type: EFCRModel``: the ``efcr_*`` keys and near-misses of known keys."""
    train = opt.get('train')
    model_cls = registered('MODEL_REGISTRY', 'EFCRModel')
    if opt.get('model_type') != 'EFCRModel' or not isinstance(train, dict) or model_cls is None:
        return []
    problems = []
    known = tuple(model_cls.TRAIN_KEYS) + SRMODEL_TRAIN_KEYS
    for key in train:
        if key in known:
            continue
        if str(key).startswith('efcr') or difflib.get_close_matches(str(key), known, n=1, cutoff=0.8):
            problems += _unknown([key], known, 'train')
    efcr_opt = train.get('efcr_opt')
    if isinstance(efcr_opt, dict):
        loss_cls = registered('LOSS_REGISTRY', 'EFCRLoss')
        if efcr_opt.get('type', 'EFCRLoss') == 'EFCRLoss' and loss_cls is not None:
            names, _, _ = _signature_keys(loss_cls.__init__)
            problems += _unknown([k for k in efcr_opt if k != 'type'], names, 'train.efcr_opt')
        if 'type' not in efcr_opt:
            problems.append("train.efcr_opt: required key 'type' is missing (type: EFCRLoss)")
    mode = train.get('efcr_mode')
    modes = model_cls.EFCR_MODES
    if mode is not None and mode not in modes:
        close = difflib.get_close_matches(str(mode), list(modes), n=1, cutoff=0.6)
        hint = f'; did you mean {close[0]!r}?' if close else ''
        problems.append(f'train.efcr_mode: unknown mode {mode!r} (one of {", ".join(modes)}){hint}')
    reblur = train.get('efcr_reblur')
    if isinstance(reblur, dict):
        problems += _unknown(reblur, model_cls.REBLUR_KEYS, 'train.efcr_reblur')
    return problems


def check_dataset_options(ds_opt: Dict[str, Any], where: str, phase: Optional[str] = None,
                          inherits_gt_size: bool = False) -> List[str]:
    """Problems in one section of a dataset class that declares its options (and its ``extra_dataset``).

    Types whose registered class has no ``option_keys`` (BasicSR's own, other plugins') or that are not
    registered pass unchecked.
    """
    dataset_cls = registered('DATASET_REGISTRY', ds_opt.get('type'))
    if not hasattr(dataset_cls, 'option_keys'):
        return []
    phase = ds_opt.get('phase', phase)
    train_phase = phase == 'train'
    problems = _unknown(ds_opt, dataset_cls.option_keys(), where)
    for key in dataset_cls.required_keys(ds_opt, train_phase and not inherits_gt_size):
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
        check_metric_options(opt)


def check_metric_options(opt: Dict[str, Any]) -> None:
    """Run the ``check_options(opt)`` of every registered metric type named in ``val.metrics`` (once each)."""
    metrics = (opt.get('val') or {}).get('metrics') or {}
    types = dict.fromkeys(m.get('type') for m in metrics.values() if isinstance(m, dict))
    for metric_type in types:
        check = getattr(registered('METRIC_REGISTRY', metric_type), 'check_options', None)
        if check is not None:
            check(opt)
