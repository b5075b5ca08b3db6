"""Cross-scale window attention (CSWA), Sec. 3.1 and Eq. (1) of the paper."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .region_geometry import (
    merge_queries,
    partition_keys,
    partition_queries,
    region_coordinates,
    region_mask,
    relative_position_index,
)


def scale_ratio(scale: float) -> int:
    """``1/scale`` as an int power of two; raises ``ValueError`` unless ``scale`` is ``1/2^k``."""
    if not isinstance(scale, (int, float)) or scale <= 0 or scale > 1:
        raise ValueError(f'CSWA scale must be 1/2^k with 0 < scale <= 1, got {scale!r}')
    ratio = round(1.0 / scale)
    if abs(ratio * scale - 1.0) > 1e-6 or ratio & (ratio - 1):
        raise ValueError(f'CSWA scale must be 1/2^k (1, 1/2, 1/4, 1/8, ...), got {scale!r}')
    return ratio


class CrossScaleWindowAttention(nn.Module):
    """CSWA: local query windows attend to key/value windows of a down-scaled map (Sec. 3.1, Eq. 1).

    With ``r = 1/scale`` and window width ``M``: the map is average-pooled by ``r`` and passed through
    ``y + Linear(y)`` (down-sampling module, none when ``r = 1``); Q = NPConv(Linear(x)) on the full-resolution
    map, K, V = NPConv(Linear(y)) on the down-scaled map (NPConv = depthwise 3x3 on the whole map, so windows see
    their neighbours). Cross-scale multiplication: the key window ``(I, J)`` of the down-scaled map serves the
    ``r x r`` query windows ``(i, j)`` with ``(i // r, j // r) == (I, J)``, i.e. the same ``R x R`` image region,
    ``R = r M``. All ``r^2 M^2`` queries of a region form one sequence against the region's ``M^2`` keys, so K/V
    are never replicated. Attention is cosine attention times a learnable per-head temperature plus a Swin
    relative position bias (indexed by the position of the query inside its own ``M x M`` window).

    Shifted windows (``shifted=True``): the full-resolution map is rolled by ``R/2`` and the down-scaled map by
    ``M/2`` (after the NPConvs, so the depthwise convs see no seam); pooling commutes with this roll, so the
    region correspondence holds; Swin-style labels mask pairs across the seam in both resolutions.

    Any size: the maps are zero-padded to whole regions here and padded keys are masked; queries on padding are
    dropped. Pooling uses ``ceil_mode`` so a border key averages only real pixels.

    Analysis hooks: set ``keep_attention = True`` to compute attention explicitly and keep, for the last call,
    ``last_attention`` (softmax weights ``(B, nRegions, heads, r^2 M^2, M^2)``), ``last_query_xy``
    ``(nRegions, r^2 M^2, 2)`` and ``last_key_xy`` ``(nRegions, M^2, 2)`` (float ``(x, y)`` pixel coordinates in the
    layer input's full-resolution frame, a key at the centre of the ``r x r`` block it averages; padded positions
    lie at or beyond ``last_map_size``), ``last_query_valid`` ``(nRegions, r^2 M^2)`` bool (query is not padding)
    and ``last_map_size = (H', W')``.
    """

    def __init__(self, dim: int, heads: int, scale: float, window_size: int = 8, shifted: bool = False) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f'CSWA dim {dim} is not divisible by heads {heads}')
        if window_size < 2 or window_size % 2:
            raise ValueError(f'window_size must be an even integer >= 2, got {window_size!r}')
        self.dim, self.heads, self.window_size, self.shifted = dim, heads, window_size, shifted
        self.ratio = scale_ratio(scale)
        self.down_proj = nn.Linear(dim, dim, bias=False) if self.ratio > 1 else None
        self.q = nn.Linear(dim, dim, bias=False)
        self.q_dw = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False)
        self.kv = nn.Linear(dim, 2 * dim, bias=False)
        self.kv_dw = nn.Conv2d(2 * dim, 2 * dim, 3, padding=1, groups=2 * dim, bias=False)
        self.logit_scale = nn.Parameter(torch.full((heads,), math.log(10.0)))
        self.rpb_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, heads))
        nn.init.trunc_normal_(self.rpb_table, std=0.02)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.register_buffer('rp_index', relative_position_index(window_size), persistent=False)
        self._mask_cache: dict = {}
        self.keep_attention = False
        self.last_attention = self.last_query_xy = self.last_key_xy = self.last_query_valid = None
        self.last_map_size = None

    def extra_repr(self) -> str:
        return f'dim={self.dim}, heads={self.heads}, scale=1/{self.ratio}, M={self.window_size}, shifted={self.shifted}'

    @staticmethod
    def _dwconv(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
        """Depthwise conv on a channels-last ``(B, H, W, C)`` tensor (the permuted view is channels_last memory)."""
        return conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    def _bias(self) -> torch.Tensor:
        """Relative position bias ``(heads, M^2, M^2)``."""
        m2 = self.window_size**2
        return self.rpb_table[self.rp_index.view(-1)].view(m2, m2, self.heads).permute(2, 0, 1)

    def _cached_mask(self, q_size, k_size, k_valid, device, dtype):
        key = (q_size, k_size, k_valid, device, dtype)
        if key not in self._mask_cache:
            if len(self._mask_cache) > 8:
                self._mask_cache.clear()
            self._mask_cache[key] = region_mask(
                q_size, k_size, k_valid, self.ratio, self.window_size, self.shifted, device, dtype
            )
        return self._mask_cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: layer-normalised features ``(B, H, W, C)``; returns ``(B, H, W, C)``."""
        b, h, w, c = x.shape
        m, r, heads = self.window_size, self.ratio, self.heads
        q = self._dwconv(self.q(x), self.q_dw)
        if r > 1:
            y = F.avg_pool2d(x.permute(0, 3, 1, 2), r, r, ceil_mode=True).permute(0, 2, 3, 1)
            y = y + self.down_proj(y)
        else:
            y = x
        kv = self._dwconv(self.kv(y), self.kv_dw)
        hk, wk = kv.shape[1:3]
        hkp, wkp = -(-hk // m) * m, -(-wk // m) * m
        hp, wp = hkp * r, wkp * r
        if (hp, wp) != (h, w):
            q = F.pad(q, (0, 0, 0, wp - w, 0, hp - h))
        if (hkp, wkp) != (hk, wk):
            kv = F.pad(kv, (0, 0, 0, wkp - wk, 0, hkp - hk))
        if self.shifted:
            q = torch.roll(q, (-(m * r // 2), -(m * r // 2)), (1, 2))
            kv = torch.roll(kv, (-(m // 2), -(m // 2)), (1, 2))
        q = partition_queries(q, r, m, heads)
        k, v = partition_keys(kv, m, heads)
        temperature = self.logit_scale.clamp(max=math.log(100.0)).exp().view(1, heads, 1, 1)
        q = F.normalize(q, dim=-1) * temperature
        k = F.normalize(k, dim=-1)
        mask = self._cached_mask((hp, wp), (hkp, wkp), (hk, wk), x.device, q.dtype)
        bias = self._bias().to(q.dtype)  # heads, M^2, M^2
        n_regions = q.shape[0] // b
        if self.keep_attention:
            out = self._explicit_attention(q, k, v, bias, mask, b, n_regions, (hp, wp), (hkp, wkp), (h, w))
        else:
            attn_mask = bias.repeat(1, r * r, 1)  # heads, r^2 M^2, M^2: tiled over the r^2 query windows
            if mask is not None:
                attn_mask = (attn_mask + mask).repeat(b, 1, 1, 1) if b > 1 else attn_mask + mask
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=1.0)
        out = merge_queries(out, b, hp, wp, r, m)
        if self.shifted:
            out = torch.roll(out, (m * r // 2, m * r // 2), (1, 2))
        if (hp, wp) != (h, w):
            out = out[:, :h, :w]
        return self.proj(out)

    def _explicit_attention(self, q, k, v, bias, mask, b, n_regions, q_size, k_size, map_size):
        """Softmax(q k^T + B + mask) v with the weights kept for analysis (same result as the SDPA path)."""
        r2 = self.ratio**2
        attn = q @ k.transpose(-2, -1)  # B*nR, heads, Lq, Lk
        attn = attn.view(b * n_regions, self.heads, r2, bias.shape[1], bias.shape[2]) + bias.unsqueeze(1)
        attn = attn.view(b, n_regions, self.heads, q.shape[2], k.shape[2])
        if mask is not None:
            attn = attn + mask
        attn = attn.softmax(-1)
        self.last_attention = attn.detach()
        qxy, kxy = region_coordinates(q_size, k_size, self.ratio, self.window_size, self.shifted)
        self.last_query_xy, self.last_key_xy = qxy.to(q.device), kxy.to(q.device)
        self.last_query_valid = (qxy[..., 0] < map_size[1]) & (qxy[..., 1] < map_size[0])
        self.last_map_size = tuple(map_size)
        return attn.view(b * n_regions, self.heads, q.shape[2], k.shape[2]) @ v
