"""Geometry of cross-scale windows (Sec. 3.1, CSWA): region partition, relative positions, shift/padding masks.

Conventions. A CSWA layer with scale ``s = 1/r`` pairs an ``M x M`` key window of the down-scaled map with the
``r x r`` query windows that cover the same ``R x R`` region (``R = r * M``) of the full-resolution map. Queries
of one region are ordered ``(window row, window col, row in window, col in window)``, keys of one region
``(row in window, col in window)``; regions are ordered in raster order. All maps are channels-last ``(B, H, W, C)``.
"""

from __future__ import annotations

import torch

MASK_VALUE = -1.0e4  # additive mask value: exp() underflows to 0 in float32/bf16, still finite in float16


def relative_position_index(window_size: int) -> torch.Tensor:
    """Swin-style index into a ``(2M-1)^2`` bias table for every (query, key) pair of an ``M x M`` window."""
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing='ij'))
    coords = coords.flatten(1)  # 2, M^2
    rel = coords[:, :, None] - coords[:, None, :] + window_size - 1  # 2, M^2, M^2 (non-negative)
    return rel[0] * (2 * window_size - 1) + rel[1]


def partition_queries(q: torch.Tensor, ratio: int, window_size: int, heads: int) -> torch.Tensor:
    """``(B, Hp, Wp, C)`` -> ``(B * nRegions, heads, r^2 * M^2, C / heads)`` (query order described above)."""
    b, hp, wp, c = q.shape
    m, r = window_size, ratio
    nh, nw = hp // (r * m), wp // (r * m)
    q = q.view(b, nh, r, m, nw, r, m, heads, c // heads)
    q = q.permute(0, 1, 4, 7, 2, 5, 3, 6, 8)  # b, nh, nw, heads, r, r, m, m, d
    return q.reshape(b * nh * nw, heads, r * r * m * m, c // heads)


def merge_queries(x: torch.Tensor, batch: int, hp: int, wp: int, ratio: int, window_size: int) -> torch.Tensor:
    """Inverse of :func:`partition_queries`: ``(B * nRegions, heads, r^2 M^2, d)`` -> ``(B, Hp, Wp, C)``."""
    m, r = window_size, ratio
    nh, nw = hp // (r * m), wp // (r * m)
    heads, d = x.shape[1], x.shape[-1]
    x = x.view(batch, nh, nw, heads, r, r, m, m, d)
    x = x.permute(0, 1, 4, 6, 2, 5, 7, 3, 8)  # b, nh, r, m, nw, r, m, heads, d
    return x.reshape(batch, hp, wp, heads * d)


def partition_keys(kv: torch.Tensor, window_size: int, heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, hp, wp, 2C)`` -> K, V each ``(B * nRegions, heads, M^2, C / heads)``."""
    b, hp, wp, c2 = kv.shape
    m = window_size
    nh, nw = hp // m, wp // m
    d = c2 // (2 * heads)
    kv = kv.view(b, nh, m, nw, m, 2, heads, d).permute(5, 0, 1, 3, 6, 2, 4, 7)  # 2, b, nh, nw, heads, m, m, d
    kv = kv.reshape(2, b * nh * nw, heads, m * m, d)
    return kv[0], kv[1]


def _shift_labels(length: int, region: int, shift: int) -> torch.Tensor:
    """Swin-style labels along one axis of a rolled map: 0 = body, 1 = last region before the seam, 2 = wrapped."""
    labels = torch.zeros(length, dtype=torch.long)
    if shift:
        labels[length - region:length - shift] = 1
        labels[length - shift:] = 2
    return labels


def region_mask(
    q_size: tuple[int, int],
    k_size: tuple[int, int],
    k_valid: tuple[int, int],
    ratio: int,
    window_size: int,
    shifted: bool,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor | None:
    """Additive mask ``(nRegions, 1, r^2 M^2, M^2)`` for shifted and/or padded maps, ``None`` if not needed.

    ``q_size``/``k_size`` are the padded full-resolution and down-scaled sizes, ``k_valid`` the number of real
    (non-padding) key rows/columns. A key is masked when it is padding or when it lies on the other side of the
    cyclic-shift seam than the query (labels of query pixel ``y`` and key pixel ``y // r`` agree by construction,
    since the full-resolution map is rolled by ``R/2`` and the down-scaled one by ``M/2``).
    """
    (hp, wp), (hk, wk) = q_size, k_size
    padded = k_valid != (hk, wk)
    if not shifted and not padded:
        return None
    m, r = window_size, ratio
    sk = m // 2 if shifted else 0
    sq = sk * r
    qy, qx = _shift_labels(hp, r * m, sq), _shift_labels(wp, r * m, sq)
    ky, kx = _shift_labels(hk, m, sk), _shift_labels(wk, m, sk)
    q_lab = (qy[:, None] * 3 + qx[None, :]).view(1, hp, wp, 1).float()
    k_lab = (ky[:, None] * 3 + kx[None, :]).float()
    # validity of each key position in the rolled frame
    vy = torch.roll(torch.arange(hk) < k_valid[0], -sk)
    vx = torch.roll(torch.arange(wk) < k_valid[1], -sk)
    k_lab = torch.where(vy[:, None] & vx[None, :], k_lab, torch.full_like(k_lab, -1.0)).view(1, hk, wk, 1)
    ql = partition_queries(q_lab, r, m, 1)[:, 0, :, 0]  # nR, Lq
    kl = partition_keys(torch.cat([k_lab, k_lab], -1), m, 1)[0][:, 0, :, 0]  # nR, Lk
    mask = (ql[:, :, None] != kl[:, None, :]).to(dtype) * MASK_VALUE
    return mask.unsqueeze(1).to(device)


def region_coordinates(
    q_size: tuple[int, int], k_size: tuple[int, int], ratio: int, window_size: int, shifted: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel ``(x, y)`` coordinates, in the un-rolled full-resolution frame, of the queries ``(nR, Lq, 2)`` and
    keys ``(nR, Lk, 2)``; a key sits at the centre of the ``r x r`` block it averages."""
    (hp, wp), (hk, wk) = q_size, k_size
    m, r = window_size, ratio
    sk = m // 2 if shifted else 0
    sq = sk * r
    ys = torch.roll(torch.arange(hp, dtype=torch.float32), -sq)
    xs = torch.roll(torch.arange(wp, dtype=torch.float32), -sq)
    qxy = torch.stack(torch.broadcast_tensors(xs[None, :], ys[:, None]), -1).unsqueeze(0)  # 1, hp, wp, 2
    kys = torch.roll(torch.arange(hk, dtype=torch.float32), -sk) * r + (r - 1) / 2
    kxs = torch.roll(torch.arange(wk, dtype=torch.float32), -sk) * r + (r - 1) / 2
    kxy = torch.stack(torch.broadcast_tensors(kxs[None, :], kys[:, None]), -1).unsqueeze(0)
    q_part = partition_queries(qxy, r, m, 1)[:, 0]  # nR, Lq, 2
    k_part = partition_keys(torch.cat([kxy, kxy], -1), m, 1)[0][:, 0]
    return q_part, k_part
