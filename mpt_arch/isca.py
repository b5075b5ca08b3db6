"""Intra-scale channel attention (ISCA), Sec. 3.1 and Eq. (2) of the paper."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class IntraScaleChannelAttention(nn.Module):
    """ISCA: per-head ``(C/h x C/h)`` channel attention over the whole map (Eq. 2).

    Q = DW3x3(Conv1x1(C->C)), K, V = DW3x3(Conv1x1(C->2C)) (computed as one fused 1x1 + depthwise pass, which is
    the same operation and parameter count); q and k are L2-normalised along the spatial axis, their product is
    scaled by a learnable per-head temperature, softmax-ed and applied to V; output Linear(C->C).
    Input and output are channels-last ``(B, H, W, C)``.
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        heads, d = self.heads, c // self.heads
        qkv = self.qkv_dw(self.qkv(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).reshape(b, h * w, 3 * c)
        q, k, v = qkv.split(c, dim=-1)
        q = F.normalize(q, dim=1).view(b, h * w, heads, d).permute(0, 2, 3, 1)  # b, heads, d, hw
        k = F.normalize(k, dim=1).view(b, h * w, heads, d).permute(0, 2, 1, 3)  # b, heads, hw, d
        attn = ((q @ k) * self.temperature).softmax(-1)  # b, heads, d, d
        v = v.view(b, h * w, heads, d).permute(0, 2, 1, 3)  # b, heads, hw, d
        out = (v @ attn.transpose(-2, -1)).permute(0, 2, 1, 3).reshape(b, h, w, c)
        return self.proj(out)
