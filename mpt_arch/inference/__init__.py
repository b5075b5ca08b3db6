"""How MPT is evaluated when no gradient is recorded on the CPU: the one boundary of the speed paths.

The paper's math, with autograd, lives in ``cswa.py``, ``isca.py``, ``fefn.py`` and ``pyramid_block.py``; this
package evaluates the same functions by row strips and region groups, so float32 inference on a CPU keeps its
intermediates in cache and never builds a full-size gathered, attention-output or 3C-wide map. ``MPT.forward`` asks
:func:`evaluator` once per call.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..pyramid_block import SubBlockEvaluator
from .strips import countable_kernels
from .sub_block import evaluate_sub_block

__all__ = ['countable_kernels', 'evaluate_sub_block', 'evaluator', 'use_strips']


def use_strips(t: torch.Tensor) -> bool:
    """The one choice of the evaluation path, per device, dtype and grad mode: row strips for float32 inference on
    the CPU (no gradient recorded, no autocast); the modules' own forward (whole maps) everywhere else: on CUDA,
    where one large kernel beats many small ones, under autocast (whose casts the strips' buffers of the input's
    dtype would not match), for half-precision weights and in training."""
    return (t.device.type == 'cpu' and t.dtype == torch.float32 and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled(t.device.type))


def evaluator(t: torch.Tensor) -> Optional[SubBlockEvaluator]:
    """:func:`evaluate_sub_block` where :func:`use_strips` holds for the features ``t``, else ``None`` (the modules'
    own forward)."""
    return evaluate_sub_block if use_strips(t) else None
