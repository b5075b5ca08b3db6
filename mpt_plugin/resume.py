"""Resuming BasicSR training on CPU or GPU from the latest *complete* training state.

Replaces ``basicsr.train.load_resume_state`` (see :mod:`mpt_plugin.patches`), which in BasicSR 1.4.2
calls ``torch.cuda.current_device()`` (fails without a GPU) and, with ``--auto_resume``, looks for states
under ``./experiments`` relative to the *current directory* rather than the run's own ``training_states``
folder. Here:

* states are looked up in ``opt['path']['training_states']`` (where they were saved);
* candidates are tried newest first; a state that does not load, or whose network checkpoints
  (``net_<name>_<iter>.pth``) are missing or do not load (damaged, truncated, not a dict of tensors), is
  skipped with a warning, so auto-resume falls back to the previous complete (state, network) pair even
  after a crash of an older, non-atomic writer or a damaged copy;
* tensors are mapped to the current CUDA device when the run uses a GPU, to the CPU otherwise;
* loading uses ``torch.load(..., weights_only=True)`` (training states hold only tensors and plain values).
"""

from __future__ import annotations

import os
import re
import warnings
from typing import Any, Dict, List, Optional, Tuple

from mpt_common.atomic import remove_stale_partials

_STATE_NAME = re.compile(r'^(\d+)\.state$')


def list_states(states_dir: str) -> List[int]:
    """Iterations of the ``<iter>.state`` files in ``states_dir``, newest first (hidden/partial files ignored)."""
    if not os.path.isdir(states_dir):
        return []
    iters = [int(m.group(1)) for m in map(_STATE_NAME.match, os.listdir(states_dir)) if m]
    return sorted(iters, reverse=True)


def _network_files(opt: Dict[str, Any], resume_iter: int) -> List[Tuple[str, str]]:
    """(network name, checkpoint) pairs that BasicSR's ``check_resume`` will load for ``resume_iter``."""
    ignored = opt['path'].get('ignore_resume_networks') or []
    files = []
    for key in opt:
        if key.startswith('network_') and key not in ignored:
            name = key[len('network_'):]
            files.append((name, os.path.join(opt['path']['models'], f'net_{name}_{resume_iter}.pth')))
    return files


def map_location(opt: Dict[str, Any]):
    """Where resumed tensors go: the current CUDA device for GPU runs, the CPU otherwise."""
    import torch

    if opt.get('num_gpu', 0) != 0 and torch.cuda.is_available():
        return torch.device('cuda', torch.cuda.current_device())
    return torch.device('cpu')


def load_state_file(path: str, opt: Dict[str, Any]) -> Dict[str, Any]:
    """Load one training state onto the run's device."""
    from mpt_common.checkpoint import load_checkpoint

    return load_checkpoint(path, map_location=map_location(opt))


def network_file_problem(path: str, param_key: Optional[str] = None) -> Optional[str]:
    """Why the network checkpoint ``path`` cannot be resumed from, or None when it loads (on the CPU)."""
    import torch

    from mpt_common.checkpoint import load_checkpoint

    if not os.path.isfile(path):
        return 'missing'
    try:
        content = load_checkpoint(path)  # weights_only=True, errors naming the file
    except Exception as err:  # noqa: BLE001 - any failure makes the pair unusable
        return f'does not load ({err})'
    if not isinstance(content, dict) or not content:
        return f'holds {type(content).__name__}, not a state dict'
    if param_key is not None and param_key in content:
        content = content[param_key]
    if not isinstance(content, dict) or not all(isinstance(v, torch.Tensor) for v in content.values()):
        return 'is not a dict of tensors'
    return None


def find_latest_complete_state(opt: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Newest loadable state in the run's ``training_states`` whose network checkpoints load, or None."""
    states_dir = opt['path']['training_states']
    for folder in (states_dir, opt['path'].get('models')):
        if folder and os.path.isdir(folder):
            remove_stale_partials(folder)  # left by a crash mid-save; never complete
    for resume_iter in list_states(states_dir):
        path = os.path.join(states_dir, f'{resume_iter}.state')
        problems = []
        for net_name, net_file in _network_files(opt, resume_iter):
            problem = network_file_problem(net_file, opt['path'].get(f'param_key_{net_name}', 'params'))
            if problem is not None:
                problems.append(f'{net_file} {problem}')
        if problems:
            warnings.warn(f'Skipping training state {path}: network checkpoint(s) unusable: {"; ".join(problems)}. '
                          'Falling back to the previous state.', RuntimeWarning, stacklevel=2)
            continue
        try:
            state = load_state_file(path, opt)
        except Exception as err:  # noqa: BLE001 - a damaged file is skipped, an older one is used
            warnings.warn(f'Skipping unreadable training state {path}: {type(err).__name__}: {err}', RuntimeWarning,
                          stacklevel=2)
            continue
        opt['path']['resume_state'] = path
        return state
    return None


def load_resume_state(opt: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Drop-in replacement for ``basicsr.train.load_resume_state`` (same options, same return value)."""
    from basicsr.utils import check_resume

    if opt['auto_resume']:
        state = find_latest_complete_state(opt)
    elif opt['path'].get('resume_state'):
        path = opt['path']['resume_state']
        if not os.path.isfile(path):
            raise FileNotFoundError(f'path.resume_state {path!r} does not exist.')
        state = load_state_file(path, opt)
    else:
        state = None
    if state is not None:
        check_resume(opt, state['iter'])
    return state
