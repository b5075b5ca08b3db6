"""FEFN (Eq. 3) for inference, one row strip at a time, into a buffer the caller may share with ``x1``."""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ..fefn import FeatureEnhancingFFN
from .strips import depthwise_rows, fused_kernels, halo, strips

RowSource = Callable[[int, int, int], torch.Tensor]
"""``rows(i, r0, r1)``: rows ``r0..r1`` of batch item ``i`` of a ``(B, H, W, C)`` map, as ``(1, rows, W, C)``."""


def fefn_rows(fefn: FeatureEnhancingFFN, out: torch.Tensor, x1_rows: RowSource, x2_rows: RowSource) -> torch.Tensor:
    """``fefn(x1, x2)`` into ``out`` ``(B, H, W, C)``, the inputs given row by row; ``x1_rows`` may return ``out``'s
    own rows (each strip reads them before writing them)."""
    b, h, w, c = out.shape
    hidden = fefn.proj.in_features
    proj_t = fefn.proj.weight.t()
    for i in range(b):
        for r0, r1 in strips(h, w, hidden):
            a0, a1 = halo(r0, r1, h)
            x2 = x2_rows(i, a0, a1)
            gate = depthwise_rows(fefn.channel_in(fefn.norm_channel(x2)), fefn.channel_dw, r0, r1, h, gelu=True)
            x1 = x1_rows(i, r0, r1)
            act = gate.mul_(fefn.spatial_in(fefn.norm_spatial(x1))).reshape(-1, hidden)
            rows = out[i, r0:r1].view(-1, c)
            shortcut = fefn.shortcut_of(x1, x2[:, r0 - a0:r1 - a0])
            if fused_kernels() and shortcut.data_ptr() == rows.data_ptr():  # rows already hold the shortcut
                rows.addmm_(act, proj_t)
            else:  # addmm with out= copies the shortcut into rows first (and FlopCounterMode counts it)
                torch.addmm(shortcut.reshape(-1, c), act, proj_t, out=rows)
    return out


def fefn_strips(fefn: FeatureEnhancingFFN, x1: torch.Tensor, x2: torch.Tensor,
                out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``fefn(x1, x2)`` for inference, into ``out`` (a new buffer by default; ``out=x1`` reuses a temporary)."""
    return fefn_rows(fefn, torch.empty_like(x1) if out is None else out,
                     lambda i, r0, r1: x1[i:i + 1, r0:r1], lambda i, r0, r1: x2[i:i + 1, r0:r1])
