"""Feature-enhancing feed-forward network (FEFN), Sec. 3.1 and Eq. (3) of the paper."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .linear_add import linear_add


class FeatureEnhancingFFN(nn.Module):
    """FEFN, Eq. (3): ``x_hat = W_p(GELU(x2') * x1') + x1``.

    ``x1'`` = Linear(LN_a(x1)) (spatial/CSWA path), ``x2'`` = DW3x3(Conv1x1(LN_b(x2))) (channel/ISCA path), both
    ``alpha * C`` wide (``int(C * alpha)``); the shortcut is ``x1`` as in the paper (the authors' code adds the
    ISCA branch instead). Channels-last ``(B, H, W, C)`` in and out.
    """

    def __init__(self, dim: int, expansion: float = 2.6) -> None:
        super().__init__()
        hidden = int(dim * expansion)
        if hidden < 1:
            raise ValueError(f'FEFN expansion {expansion!r} gives no hidden channels for dim {dim}')
        self.norm_spatial = nn.LayerNorm(dim)
        self.norm_channel = nn.LayerNorm(dim)
        self.spatial_in = nn.Linear(dim, hidden, bias=False)
        self.channel_in = nn.Linear(dim, hidden, bias=False)
        self.channel_dw = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False)
        self.proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, reuse_x1: bool = False) -> torch.Tensor:
        """``reuse_x1=True`` lets inference (no gradient recorded) write the result into ``x1`` (a temporary of
        the caller), so no new full-size buffer is allocated and paged in."""
        gate = self.channel_dw(self.channel_in(self.norm_channel(x2)).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        spatial = self.spatial_in(self.norm_spatial(x1))
        if torch.is_grad_enabled():
            return linear_add(F.gelu(gate) * spatial, self.proj.weight, x1)
        hidden = torch._C._nn.gelu_(gate).mul_(spatial)  # inference: in place on the fresh conv output
        if not reuse_x1:
            return linear_add(hidden, self.proj.weight, x1)
        x1_2d = x1.view(-1, x1.shape[-1])  # out= (not addmm_) keeps the op visible to FlopCounterMode as addmm
        return torch.addmm(x1_2d, hidden.view(-1, hidden.shape[-1]), self.proj.weight.t(), out=x1_2d).view(x1.shape)
