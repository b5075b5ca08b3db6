"""When MPT's hand-written autograd functions apply (``token_gather``, ``head_norm``, ``layer_norm``,
``linear_add.Projection``, ISCA's one-head product).

They compute their backward in the dtypes of the saved tensors. Under autocast, whose casts they would not see,
the layers use PyTorch's own autograd ops instead (the same function, the generic backward).
"""

from __future__ import annotations

import torch


def custom_backward(t: torch.Tensor) -> bool:
    """True when gradients are being recorded and autocast is off for ``t``'s device."""
    return torch.is_grad_enabled() and not torch.is_autocast_enabled(t.device.type)
