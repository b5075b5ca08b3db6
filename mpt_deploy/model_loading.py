"""Trained networks for deployment: option file -> network, checkpoint -> weights, and the intensity map.

The one loading library of ``mpt_deploy`` (``mpt-deblur``, the starter models, the bioimage.io export):

* :func:`network_options` / :func:`build_network`: ``network_g`` of a BasicSR option file (or ``--arch`` with
  ``--net-opt``), built through BasicSR's ``ARCH_REGISTRY``;
* :func:`load_state_dict` / :func:`check_compatible` / :func:`load_network`: checkpoints read as data
  (:mod:`mpt_common.checkpoint`), finite, and matching the network key by key and shape by shape;
* :func:`load_weights`: the same, or an authors' released checkpoint converted on load
  (:mod:`mpt_deploy.authors_checkpoint`);
* :func:`inference_normalization`: the intensity map the network was trained with (:mod:`mpt_data.normalization`).
"""

from __future__ import annotations

import sys
from typing import Any, Dict, Optional, Sequence, Tuple

import mpt_common.basicsr_compat  # noqa: F401  (before any basicsr import)
from mpt_common.checkpoint import CheckpointError, check_finite, load_checkpoint, select_params
from mpt_common.messages import preview

_NOTED: set = set()  # (option file, note) already printed


class CheckpointMismatchError(CheckpointError):
    """The checkpoint's parameters do not fit the network built from the options."""


def read_options(opt_file: str) -> Dict[str, Any]:
    """A BasicSR YAML option file as a dict, read by the plugin's safe loader and checked as ``mpt-train`` checks it
    (:mod:`mpt_common.option_checks`; errors name the file, key and value; notes on coerced numbers go to stderr)."""
    import yaml

    from mpt_common.option_checks import check_options
    from mpt_common.option_file import OptionFileError, UnsafeOptionError, load_option_mapping

    try:
        opt = load_option_mapping(opt_file)
    except UnsafeOptionError:
        raise
    except yaml.YAMLError as err:  # invalid YAML
        raise OptionFileError(str(err)) from None
    notes = check_options(opt, is_train='train' in opt, source=f'Option file {opt_file!r}', metrics=False,
                          required=False)
    for note in notes:
        if (opt_file, note) not in _NOTED:
            _NOTED.add((opt_file, note))
            print(f'note: {note}', file=sys.stderr)
    return opt


def network_options(opt_file: Optional[str] = None, arch: Optional[str] = None,
                    net_opt: Sequence[str] = ()) -> Dict[str, Any]:
    """``network_g`` options from a BasicSR YAML file, or ``{'type': arch, **key=value pairs}``."""
    from mpt_common.option_file import parse_option_text

    if opt_file:
        opt = read_options(opt_file)
        if not isinstance(opt.get('network_g'), dict):
            raise ValueError(f'Option file {opt_file!r} has no network_g section.')
        network = dict(opt['network_g'])
    elif arch:
        network = {'type': arch}
    else:
        raise ValueError('Give the network: -opt <BasicSR option file with network_g> or --arch NAME '
                         "(only an authors' checkpoint as -w needs neither).")
    for item in net_opt:
        if '=' not in item:
            raise ValueError(f'--net-opt expects key=value, got {item!r}.')
        key, value = item.split('=', 1)
        network[key.strip()] = parse_option_text(value, f'--net-opt {item!r}')
    if net_opt or arch:
        import mpt_arch  # noqa: F401  (registers MPT, whose keywords the check reads)
        from mpt_common.option_checks import check_network

        for note in check_network(network, 'network_g (with --net-opt)' if net_opt else 'network_g'):
            print(f'note: {note}', file=sys.stderr)
    return network


def build_network(network_opt: Dict[str, Any]):
    """Build ``network_opt`` through BasicSR's ARCH_REGISTRY (plugin architectures registered first)."""
    from basicsr.archs import build_network as basicsr_build

    import mpt_arch  # noqa: F401  (registers MPT even where the auto-load hook is switched off)

    return basicsr_build(dict(network_opt))


