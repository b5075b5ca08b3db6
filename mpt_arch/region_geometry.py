"""Geometry of cross-scale windows (Sec. 3.1, CSWA): region partition as gather indices, shift and padding masks.

A CSWA layer with scale ``s = 1/r`` and window width ``M`` pairs the ``M x M`` key window ``(I, J)`` of the
down-scaled map with the ``r x r`` query windows ``(i, j)``, ``(i // r, j // r) == (I, J)``, that cover the same
``R x R`` image region (``R = r M``). Queries of one region are ordered ``(window row, window col, row in window,
col in window)`` so the Swin relative position bias of an ``M x M`` window tiles over the ``r^2`` windows; keys of
one region are ordered ``(row, col)``.

Any map size: the full-resolution map is conceptually zero-padded to whole regions (``Hp = ceil(H / R) * R``) and
the down-scaled map to whole windows. Shifted windows: the padded full-resolution map is cyclically rolled by
``R/2`` and the down-scaled one by ``M/2`` (``M/2`` down-scaled pixels are ``R/2`` full-resolution pixels, so the
region correspondence still holds); Swin-style labels mark the parts that wrapped around the seam.

Padding, roll, partition and their inverse are all expressed as gather indices (one ``index_select`` each way), so
no padded or rolled copy of a map is ever made. Padded queries gather pixel 0 (their outputs are dropped); padded
keys gather pixel 0 and are masked. Regions whose attention needs no mask (no seam, no padding) come first,
the ``n_border`` others last, so the bias alone serves most regions and a mask is only built for the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Optional

import torch

MASK_VALUE = -1.0e4  # additive mask value: exp() underflows to 0 in float32/bf16, still finite in float16


def relative_position_index(window_size: int) -> torch.Tensor:
    """Swin-style index into a ``(2M-1)^2`` bias table for every (query, key) pair of an ``M x M`` window."""
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing='ij'))
    coords = coords.flatten(1)  # 2, M^2
    rel = coords[:, :, None] - coords[:, None, :] + window_size - 1  # 2, M^2, M^2 (non-negative)
    return rel[0] * (2 * window_size - 1) + rel[1]


@dataclass
class RegionLayout:
    """Gather indices and masks of one (map size, ratio, window, shift) geometry; see the module docstring."""

    q_src: torch.Tensor  # (nR * Lq,) flat source pixel of every query slot (padding -> 0)
    k_src: torch.Tensor  # (nR * Lk,) flat source pixel of every key slot in the down-scaled map (padding -> 0)
    q_inv: torch.Tensor  # (H * W,) query slot of every real pixel
    k_inv: torch.Tensor  # (Hk * Wk,) key slot of every real down-scaled pixel
    q_pad: Optional[torch.Tensor]  # query slots holding padding (None: none)
    n_regions: int
    n_border: int  # the last n_border regions need ``border_mask``
    border_mask: Optional[torch.Tensor]  # (n_border, 1, Lq, Lk) additive, float32
    query_xy: torch.Tensor  # (nR, Lq, 2) float (x, y) in the full-resolution frame (padding: >= W or >= H)
    key_xy: torch.Tensor  # (nR, Lk, 2) float, centre of the r x r block a key averages
    query_valid: torch.Tensor  # (nR, Lq) bool
    # authors' pairing only (``build_authors_layout``): queries are read from a regrouped frame and written back
    # to other pixels; None = the region layout (queries read from and written to the same pixel)
    reg_src: Optional[torch.Tensor] = None  # (H * W,) full-resolution pixel at each regrouped-frame position
    reg_inv: Optional[torch.Tensor] = None  # (H * W,) regrouped-frame position of each full-resolution pixel
    o_src: Optional[torch.Tensor] = None  # (nR * Lq,) full-resolution pixel each query slot's output goes to
    o_inv: Optional[torch.Tensor] = None  # (H * W,) the query slot whose output each pixel receives

    _chunk_cache: dict = field(default_factory=dict, repr=False, compare=False)

    def to(self, device: torch.device) -> RegionLayout:
        fields = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()
                  if k != '_chunk_cache'}
        return RegionLayout(**fields)

    @property
    def out_index(self) -> torch.Tensor:
        """Slot whose output each full-resolution pixel receives (``q_inv`` for the region layout)."""
        return self.q_inv if self.o_inv is None else self.o_inv

    @property
    def out_src(self) -> torch.Tensor:
        """Destination pixel of each query slot (``q_src`` for the region layout)."""
        return self.q_src if self.o_src is None else self.o_src

    def chunks(self, regions_per_chunk: int) -> list[RegionChunk]:
        """Consecutive groups of at most ``regions_per_chunk`` regions (never mixing masked and unmasked ones),
        with their gather indices, for evaluating attention a group at a time (cached per group size)."""
        cached = self._chunk_cache.get(regions_per_chunk)
        if cached is not None:
            return cached
        with torch.inference_mode(False):  # cached tensors must also serve calls outside inference mode
            chunks = self._build_chunks(max(1, regions_per_chunk))
        self._chunk_cache[regions_per_chunk] = chunks
        return chunks

    def _build_chunks(self, per_chunk: int) -> list[RegionChunk]:
        n, n_plain = self.n_regions, self.n_regions - self.n_border
        lq, lk = self.q_src.numel() // n, self.k_src.numel() // n
        chunks = []
        for lo, hi in ((0, n_plain), (n_plain, n)):
            for s in range(lo, hi, per_chunk):
                e = min(hi, s + per_chunk)
                q_src = self.q_src[s * lq:e * lq]
                dst = self.out_src[s * lq:e * lq]
                valid = self.query_valid[s:e].flatten()
                keep = None if bool(valid.all()) else torch.nonzero(valid)[:, 0]
                mask = None if s < n_plain else self.border_mask[s - n_plain:e - n_plain]
                chunks.append(RegionChunk(e - s, q_src, self.k_src[s * lk:e * lk], keep,
                                          dst if keep is None else dst[keep], mask))
        return chunks


class RegionChunk(NamedTuple):
    """A group of consecutive regions of a :class:`RegionLayout` (see :meth:`RegionLayout.chunks`)."""

    n_regions: int
    q_src: torch.Tensor  # (n * Lq,) source pixel of each query slot
    k_src: torch.Tensor  # (n * Lk,) source pixel of each key slot in the down-scaled map
    keep: Optional[torch.Tensor]  # query slots that are real pixels (None: all of them)
    pixels: torch.Tensor  # the real pixels those slots' outputs go to, in slot order
    border_mask: Optional[torch.Tensor]  # (n, 1, Lq, Lk) for masked regions, else None


def _partition(grid: torch.Tensor, ratio: int, window_size: int) -> torch.Tensor:
    """``(Hp, Wp, ...)`` grid of the rolled padded map -> ``(nR, r^2 M^2, ...)`` (raster region order)."""
    hp, wp = grid.shape[:2]
    m, r = window_size, ratio
    nh, nw = hp // (r * m), wp // (r * m)
    rest = grid.shape[2:]
    g = grid.reshape(nh, r, m, nw, r, m, *rest)
    g = g.permute(0, 3, 1, 4, 2, 5, *range(6, 6 + len(rest)))
    return g.reshape(nh * nw, r * r * m * m, *rest)


def _labels(length: int, region: int, shift: int) -> torch.Tensor:
    """Swin-style labels along one axis of a rolled map: 0 body, 1 last region before the seam, 2 wrapped part."""
    labels = torch.zeros(length, dtype=torch.long)
    if shift:
        labels[length - region:length - shift] = 1
        labels[length - shift:] = 2
    return labels


def _inverse(src: torch.Tensor, valid: torch.Tensor, size: int) -> torch.Tensor:
    """The slot of each of the ``size`` real source pixels, from the slots' sources ``src`` and validity ``valid``."""
    inv = torch.empty(size, dtype=torch.long)
    inv[src[valid]] = torch.nonzero(valid)[:, 0]
    return inv


