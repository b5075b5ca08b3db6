"""Feature-enhancing feed-forward network (FEFN), Sec. 3.1 and Eq. (3) of the paper."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import row_strips
from .layer_norm import ChannelLayerNorm
from .linear_add import Projection, linear_add
from .row_strips import depthwise_rows, halo, strips, use_strips

RowSource = Callable[[int, int, int], torch.Tensor]


class FeatureEnhancingFFN(nn.Module):
    """FEFN, Eq. (3): ``x_hat = W_p(GELU(x2') * x1') + x1``.

    ``x1'`` = Linear(LN_a(x1)) (spatial/CSWA path), ``x2'`` = DW3x3(Conv1x1(LN_b(x2))) (channel/ISCA path), both
    ``alpha * C`` wide (``int(C * alpha)``); the shortcut is ``x1`` as in the paper (the authors' code adds the
    ISCA branch instead: ``shortcut='channel'``, used by ``MPT(compat='authors')``; docs/guides/authors_weights.md,
    difference 6). Channels-last ``(B, H, W, C)`` in and out.
    """

    def __init__(self, dim: int, expansion: float = 2.6, shortcut: str = 'spatial') -> None:
        super().__init__()
        if shortcut not in ('spatial', 'channel'):
            raise ValueError(f"FEFN shortcut must be 'spatial' (Eq. 3) or 'channel' (authors' code), got {shortcut!r}")
        self.shortcut = shortcut
        hidden = int(dim * expansion)
        if hidden < 1:
            raise ValueError(f'FEFN expansion {expansion!r} gives no hidden channels for dim {dim}')
        self.norm_spatial = ChannelLayerNorm(dim)
        self.norm_channel = ChannelLayerNorm(dim)
        self.spatial_in = Projection(dim, hidden)
        self.channel_in = Projection(dim, hidden)
        self.channel_dw = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False)
        self.proj = Projection(hidden, dim)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, reuse_x1: bool = False) -> torch.Tensor:
        """``reuse_x1=True`` lets inference (no gradient recorded) write the result into ``x1`` (a temporary of
        the caller), so no new full-size buffer is allocated."""
        if use_strips(x1):
            return self.forward_strips(x1 if reuse_x1 else torch.empty_like(x1),
                                       lambda i, r0, r1: x1[i:i + 1, r0:r1], lambda i, r0, r1: x2[i:i + 1, r0:r1])
        gate = self.channel_dw(self.channel_in(self.norm_channel(x2)).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return linear_add(F.gelu(gate) * self.spatial_in(self.norm_spatial(x1)), self.proj.weight,
                          x2 if self.shortcut == 'channel' else x1)

    def forward_strips(self, out: torch.Tensor, x1_rows: RowSource, x2_rows: RowSource) -> torch.Tensor:
        """Inference, one row strip at a time (``row_strips``), into ``out`` ``(B, H, W, C)``. ``x1_rows(i, r0, r1)``
        and ``x2_rows(i, r0, r1)`` give rows ``r0..r1`` of batch item ``i`` of the inputs as ``(1, rows, W, C)``;
        ``x1_rows`` may return ``out``'s own rows (each strip reads them before writing them)."""
        b, h, w, c = out.shape
        hidden = self.proj.in_features
        for i in range(b):
            for r0, r1 in strips(h, w, hidden):
                a0, a1 = halo(r0, r1, h)
                x2 = x2_rows(i, a0, a1)
                gate = depthwise_rows(self.channel_in(self.norm_channel(x2)), self.channel_dw, r0, r1, h, gelu=True)
                x1 = x1_rows(i, r0, r1)
                act = gate.mul_(self.spatial_in(self.norm_spatial(x1))).reshape(-1, hidden)
                rows = out[i, r0:r1].view(-1, c)
                if self.shortcut == 'channel':  # the authors' shortcut: rows r0..r1 of the ISCA branch
                    torch.addmm(x2[:, r0 - a0:r1 - a0].reshape(-1, c), act, self.proj.weight.t(), out=rows)
                elif row_strips.FUSED_KERNELS and x1.data_ptr() == rows.data_ptr():  # rows already hold x1
                    rows.addmm_(act, self.proj.weight.t())
                else:  # addmm with out= copies x1 into rows first (and FlopCounterMode counts it)
                    torch.addmm(x1.reshape(-1, c), act, self.proj.weight.t(), out=rows)
        return out
