"""Pyramid sub-block and pyramid block (Sec. 3.1, Fig. 2)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .cswa import CrossScaleWindowAttention
from .fefn import FeatureEnhancingFFN
from .isca import IntraScaleChannelAttention


class PyramidSubBlock(nn.Module):
    """One sub-block: ``y = LN(x)``; ``x1 = x + CSWA(y)``; ``x2 = x + ISCA(y)``; ``out = FEFN(x1, x2)``."""

    def __init__(
        self, dim: int, heads: int, scale: float, window_size: int, shifted: bool, ffn_expansion: float
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.cswa = CrossScaleWindowAttention(dim, heads, scale, window_size, shifted)
        self.isca = IntraScaleChannelAttention(dim, heads)
        self.fefn = FeatureEnhancingFFN(dim, ffn_expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x)
        return self.fefn(self.cswa(y, residual=x), self.isca(y, residual=x))


class PyramidBlock(nn.Module):
    """Stack of sub-blocks with coarse-to-fine scales; sub-blocks 2, 4, 6, ... use shifted windows."""

    def __init__(
        self, dim: int, heads: int, scales: Sequence[float], window_size: int, ffn_expansion: float
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            PyramidSubBlock(dim, heads, s, window_size, shifted=j % 2 == 1, ffn_expansion=ffn_expansion)
            for j, s in enumerate(scales)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x
