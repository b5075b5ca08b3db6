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
        q, k, v = qkv.split(c, dim=-1)  # split (not slicing): its backward concatenates instead of zero-filling
        # spatial L2 norms; square().sum() is ~2x faster than vector_norm over this strided axis on CPU
        inv_q = q.square().sum(1).clamp_min(1e-24).rsqrt()  # b, c
        inv_k = k.square().sum(1).clamp_min(1e-24).rsqrt()
        scale = inv_q.view(b, heads, d, 1) * inv_k.view(b, heads, 1, d) * self.temperature  # b, heads, d, d
        outs = []
        # per-head strided views (split, whose backward concatenates) go to bmm without copies
        for hd, (qh, kh, vh) in enumerate(zip(q.split(d, -1), k.split(d, -1), v.split(d, -1))):
            attn = (torch.bmm(qh.transpose(1, 2), kh) * scale[:, hd]).softmax(-1)  # b, d, d
            outs.append(torch.bmm(vh, attn.transpose(1, 2)))  # b, hw, d
        out = (outs[0] if heads == 1 else torch.cat(outs, -1)).view(b, h, w, c)
        return linear_add(out, self.proj.weight, residual)
