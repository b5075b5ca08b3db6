"""Feature-enhancing feed-forward network (FEFN), Sec. 3.1 and Eq. (3) of the paper."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layer_norm import ChannelLayerNorm
from .linear_add import Projection, linear_add


class FeatureEnhancingFFN(nn.Module):
    """FEFN, Eq. (3): ``x_hat = W_p(GELU(x2') * x1') + x1``.

    ``x1'`` = Linear(LN_a(x1)) (spatial/CSWA path), ``x2'`` = DW3x3(Conv1x1(LN_b(x2))) (channel/ISCA path), both
    ``alpha * C`` wide (``int(C * alpha)``); the shortcut is ``x1`` as in the paper (the authors' code adds the
    ISCA branch instead: ``authors_compat.AuthorsFEFN``). Channels-last ``(B, H, W, C)`` in and out. Inference on
    the CPU evaluates the same function one row strip at a time (``mpt_arch.inference``).
    """

    def __init__(self, dim: int, expansion: float = 2.6) -> None:
        super().__init__()
        hidden = int(dim * expansion)
        if hidden < 1:
            raise ValueError(f'FEFN expansion {expansion!r} gives no hidden channels for dim {dim}')
        self.norm_spatial = ChannelLayerNorm(dim)
        self.norm_channel = ChannelLayerNorm(dim)
        self.spatial_in = Projection(dim, hidden)
        self.channel_in = Projection(dim, hidden)
        self.channel_dw = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False)
        self.proj = Projection(hidden, dim)

    def shortcut_of(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """The term Eq. (3) adds to the projected product: ``x1``."""
        return x1

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        gate = self.channel_dw(self.channel_in(self.norm_channel(x2)).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return linear_add(F.gelu(gate) * self.spatial_in(self.norm_spatial(x1)), self.proj.weight,
                          self.shortcut_of(x1, x2))
