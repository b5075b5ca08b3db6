"""Loading checkpoints safely, wherever the plugin loads one (training, testing, ``mpt-deblur``, scripts).

* always ``torch.load(..., weights_only=True)``: a checkpoint is data, never code;
* a missing, empty, truncated, corrupt or foreign file raises :class:`CheckpointError` naming the file, what was
  expected and what was found; torch's own advice to retry with ``weights_only=False`` (which would execute
  whatever the file contains) is never passed on;
* :func:`check_finite` rejects parameters holding NaN or infinity (they would write black images silently).

:func:`load_network` replaces BasicSR's ``BaseModel.load_network`` (``path.pretrain_network_g`` in training and
``scripts/test.py``); installed by :func:`mpt_plugin.patches.apply`.
"""

from __future__ import annotations

import os
import pickle
from typing import Any, Dict, Mapping

from mpt_common.messages import preview

EXPECTED = ('a PyTorch checkpoint written by torch.save holding tensors (a BasicSR net_g_*.pth with '
            "'params'/'params_ema', a training .state, or a bare state dict)")


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message names the file, what was expected and what was found."""


def _cause(err: BaseException) -> str:
    """A short description of why torch.load failed, without torch's weights_only=False advice."""
    if isinstance(err, pickle.UnpicklingError) or 'weights_only' in str(err).lower():
        return ('it holds Python objects other than tensors and plain containers; they are refused because '
                'unpickling them could run arbitrary code. Re-save the tensors with '
                "torch.save({'params': net.state_dict()}, path)")
    if isinstance(err, EOFError):
        return 'the file ends early (truncated)'
    first = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
    if 'zip archive' in first or 'central directory' in first or 'magic number' in first.lower():
        return f'the file is truncated or corrupt ({first})'
    return f'{type(err).__name__}: {first}'


def load_checkpoint(path: str, map_location: Any = 'cpu') -> Any:
    """``torch.load(path, weights_only=True)`` with errors that name ``path`` and the cause."""
    import torch

    if not os.path.exists(path):
        raise CheckpointError(f'Checkpoint {path!r} does not exist.')
    if not os.path.isfile(path):
        raise CheckpointError(f'Checkpoint {path!r} is not a file; expected {EXPECTED}.')
    if os.path.getsize(path) == 0:
        raise CheckpointError(f'Checkpoint {path!r} is empty (0 bytes); expected {EXPECTED}.')
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except OSError as err:
        raise CheckpointError(f'Cannot read checkpoint {path!r}: {err.strerror or err}.') from None
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError, ValueError, ...
        raise CheckpointError(f'Cannot load checkpoint {path!r}: expected {EXPECTED}, but {_cause(err)}.') from None


def check_finite(state: Mapping[str, Any], path: str, show: int = 3) -> None:
    """Raise :class:`CheckpointError` when floating-point tensors of ``state`` hold NaN or infinite values."""
    import torch

    bad = [k for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point()
           and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f'Checkpoint {path!r} has NaN or infinite values in {len(bad)} tensor(s): '
                              f'{preview(bad, show)}; training probably diverged. Use an earlier '
                              'checkpoint.')


def select_params(ckpt: Any, path: str, param_key: Any = 'auto') -> Dict[str, Any]:
    """The parameter dict of a checkpoint: ``params_ema``/``params`` (``'auto'``), a named key, or bare (None)."""
    import torch

    if not isinstance(ckpt, dict):
        raise CheckpointError(f'Checkpoint {path!r} holds a {type(ckpt).__name__}; expected {EXPECTED}.')
    if param_key == 'auto':
        param_key = next((k for k in ('params_ema', 'params') if isinstance(ckpt.get(k), dict)), None)
    elif param_key and param_key not in ckpt:
        fallback = 'params' if isinstance(ckpt.get('params'), dict) else None
        if param_key != 'params_ema' or fallback is None:  # BasicSR falls back from params_ema to params
            raise CheckpointError(f'Checkpoint {path!r} has no {param_key!r} entry (keys: {sorted(ckpt)[:10]}).')
        param_key = fallback
    state = ckpt[param_key] if param_key else ckpt
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f'Checkpoint {path!r} is neither a BasicSR checkpoint (params/params_ema) nor a '
                              f'state dict of tensors (keys: {sorted(map(str, ckpt))[:10]}).')
    return {(k[7:] if k.startswith('module.') else k): v for k, v in state.items()}


def load_network(self, net, load_path: str, strict: bool = True, param_key: str = 'params') -> None:  # noqa: ANN001
    """Drop-in for BasicSR's ``BaseModel.load_network`` through :func:`load_checkpoint` (same semantics)."""
    from basicsr.utils import get_root_logger

    net = self.get_bare_model(net)
    state = select_params(load_checkpoint(load_path), load_path, param_key)
    check_finite(state, load_path)
    get_root_logger().info(f'Loading {net.__class__.__name__} model from {load_path}, with param key: '
                           f'[{param_key}].')
    self._print_different_keys_loading(net, state, strict)
    net.load_state_dict(state, strict=strict)