def load_state_dict(path: str, param_key: Optional[str] = 'auto') -> Dict[str, Any]:
    """Parameters from a BasicSR checkpoint (``params_ema``/``params``; ``param_key=None``: a bare state dict).

    Loaded with ``weights_only=True`` (:func:`mpt_common.checkpoint.load_checkpoint`); NaN/inf values are an error.
    """
    state = select_params(load_checkpoint(path), path, param_key)
    check_finite(state, path)
    return state


def check_compatible(net, state: Dict[str, Any], path: str, show: int = 5) -> None:
    """Raise :class:`CheckpointMismatchError` listing the first missing/unexpected keys and shape mismatches."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f'{k}: checkpoint {tuple(state[k].shape)} vs network {tuple(own[k].shape)}'
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = [f'Checkpoint {path!r} does not match the network {type(net).__name__}:']
        for title, items in (('missing keys', missing), ('unexpected keys', unexpected), ('shape mismatches', shapes)):
            if items:
                parts.append(f'  {len(items)} {title}: {preview(items, show)}')
        parts.append('  Check network_g / --net-opt against the options the checkpoint was trained with.')
        raise CheckpointMismatchError('\n'.join(parts))


def load_network(network_opt: Dict[str, Any], checkpoint: str, param_key: Optional[str] = 'auto',
                 device: str = 'cpu'):
    """Build the network, check and load the checkpoint, move to ``device``, eval mode."""
    net = build_network(network_opt)
    state = load_state_dict(checkpoint, param_key)
    check_compatible(net, state, checkpoint)
    net.load_state_dict(state, strict=True)
    return net.to(device).eval()


def network_in_chans(network_opt: Dict[str, Any]) -> Optional[int]:
    """Input channels named in the options (MPT: ``in_chans``; BasicSR nets: ``num_in_ch``), else None."""
    for key in ('in_chans', 'num_in_ch', 'in_nc', 'in_channels'):
        if key in network_opt:
            return int(network_opt[key])
    return None


def inference_normalization(opt_file: Optional[str], mode: Optional[str] = None,
                            percentiles: Optional[Sequence[float]] = None, norm_max: Optional[float] = None):
    """The :class:`~mpt_data.normalization.Normalization` to apply: the option file's, or ``--normalize``'s.

    With ``-opt`` the datasets' ``normalize`` decides (a differing ``--normalize`` is refused); a map that
    needs the ground truth is refused with the reason and what to set.
    """
    from mpt_data.normalization import from_options, from_train_options, require_input_only

    cli = {k: v for k, v in (('normalize', mode), ('norm_percentiles', percentiles), ('norm_max', norm_max))
           if v is not None}
    if opt_file:
        norm = from_train_options(read_options(opt_file), f'Option file {opt_file!r}')
        require_input_only(norm, f'Option file {opt_file!r}')
        if cli and from_options({'name': '--normalize', 'normalize': norm.mode, **cli}) != norm:
            raise ValueError(f'--normalize/--norm-* differ from option file {opt_file!r}, whose network was trained '
                             f'with {norm}; drop them.')
        return norm
    norm = from_options({'name': '--normalize', **cli}, default='dtype')
    require_input_only(norm, '--normalize')
    return norm


def load_weights(weights: str, opt_file: Optional[str] = None, arch: Optional[str] = None,
                 net_opt: Sequence[str] = (), param_key: Optional[str] = 'auto',
                 device: str = 'cpu') -> Tuple[Any, Dict[str, Any]]:
    """``(network, network options)`` of checkpoint ``weights``: an authors' file is converted on load (it needs
    no options); any other is loaded into the network that ``opt_file`` or ``arch``/``net_opt`` describe."""
    from mpt_deploy.authors_checkpoint import load_authors_network

    authors = load_authors_network(weights, device)
    if authors is not None:
        return authors
    network_opt = network_options(opt_file, arch, net_opt)
    return load_network(network_opt, weights, param_key, device), network_opt


def add_network_arguments(parser) -> None:
    """The network arguments of ``mpt-deblur`` and ``mpt-export-bioimageio`` besides ``-w`` and ``-opt``."""
    parser.add_argument('--arch', help='network type in ARCH_REGISTRY (e.g. MPT), instead of -opt')
    parser.add_argument('--net-opt', nargs='*', default=[], metavar='KEY=VALUE',
                        help='network keywords (YAML values), override/extend network_g')
    parser.add_argument('--param-key', default='auto', help="'auto' (params_ema, else params), a key, or '' (bare)")
