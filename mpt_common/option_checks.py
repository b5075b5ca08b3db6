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
* ``val.amp`` and ``val.tile`` of ``model_type: EFCRModel`` (the model class's ``VAL_KEYS``);
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
import re
from typing import Any, Dict, Iterable, List, Optional, Sequence

__all__ = ['OptionError', 'check_options', 'check_dataset_options', 'check_network_options', 'check_train_options',
           'check_val_options']


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
    """Problems in ``network_*`` sections of a registered architecture (keys checked against its ``__init__``)."""
    problems = []
    for section, net_opt in opt.items():
        if not section.startswith('network_') or not isinstance(net_opt, dict):
            continue
        network_cls = registered('ARCH_REGISTRY', net_opt.get('type'))
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
    return problems + _amp_problems(train, model_cls, 'train')


def _amp_problems(section: Dict[str, Any], model_cls: Any, where: str) -> List[str]:
    amp = section.get('amp', False)
    if amp not in (False, None, 'false') and amp not in getattr(model_cls, 'AMP_DTYPES', {}):
        return [f'{where}.amp: {amp!r} is not one of bf16, fp16, false']
    return []


def check_val_options(opt: Dict[str, Any]) -> List[str]:
    """Problems in ``val`` of ``model_type: EFCRModel`` beyond the value kinds: ``val.amp``, ``val.tile``."""
    val = opt.get('val')
    model_cls = registered('MODEL_REGISTRY', 'EFCRModel')
    if opt.get('model_type') != 'EFCRModel' or not isinstance(val, dict) or model_cls is None:
        return []
    problems = _amp_problems(val, model_cls, 'val')
    tile = val.get('tile', 'auto')
    if isinstance(tile, int) and val_tile_problem(tile):  # other kinds: check_schema's
        problems.append(f'val.tile: {tile} must be {val_tile_problem(tile)}')
    return problems


def val_tile_problem(tile: Any) -> Optional[str]:
    """What ``val.tile`` must be when ``tile`` is not a valid value (else None)."""
    from mpt_common.tiling import smallest_tile

    if tile == 'auto' or tile == 0 or (isinstance(tile, int) and not isinstance(tile, bool)
                                       and tile >= smallest_tile()):
        return None
    return f'auto, 0 (the whole image) or a tile size of at least {smallest_tile()} pixels'


def check_dataset_options(ds_opt: Dict[str, Any], where: str, phase: Optional[str] = None,
                          inherits_gt_size: bool = False, required: bool = True) -> List[str]:
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
    for key in dataset_cls.required_keys(ds_opt, train_phase and not inherits_gt_size) if required else ():
        if ds_opt.get(key) is None:
            what = ' (the training crop size, e.g. gt_size: 256)' if key == 'gt_size' else ''
            problems.append(f'{where}: required key {key!r} is missing{what}')
    extra = ds_opt.get('extra_dataset')
    if isinstance(extra, dict):
        problems += check_dataset_options(extra, f'{where}.extra_dataset', phase,
                                          inherits_gt_size=inherits_gt_size or 'gt_size' in ds_opt, required=required)
    return problems


def check_network(net_opt: Dict[str, Any], where: str = 'network_g') -> List[str]:
    """Check one network section (``mpt-deblur``'s ``network_g`` with ``--net-opt``): unknown and missing keys of
    the registered architecture, value kinds (numbers written as text coerced). Raises :class:`OptionError`;
    returns the notes."""
    check = Checker()
    check.problems += check_network_options({where: net_opt})
    check.network(net_opt, where)
    if check.problems:
        raise OptionError(f'{where} problems:\n  - ' + '\n  - '.join(dict.fromkeys(check.problems)))
    return check.notes


def check_options(opt: Dict[str, Any], is_train: bool = True, source: str = 'Option file',
                  metrics: bool = True, required: bool = True) -> List[str]:
    """Run every check of this module on parsed options (numbers written as text are coerced in place); raise
    :class:`OptionError` listing all problems found. Returns the notes on coerced values. ``metrics``: also the
    metrics' own start-up checks (LPIPS loads its backbone); ``required``: see :func:`check_schema`."""
    schema = check_schema(opt, is_train, required)
    problems = schema.problems + check_network_options(opt)
    if is_train:
        problems += check_train_options(opt)
    problems += check_val_options(opt)
    for name, ds_opt in (opt.get('datasets') or {}).items():
        if isinstance(ds_opt, dict):
            problems += check_dataset_options(ds_opt, f'datasets.{name}', ds_opt.get('phase', name.split('_')[0]),
                                              required=required)
    if problems:
        problems = list(dict.fromkeys(problems))
        raise OptionError(f'{source} problems (fix them and start again):\n  - ' + '\n  - '.join(problems))
    if metrics and opt.get('val'):
        check_metric_options(opt)
    return schema.notes


def check_metric_options(opt: Dict[str, Any]) -> None:
    """Run the ``check_options(opt)`` of every registered metric type named in ``val.metrics`` (once each)."""
    metrics = (opt.get('val') or {}).get('metrics') or {}
    types = dict.fromkeys(m.get('type') for m in metrics.values() if isinstance(m, dict))
    for metric_type in types:
        check = getattr(registered('METRIC_REGISTRY', metric_type), 'check_options', None)
        if check is not None:
            check(opt)


# --- the whole file: keys and value kinds of every section BasicSR 1.4.2 and the plugin read ----------------------
# kinds: 'int', 'float' (an int is fine), 'bool', 'str', 'int|auto', 'list[int]', 'list[float]', 'section' (a
# mapping checked on its own), 'any'; a trailing '?' allows null (~).
TOP_LEVEL = {'name': 'str', 'model_type': 'str', 'scale': 'int', 'num_gpu': 'int|auto', 'manual_seed': 'int?',
             'datasets': 'section', 'path': 'section', 'train': 'section', 'val': 'section?', 'logger': 'section',
             'dist_params': 'section', 'find_unused_parameters': 'bool',
             'is_train': 'bool', 'dist': 'bool', 'rank': 'int', 'world_size': 'int', 'auto_resume': 'bool'}
LOGGER = {'print_freq': 'int', 'save_checkpoint_freq': 'int', 'use_tb_logger': 'bool', 'wandb': 'any'}
DIST_PARAMS = {'backend': 'str', 'port': 'int'}
VAL = {'val_freq': 'float', 'save_img': 'bool', 'suffix': 'str?', 'pbar': 'bool', 'metrics': 'section'}
PATH = {'pretrain_network_': 'str?', 'strict_load_': 'bool', 'param_key_': 'str?', 'resume_state': 'str?',
        'experiments_root': 'str', 'models': 'str', 'training_states': 'str', 'log': 'str', 'visualization': 'str',
        'results_root': 'str'}  # keys ending in _ are prefixes (pretrain_network_g, strict_load_d, ...)
TRAIN = {'ema_decay': 'float', 'total_iter': 'int', 'warmup_iter': 'int', 'optim_g': 'section',
         'scheduler': 'section', 'pixel_opt': 'section?', 'perceptual_opt': 'section?'}
DATASET_VALUES = {'batch_size_per_gpu': 'int', 'num_worker_per_gpu': 'int', 'dataset_enlarge_ratio': 'int',
                  'gt_size': 'int', 'use_hflip': 'bool', 'use_vflip': 'bool', 'use_rot': 'bool', 'use_scale': 'bool',
                  'use_shuffle': 'bool', 'pin_memory': 'bool', 'persistent_workers': 'bool', 'prefetch_mode': 'str?',
                  'num_prefetch_queue': 'int', 'in_chans': 'int', 'to_gray': 'bool', 'check_files': 'bool',
                  'norm_max': 'float', 'norm_percentiles': 'list[float]', 'scale': 'int', 'name': 'str',
                  'type': 'str', 'phase': 'str'}
SCHEDULERS = {'MultiStepLR': {'milestones': 'list[int]', 'gamma': 'float', 'restarts': 'list[int]',
                              'restart_weights': 'list[float]'},
              'CosineAnnealingRestartLR': {'periods': 'list[int]', 'restart_weights': 'list[float]',
                                           'eta_min': 'float'}}
SCHEDULERS['MultiStepRestartLR'] = SCHEDULERS['MultiStepLR']
REQUIRED_SCHEDULER_KEYS = {'MultiStepLR': ('milestones',), 'MultiStepRestartLR': ('milestones',),
                           'CosineAnnealingRestartLR': ('periods',)}
NAME = re.compile(r'^[A-Za-z0-9_.+-]+$')
INT_TEXT = re.compile(r'^[+-]?\d+$')
FLOAT_TEXT = re.compile(r'^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$')


class Checker:
    """Checks one parsed option file section by section; coerces unambiguous numbers written as text (with a note)."""

    def __init__(self) -> None:
        self.problems: List[str] = []
        self.notes: List[str] = []

    def value(self, section: Any, key: Any, kind: str, where: str) -> None:
        """Check ``section[key]`` (a mapping's key or a list's index) against ``kind``; replace it by its number
        when it is one written as text."""
        value, path = section[key], f'{where}.{key}' if where else str(key)
        if kind.endswith('?'):
            if value is None:
                return
            kind = kind[:-1]
        if kind in ('any', 'section'):
            if kind == 'section' and not isinstance(value, dict):
                self.problems.append(f'{path}: expected a mapping of options, got {value!r}')
            return
        if kind.startswith('list['):
            if not isinstance(value, (list, tuple)):
                self.problems.append(f'{path}: expected a list of {kind[5:-1]} values, got {value!r}')
                return
            items = list(value)
            for i in range(len(items)):
                self.value(items, i, kind[5:-1], path)
            section[key] = items
            return
        if kind == 'int|auto' and value == 'auto':
            return
        number = 'int' if kind in ('int', 'int|auto') else 'float' if kind == 'float' else None
        if number:
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                self.problems.append(f'{path}: expected {_a(number)}, got {value!r}')
            elif isinstance(value, float) and number == 'int' and not value.is_integer():
                self.problems.append(f'{path}: expected an integer, got {value!r}')
            elif isinstance(value, str):
                text = value.strip()
                if number == 'int' and INT_TEXT.match(text):
                    section[key] = int(text)
                elif FLOAT_TEXT.match(text) and (number == 'float' or float(text).is_integer()):
                    section[key] = float(text) if number == 'float' else int(float(text))
                else:
                    self.problems.append(f'{path}: expected {_a(number)}, got the text {value!r}')
                    return
                self.notes.append(f'{path}: the text {value!r} is read as the number {section[key]!r} (YAML reads '
                                  f'numbers such as 1e-3 without a dot as text; write 1.0e-3)')
            return
        expected = {'bool': bool, 'str': str}[kind]
        if not isinstance(value, expected):
            hint = ' (write true or false, without quotes)' if kind == 'bool' else ''
            self.problems.append(f'{path}: expected {_a(kind)}{hint}, got {value!r}')

    def section(self, section: Any, kinds: Dict[str, str], where: str, strict: bool = True,
                prefixes: bool = False) -> None:
        """Check every key of ``section`` that ``kinds`` lists; with ``strict``, any other key is a problem."""
        if not isinstance(section, dict):
            return
        for key in list(section):
            kind = kinds.get(key)
            if kind is None and prefixes:
                kind = next((k for p, k in kinds.items() if p.endswith('_') and str(key).startswith(p)), None)
            if kind is not None:
                self.value(section, key, kind, where)
            elif strict:
                self.problems += _unknown([key], [k for k in kinds if not (prefixes and k.endswith('_'))],
                                          where or 'top level')

    def network(self, net_opt: Dict[str, Any], where: str) -> None:
        """Value kinds of a network section by its registered architecture's keywords (unknown keys:
        :func:`check_network_options`)."""
        network_cls = registered('ARCH_REGISTRY', net_opt.get('type'))
        if network_cls is not None:
            self.signature(net_opt, network_cls.__init__, where, unknown=False)

    def signature(self, section: Any, func: Any, where: str, skip: Sequence[str] = ('type',),
                  unknown: bool = True) -> None:
        """Keys of ``section`` against ``func``'s keywords; numbers by the kind of each keyword's default."""
        if not isinstance(section, dict):
            return
        names, _, var_kw = _signature_keys(func)
        params = inspect.signature(func).parameters
        if unknown and not var_kw:
            self.problems += _unknown([k for k in section if k not in skip and k not in names], names, where)
        for key in list(section):
            if key in params and key not in skip:
                kind = _kind_of_default(params[key].default)
                if kind:
                    self.value(section, key, kind, where)


def _a(kind: str) -> str:
    return {'int': 'an integer', 'float': 'a number', 'bool': 'true or false', 'str': 'a text'}.get(kind, kind)


def _kind_of_default(default: Any) -> Optional[str]:
    if isinstance(default, bool):
        return 'bool'
    if isinstance(default, int):
        return 'float'  # an int default (eta_min=0, weight_decay=0) takes floats too
    if isinstance(default, float):
        return 'float'
    if isinstance(default, tuple) and default and all(isinstance(v, (int, float)) for v in default):
        return 'list[float]'
    return None


def check_schema(opt: Dict[str, Any], is_train: bool = True, required: bool = True) -> Checker:
    """Keys and value kinds of every section a run reads (top level, ``datasets.*``, ``network_*``, ``train`` with
    ``optim_g``, ``scheduler`` and the loss sections, ``val``, ``logger``, ``dist_params``, ``path``); numbers
    written as text are coerced in place. ``required``: the keys a run needs must be there (``mpt-deblur`` reads
    only ``network_g`` and the datasets' normalisation). Returns the checker (``problems``, ``notes``)."""
    check = Checker()
    for key in list(opt):
        if str(key).startswith('network_'):
            check.value(opt, key, 'section', '')
        elif key in TOP_LEVEL:
            check.value(opt, key, TOP_LEVEL[key], '')
        else:
            check.problems += _unknown([key], list(TOP_LEVEL) + ['network_g'], 'top level')
    name = opt.get('name')
    if isinstance(name, str) and (not NAME.match(name) or name in ('.', '..')):
        check.problems.append(f'name: {name!r} must be one folder name (letters, digits, _ - . +): it becomes '
                              'experiments/<name> and results/<name>; paths and .. are not allowed')
    for key in ('name', 'model_type', 'datasets', 'network_g', 'path') + (('train', 'logger') if is_train else ()):
        if required and key not in opt:
            check.problems.append(f'required key {key!r} is missing')
    check.section(opt.get('logger'), LOGGER, 'logger')
    check.section(opt.get('dist_params'), DIST_PARAMS, 'dist_params')
    check.section(opt.get('path'), PATH, 'path', prefixes=True)
    val = opt.get('val')
    model_val_keys = getattr(registered('MODEL_REGISTRY', opt.get('model_type')), 'VAL_KEYS', {}) or {}
    check.section(val, {**VAL, **model_val_keys}, 'val')
    if isinstance(val, dict) and isinstance(val.get('metrics'), dict):
        for metric_name, metric in val['metrics'].items():
            where = f'val.metrics.{metric_name}'
            check.value(val['metrics'], metric_name, 'section', 'val.metrics')
            function = registered('METRIC_REGISTRY', metric.get('type')) if isinstance(metric, dict) else None
            if function is not None:
                check.signature(metric, function, where, skip=('type', 'better', 'if_missing'))
    for ds_name, ds_opt in (opt.get('datasets') or {}).items():
        check.value(opt['datasets'], ds_name, 'section', 'datasets')
        check.section(ds_opt, DATASET_VALUES, f'datasets.{ds_name}', strict=False)
    for section, net_opt in opt.items():
        if str(section).startswith('network_') and isinstance(net_opt, dict):
            check.network(net_opt, section)
    train = opt.get('train')
    if is_train and isinstance(train, dict):
        _check_train_section(check, opt, train)
    return check


def _check_train_section(check: Checker, opt: Dict[str, Any], train: Dict[str, Any]) -> None:
    model_cls = registered('MODEL_REGISTRY', opt.get('model_type'))
    own = dict(getattr(model_cls, 'TRAIN_KEYS', {}) or {})
    kinds = {**TRAIN, **{k: (v if isinstance(own, dict) else 'any') for k, v in own.items()}}
    check.section(train, kinds, 'train', strict=model_cls is not None and hasattr(model_cls, 'TRAIN_KEYS'))
    optim = train.get('optim_g')
    if isinstance(optim, dict):
        import torch

        optim_cls = getattr(torch.optim, str(optim.get('type')), None)
        if not (isinstance(optim_cls, type) and issubclass(optim_cls, torch.optim.Optimizer)):
            close = difflib.get_close_matches(str(optim.get('type')), ['Adam', 'AdamW', 'SGD', 'RMSprop'], n=1)
            hint = f'; did you mean {close[0]!r}?' if close else ' (a torch.optim class, e.g. AdamW)'
            check.problems.append(f'train.optim_g.type: unknown optimizer {optim.get("type")!r}{hint}')
        else:
            check.signature(optim, optim_cls.__init__, 'train.optim_g', skip=('type', 'params'))
    scheduler = train.get('scheduler')
    if isinstance(scheduler, dict):
        kinds = SCHEDULERS.get(scheduler.get('type'))
        if kinds is None:
            check.problems.append(f'train.scheduler.type: unknown scheduler {scheduler.get("type")!r} (BasicSR 1.4.2 '
                                  f'has {", ".join(SCHEDULERS)})')
        else:
            check.section(scheduler, {'type': 'str', **kinds}, 'train.scheduler')
            check.problems += [f"train.scheduler: required key {key!r} is missing"
                               for key in REQUIRED_SCHEDULER_KEYS[scheduler['type']] if key not in scheduler]
            periods, total = scheduler.get('periods'), train.get('total_iter')
            if isinstance(periods, list) and all(isinstance(p, int) for p in periods) and isinstance(total, int) \
                    and sum(periods) < total:
                check.problems.append(f'train.scheduler.periods: they add up to {sum(periods)} iterations but '
                                      f'train.total_iter is {total}; the cosine schedule would end (and BasicSR '
                                      'crash) before training does. Make them add up to total_iter.')
    for key, loss_opt in train.items():
        loss_cls = registered('LOSS_REGISTRY', loss_opt.get('type')) if (
            str(key).endswith('_opt') and isinstance(loss_opt, dict) and key != 'efcr_opt') else None
        if loss_cls is not None:
            check.signature(loss_opt, loss_cls.__init__, f'train.{key}')
