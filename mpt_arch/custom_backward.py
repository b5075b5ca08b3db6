"""When MPT's hand-written autograd functions apply (``token_gather``, ``head_norm``, ``layer_norm``,
``linear_add.Projection``, ISCA's one-head product): the one switch of the backward path.

They compute their backward in the dtypes of the saved tensors. The layers use PyTorch's own autograd ops instead
(the same function, the generic backward) under autocast (whose casts the functions would not see), while
``torch.compile`` traces (compiled through with the plain ops), and inside :func:`plain_autograd` (tracing for
TorchScript export, comparisons).
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

import torch

_PLAIN = contextvars.ContextVar('mpt_plain_autograd', default=False)


@contextlib.contextmanager
def plain_autograd() -> Iterator[None]:
    """Within the block (this thread or task only), every layer uses PyTorch's autograd ops."""
    token = _PLAIN.set(True)
    try:
        yield
    finally:
        _PLAIN.reset(token)


def custom_backward(t: torch.Tensor) -> bool:
    """True when gradients are being recorded, autocast is off for ``t``'s device, no compiler is tracing and no
    :func:`plain_autograd` block is active."""
    if torch.compiler.is_compiling():
        return False
    return torch.is_grad_enabled() and not _PLAIN.get() and not torch.is_autocast_enabled(t.device.type)
