"""Token gather whose backward is a gather too (CSWA's region partition in training, Sec. 3.1).

CSWA reorders pixels into region slots and back with ``index_select``. Autograd's backward of ``index_select`` is a
zero-filled ``index_add``; here every real pixel fills exactly one slot, so the backward is the gather by the inverse
index instead (one pass, no zero fill, no scatter). Slots that hold padding (they repeat pixel 0) must get a zero
gradient, which CSWA guarantees: padded queries' outputs are dropped and padded keys are masked to probability 0.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch.autograd.function import once_differentiable

from .custom_backward import custom_backward


class _TokenGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, src: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor,
                zero_slots: Optional[torch.Tensor]) -> torch.Tensor:
        ctx.save_for_backward(inverse, zero_slots)
        return src.index_select(1, index)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        inverse, zero_slots = ctx.saved_tensors
        out = grad.index_select(1, inverse)
        if zero_slots is not None:
            out.index_fill_(1, zero_slots, 0)
        return out, None, None, None


def gather_tokens(src: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor,
                  zero_slots: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``src.index_select(1, index)`` for ``src`` ``(B, N, C)``. Backward: the incoming gradient gathered by
    ``inverse`` (``index[inverse[p]] == p`` for every source token ``p``), then zeroed at ``zero_slots`` (source
    tokens no slot holds, e.g. padding). Exact when the gradient of every slot not named in ``inverse`` is zero."""
    if not (custom_backward(src) and src.requires_grad):
        return src.index_select(1, index)
    return _TokenGather.apply(src, index, inverse, zero_slots)
