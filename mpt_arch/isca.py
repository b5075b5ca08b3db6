"""Intra-scale channel attention (ISCA), Sec. 3.1 and Eq. (2) of the paper."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .linear_add import linear_add


class IntraScaleChannelAttention(nn.Module):
    """ISCA: per-head ``(C/h x C/h)`` channel attention over the whole map (Eq. 2).

    Q = DW3x3(Conv1x1(C->C)), K, V = DW3x3(Conv1x1(C->2C)) (computed as one fused 1x1 + depthwise pass, which is
    the same operation and parameter count); q and k are L2-normalised along the spatial axis (applied to the small
    ``d x d`` product instead of the maps), scaled by a learnable per-head temperature, softmax-ed and applied to V;
    output Linear(C->C). Input and output are channels-last ``(B, H, W, C)``.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f'ISCA dim {dim} is not divisible by heads {heads}')
        self.dim, self.heads = dim, heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.qkv_dw = nn.Conv2d(3 * dim, 3 * dim, 3, padding=1, groups=3 * dim, bias=False)
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x``: layer-normalised ``(B, H, W, C)``; returns ``(B, H, W, C)`` (``+ residual`` if given)."""
        b, h, w, c = x.shape
        heads, d = self.heads, c // self.heads
        qkv = self.qkv_dw(self.qkv(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).reshape(b, h * w, 3 * c)
        inv_norm = torch.linalg.vector_norm(qkv[..., :2 * c], dim=1).clamp_min(1e-12).reciprocal()  # b, 2c
        inv_q, inv_k = inv_norm[:, :c].view(b, heads, d, 1), inv_norm[:, c:].view(b, heads, 1, d)
        q = qkv[..., :c].view(b, h * w, heads, d).permute(0, 2, 3, 1)  # b, heads, d, hw
        k = qkv[..., c:2 * c].view(b, h * w, heads, d).permute(0, 2, 1, 3)  # b, heads, hw, d
        v = qkv[..., 2 * c:].view(b, h * w, heads, d).permute(0, 2, 1, 3)
        attn = ((q @ k) * (inv_q * inv_k * self.temperature)).softmax(-1)  # b, heads, d, d
        out = (v @ attn.transpose(-2, -1)).permute(0, 2, 1, 3).reshape(b, h, w, c)
        return linear_add(out, self.proj.weight, residual)
