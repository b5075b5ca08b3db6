"""ISCA (Eq. 2) for inference: two passes over row strips, no full-size Q, K or 3C-wide map.

The first pass accumulates the per-head products ``q_h^T k_h`` and the squared spatial norms and keeps only V;
:meth:`IntraScaleChannelAttention.mixing` turns them into the ``C x C`` matrix ``M``; the output is ``V M``.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from ..isca import IntraScaleChannelAttention
from .strips import depthwise_rows, halo, strips


def values_and_mixing(isca: IntraScaleChannelAttention, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """V ``(B, H*W, C)`` and the mixing matrix ``M`` ``(B, C, C)`` of ``x`` ``(B, H, W, C)``, one strip at a time."""
    b, h, w, c = x.shape
    heads, d = isca.heads, c // isca.heads
    gram = x.new_zeros(b, heads, d, d)
    sq = x.new_zeros(b, 2 * c)  # squared spatial norms of q and k
    values = x.new_empty(b, h * w, c)
    for i in range(b):
        for r0, r1 in strips(h, w, 3 * c):
            a0, a1 = halo(r0, r1, h)
            qkv = depthwise_rows(isca.qkv(x[i:i + 1, a0:a1]), isca.qkv_dw, r0, r1, h).reshape(-1, 3 * c)
            q, k, v = qkv.split(c, dim=-1)
            n = q.shape[0]  # all heads' q_h^T k_h in one batched product on strided views (no copies)
            gram[i].baddbmm_(q.view(n, heads, d).permute(1, 2, 0), k.view(n, heads, d).transpose(0, 1))
            values[i, r0 * w:r1 * w] = v
            sq[i] += qkv[:, :2 * c].square_().sum(0)  # q and k are no longer needed
    return values, isca.mixing(gram, sq[:, :c], sq[:, c:])


def output_rows(values: torch.Tensor, mixing: torch.Tensor, residual: torch.Tensor, i: int, r0: int,
                r1: int) -> torch.Tensor:
    """Rows ``r0..r1`` of batch item ``i`` of ``residual + V M`` as a ``(1, r1 - r0, W, C)`` tensor."""
    w, c = residual.shape[2:]
    rows = torch.addmm(residual[i, r0:r1].reshape(-1, c), values[i, r0 * w:r1 * w], mixing[i])
    return rows.view(1, r1 - r0, w, c)


def isca_strips(isca: IntraScaleChannelAttention, x: torch.Tensor,
                residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``isca(x, residual)`` for inference: :func:`values_and_mixing`, then one product for the whole map."""
    return isca.mixed(*values_and_mixing(isca, x), residual, x.shape)