def build_region_layout(height: int, width: int, ratio: int, window_size: int, shifted: bool) -> RegionLayout:
    """Region layout of a CSWA layer on an ``height x width`` map (CPU tensors)."""
    m, r = window_size, ratio
    hk, wk = -(-height // r), -(-width // r)  # down-scaled map (ceil-mode pooling)
    hkp, wkp = -(-hk // m) * m, -(-wk // m) * m
    hp, wp = hkp * r, wkp * r
    sk = m // 2 if shifted else 0
    sq = sk * r
    # original (un-rolled, padded-frame) coordinates at every rolled position
    qy, qx = torch.roll(torch.arange(hp), -sq), torch.roll(torch.arange(wp), -sq)
    ky, kx = torch.roll(torch.arange(hkp), -sk), torch.roll(torch.arange(wkp), -sk)
    q_yx = torch.stack(torch.broadcast_tensors(qy[:, None], qx[None, :]), -1)  # hp, wp, 2
    k_yx = torch.stack(torch.broadcast_tensors(ky[:, None], kx[None, :]), -1)
    q_lab = _labels(hp, r * m, sq)[:, None] * 3 + _labels(wp, r * m, sq)[None, :]
    k_lab = _labels(hkp, m, sk)[:, None] * 3 + _labels(wkp, m, sk)[None, :]
    q_yx, k_yx = _partition(q_yx, r, m), _partition(k_yx, 1, m)  # (nR, Lq, 2), (nR, Lk, 2)
    q_lab, k_lab = _partition(q_lab, r, m), _partition(k_lab, 1, m)
    q_valid = (q_yx[..., 0] < height) & (q_yx[..., 1] < width)
    k_valid = (k_yx[..., 0] < hk) & (k_yx[..., 1] < wk)
    k_lab = torch.where(k_valid, k_lab, torch.full_like(k_lab, -1))
    needs_mask = (q_lab.amin(1) != q_lab.amax(1)) | (k_lab.amin(1) != k_lab.amax(1)) | (q_lab[:, 0] != k_lab[:, 0])
    order = torch.cat([torch.nonzero(~needs_mask)[:, 0], torch.nonzero(needs_mask)[:, 0]])
    q_yx, k_yx, q_lab, k_lab = q_yx[order], k_yx[order], q_lab[order], k_lab[order]
    q_valid, k_valid = q_valid[order], k_valid[order]
    n_border = int(needs_mask.sum())
    border_mask = None
    if n_border:
        ql, kl = q_lab[-n_border:], k_lab[-n_border:]
        border_mask = ((ql[:, :, None] != kl[:, None, :]).float() * MASK_VALUE).unsqueeze(1)
    q_src = torch.where(q_valid, q_yx[..., 0] * width + q_yx[..., 1], 0).flatten()
    k_src = torch.where(k_valid, k_yx[..., 0] * wk + k_yx[..., 1], 0).flatten()
    q_inv, k_inv = _inverse(q_src, q_valid.flatten(), height * width), _inverse(k_src, k_valid.flatten(), hk * wk)
    q_pad = None if bool(q_valid.all()) else torch.nonzero(~q_valid.flatten())[:, 0]
    query_xy = q_yx.flip(-1).float()
    key_xy = k_yx.flip(-1).float() * r + (r - 1) / 2
    return RegionLayout(q_src, k_src, q_inv, k_inv, q_pad, q_yx.shape[0], n_border, border_mask, query_xy, key_xy,
                        q_valid)


AUTHORS_MASK_VALUE = -100.0  # the authors' shift-mask value (docs/guides/authors_weights.md, difference 4)


def authors_multiple(ratio: int, window_size: int) -> int:
    """Map sizes the authors' pairing accepts are multiples of this (``r M``: whole windows in the down-scaled map)."""
    return ratio * window_size


def build_authors_layout(height: int, width: int, ratio: int, window_size: int, shifted: bool) -> RegionLayout:
    """The authors' raster-order pairing as a layout (docs/guides/authors_weights.md, differences 1-4).

    With ``Nk`` windows in the down-scaled map, the ``N = r^2 Nk`` full-resolution windows (raster order) are
    regrouped into ``r^2`` sub-images of ``Hk x Wk = H/r x W/r`` pixels, sub-image ``j`` holding windows
    ``j Nk .. (j+1) Nk - 1`` in raster order (``reg_src``); the query depthwise conv runs on that regrouped frame.
    Each sub-image is rolled by ``M/2`` (shifted windows) and cut into windows; query window ``n`` (sub-image
    ``n // Nk``, window ``n % Nk``) is paired with key window ``n // r^2`` of the rolled down-scaled map, and its
    output goes to raster window ``n`` of the full-resolution map, rolled back by ``M/2`` there (``o_src``). The
    shift mask of query window ``n`` is key window ``n // r^2``'s Swin mask (for queries too), value -100.
    ``height`` and ``width`` must be multiples of ``r M``. A "region" is key window ``K`` with its ``r^2`` query
    windows ``K r^2 .. K r^2 + r^2 - 1``, so the bias tiles exactly as in :func:`build_region_layout`.
    """
    m, r = window_size, ratio
    if height % (r * m) or width % (r * m):
        raise ValueError(f'the authors\' CSWA pairing needs map sizes divisible by r*M = {r * m}, got {height}x{width}')
    hk, wk = height // r, width // r
    nwk, nw = wk // m, width // m
    nk = (hk // m) * nwk
    s = m // 2 if shifted else 0
    # regrouped frame: sub-image j, pixel (y, x) <- raster window n = j Nk + (y // M) nWk + x // M of the full map
    j, y, x = torch.meshgrid(torch.arange(r * r), torch.arange(hk), torch.arange(wk), indexing='ij')
    n = j * nk + (y // m) * nwk + x // m
    reg_src = ((n // nw) * m + y % m) * width + (n % nw) * m + x % m
    reg_src = reg_src.flatten()
    # slots ordered (query window n, position p); window n = sub-image n // Nk, window n % Nk of it
    n, py, px = torch.meshgrid(torch.arange(r * r * nk), torch.arange(m), torch.arange(m), indexing='ij')
    jq, wq = n // nk, n % nk
    q_src = jq * hk * wk + ((wq // nwk) * m + py + s) % hk * wk + ((wq % nwk) * m + px + s) % wk
    big_y, big_x = (n // nw) * m + py, (n % nw) * m + px  # output: raster window n, then rolled back by +s
    o_src = ((big_y + s) % height) * width + (big_x + s) % width
    kk, ky, kx = torch.meshgrid(torch.arange(nk), torch.arange(m), torch.arange(m), indexing='ij')
    k_y, k_x = ((kk // nwk) * m + ky + s) % hk, ((kk % nwk) * m + kx + s) % wk
    k_src = k_y * wk + k_x
    # Swin labels of the (rolled-frame) down-scaled map, per key window; query window n uses key window n // r^2's
    lab = (_labels(hk, m, s)[:, None] * 3 + _labels(wk, m, s)[None, :])
    k_lab = lab[(kk // nwk) * m + ky, (kk % nwk) * m + kx].reshape(nk, m * m)
    needs_mask = k_lab.amin(1) != k_lab.amax(1)
    order = torch.cat([torch.nonzero(~needs_mask)[:, 0], torch.nonzero(needs_mask)[:, 0]])
    lq, lk = r * r * m * m, m * m
    q_src, o_src = q_src.reshape(nk, lq)[order], o_src.reshape(nk, lq)[order]
    k_src, k_lab = k_src.reshape(nk, lk)[order], k_lab[order]
    n_border = int(needs_mask.sum())
    border_mask = None
    if n_border:
        kl = k_lab[-n_border:]
        border_mask = ((kl[:, :, None] != kl[:, None, :]).float() * AUTHORS_MASK_VALUE).repeat(1, r * r, 1)
        border_mask = border_mask.unsqueeze(1)  # n_border, 1, Lq, Lk
    src_yx = torch.stack([reg_src // width, reg_src % width], -1)[q_src]  # full-res pixel feeding each query
    query_xy = src_yx.flip(-1).float()
    key_xy = torch.stack([k_src % wk, k_src // wk], -1).float() * r + (r - 1) / 2
    q_src, o_src, k_src = q_src.flatten(), o_src.flatten(), k_src.flatten()
    every = torch.ones(q_src.numel(), dtype=torch.bool)
    q_inv, o_inv = _inverse(q_src, every, height * width), _inverse(o_src, every, height * width)
    k_inv = _inverse(k_src, torch.ones(k_src.numel(), dtype=torch.bool), hk * wk)
    reg_inv = _inverse(reg_src, torch.ones(reg_src.numel(), dtype=torch.bool), height * width)
    return RegionLayout(q_src, k_src, q_inv, k_inv, None, nk, n_border, border_mask, query_xy, key_xy,
                        torch.ones(nk, lq, dtype=torch.bool), reg_src, reg_inv, o_src, o_inv)


_LAYOUT_CACHE: dict = {}


def region_layout(
    height: int, width: int, ratio: int, window_size: int, shifted: bool, device: torch.device,
    pairing: str = 'region',
) -> RegionLayout:
    """Cached :func:`build_region_layout` (``pairing='region'``, the paper) or :func:`build_authors_layout`
    (``pairing='raster'``) on ``device`` (shared by all layers of the same geometry)."""
    key = (height, width, ratio, window_size, shifted, str(device), pairing)
    layout = _LAYOUT_CACHE.get(key)
    if layout is None:
        if len(_LAYOUT_CACHE) >= 64:
            _LAYOUT_CACHE.clear()
        with torch.inference_mode(False):  # cached tensors must also serve autograd-tracked calls
            build = build_authors_layout if pairing == 'raster' else build_region_layout
            layout = build(height, width, ratio, window_size, shifted).to(device)
        _LAYOUT_CACHE[key] = layout
    return layout
