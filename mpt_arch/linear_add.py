"""Bias-free linear projection fused with a residual addition (one GEMM with beta = 1 instead of GEMM + add)."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def linear_add(x: torch.Tensor, weight: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``x @ weight.T (+ residual)`` over the last dim of a channels-last tensor; ``residual`` has the output shape."""
    if residual is None:
        return F.linear(x, weight)
    out_shape = residual.shape
    out = torch.addmm(residual.reshape(-1, out_shape[-1]), x.reshape(-1, x.shape[-1]), weight.t())
    return out.view(out_shape)
