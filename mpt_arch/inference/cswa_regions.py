"""CSWA (Eq. 1) for inference: projections on row strips, attention one group of regions at a time.

The same function as ``CrossScaleWindowAttention.forward``, without ever building a full-size gathered map: the
Q and K/V projections (with their depthwise convs and per-head normalisation) run on row strips into one buffer
each, then attention, output projection and residual run per group of regions (``RegionLayout.chunks``) and are
scattered straight back to pixels.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..cswa import CrossScaleWindowAttention
from ..head_norm import normalize_heads
from ..region_geometry import region_layout
from .strips import depthwise_rows, group_size, halo, strips


def project_strips(cswa: CrossScaleWindowAttention, t: torch.Tensor, linear: nn.Linear, conv: Optional[nn.Conv2d],
                   scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``conv(linear(t))`` (``(B, H, W, C')``) evaluated on row strips into one buffer, with its first ``C`` channels
    (Q, or K of KV) L2-normalised per head (times ``scale``)."""
    b, h, w, _ = t.shape
    dim = cswa.dim
    out = t.new_empty(b, h, w, linear.out_features)
    for i in range(b):
        for r0, r1 in strips(h, w, linear.out_features):
            if conv is None:
                part = linear(t[i:i + 1, r0:r1])
            else:
                a0, a1 = halo(r0, r1, h)
                part = depthwise_rows(linear(t[i:i + 1, a0:a1]), conv, r0, r1, h)
            normalize_heads(part[..., :dim], cswa.heads, scale, out=out[i:i + 1, r0:r1, :, :dim])
            if part.shape[-1] > dim:  # V of KV
                out[i:i + 1, r0:r1, :, dim:] = part[..., dim:]
    return out


def cswa_regions(cswa: CrossScaleWindowAttention, x: torch.Tensor,
                 residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``cswa(x, residual)`` for inference: ``x`` layer-normalised ``(B, H, W, C)``."""
    b, h, w, c = x.shape
    m, r = cswa.window_size, cswa.ratio
    heads, d, r2 = cswa.heads, c // cswa.heads, r * r
    layout = region_layout(h, w, r, m, cswa.shifted, x.device, cswa.pairing)
    q = project_strips(cswa, cswa.query_frame(x, layout), cswa.q, cswa.q_dw, cswa.attention_temperature())
    q = q.view(b, h * w, c)
    kv = project_strips(cswa, cswa.downscaled(x), cswa.kv, cswa.kv_dw).view(b, -1, 2 * c)
    lq, lk = r2 * m * m, m * m
    tiled = cswa.position_bias().to(q.dtype).repeat(1, r2, 1).unsqueeze(0)  # 1, heads, Lq, Lk
    out = torch.empty_like(x).view(b, h * w, c)
    proj_t = cswa.proj.weight.t()
    for chunk in layout.chunks(group_size(lq * c * 4)):
        n = chunk.n_regions
        # the mask in the attention inputs' dtype (SDPA's fused CUDA kernels refuse a float32 mask with bf16/fp16)
        mask = (tiled.expand(n, -1, -1, -1) if chunk.border_mask is None else
                tiled + chunk.border_mask.to(tiled.dtype))
        for i in range(b):
            qc = q[i].index_select(0, chunk.q_src).view(n, lq, heads, d).transpose(1, 2)
            kvc = kv[i].index_select(0, chunk.k_src).view(n, lk, 2, heads, d)
            kc, vc = kvc[:, :, 0].transpose(1, 2), kvc[:, :, 1].transpose(1, 2)
            att = F.scaled_dot_product_attention(qc, kc, vc, attn_mask=mask, scale=1.0)  # n, heads, Lq, d
            att = att.transpose(1, 2).reshape(n * lq, c)
            if chunk.keep is not None:  # drop queries on padding
                att = att.index_select(0, chunk.keep)
            if residual is None:
                rows = torch.mm(att, proj_t)
            else:
                rows = torch.addmm(residual[i].reshape(h * w, c).index_select(0, chunk.pixels), att, proj_t)
            out[i].index_copy_(0, chunk.pixels, rows)
    return out.view(b, h, w, c)
