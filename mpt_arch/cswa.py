"""Cross-scale window attention (CSWA), Sec. 3.1 and Eq. (1) of the paper."""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .ablation import DOWNSAMPLE_VARIANTS, DownsampleVariant, check_choice, check_flag
from .head_norm import normalize_heads
from .linear_add import Projection, linear_add
from .region_geometry import RegionLayout, region_layout, relative_position_index
from .token_gather import gather_tokens


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

    Ablation switches (supplementary Table 9; defaults are the paper's CSWA): ``downsample`` picks a down-sampling
    variant (``ablation.DownsampleVariant``), ``npconv=False`` drops the two depthwise 3x3 convs.

    Inference on the CPU evaluates the same function by row strips and region groups (``mpt_arch.inference``).
    The authors' variant (raster-order pairing, raw temperature) is ``authors_compat.AuthorsCSWA``.

    Analysis hooks: set ``keep_attention = True`` to compute attention explicitly and keep, for the last call,
    ``last_attention`` (softmax weights ``(B, nRegions, heads, r^2 M^2, M^2)``), ``last_query_xy``
    ``(nRegions, r^2 M^2, 2)`` and ``last_key_xy`` ``(nRegions, M^2, 2)`` (float ``(x, y)`` pixel coordinates in the
    layer input's full-resolution frame, a key at the centre of the ``r x r`` block it averages; padded positions
    lie at or beyond ``last_map_size``), ``last_query_valid`` ``(nRegions, r^2 M^2)`` bool (query is not padding)
    and ``last_map_size = (H', W')``.
    """

    def __init__(
        self, dim: int, heads: int, scale: float, window_size: int = 8, shifted: bool = False,
        downsample: str = 'avgpool', npconv: bool = True,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f'CSWA dim {dim} is not divisible by heads {heads}')
        if window_size < 2 or window_size % 2:
            raise ValueError(f'window_size must be an even integer >= 2, got {window_size!r}')
        self.dim, self.heads, self.window_size, self.shifted = dim, heads, window_size, shifted
        self.ratio = scale_ratio(scale)
        # ablation switches (Table 9): down-sampling variant, NPConv on/off; defaults = the paper's CSWA
        self.downsample = check_choice('downsample', downsample, DOWNSAMPLE_VARIANTS)
        self.npconv = check_flag('npconv', npconv)
        self.down_proj = Projection(dim, dim) if self.ratio > 1 and downsample != 'no_linear' else None
        self.down = DownsampleVariant(downsample, dim, self.ratio) if self.ratio > 1 and downsample != 'avgpool' \
            else None
        self.q = Projection(dim, dim)
        self.q_dw = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False) if npconv else None
        self.kv = Projection(dim, 2 * dim)
        self.kv_dw = nn.Conv2d(2 * dim, 2 * dim, 3, padding=1, groups=2 * dim, bias=False) if npconv else None
        self._init_temperature(heads)
        self.rpb_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, heads))
        nn.init.trunc_normal_(self.rpb_table, std=0.02)
        self.proj = Projection(dim, dim)
        self.register_buffer('rp_index', relative_position_index(window_size), persistent=False)
        self.keep_attention = False
        self.last_attention = self.last_query_xy = self.last_key_xy = self.last_query_valid = None
        self.last_map_size = None

    pairing = 'region'
    """The layout of ``region_geometry.region_layout``: the paper's same-region pairing."""

    def _init_temperature(self, heads: int) -> None:
        """Cosine attention's learnable per-head log temperature, initialised to log 10 (clamped at log 100)."""
        self.logit_scale = nn.Parameter(torch.full((heads,), math.log(10.0)))

    def attention_temperature(self) -> torch.Tensor:
        """The per-head multiplier of the cosine similarities ``(heads,)``."""
        return self.logit_scale.clamp(max=math.log(100.0)).exp()

    def extra_repr(self) -> str:
        extra = '' if self.npconv else ', npconv=False'
        return (f'dim={self.dim}, heads={self.heads}, scale=1/{self.ratio}, M={self.window_size}, '
                f'shifted={self.shifted}{extra}')

    @staticmethod
    def _dwconv(x: torch.Tensor, conv: Optional[nn.Conv2d]) -> torch.Tensor:
        """Depthwise conv on a channels-last ``(B, H, W, C)`` tensor (the permuted view is channels_last memory);
        identity when ``conv`` is None (``npconv=False``, Table 9 V_w/o NPC)."""
        if conv is None:
            return x
        return conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    def position_bias(self) -> torch.Tensor:
        """Relative position bias ``(heads, M^2, M^2)``."""
        m2 = self.window_size**2
        return self.rpb_table[self.rp_index.view(-1)].view(m2, m2, self.heads).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x``: layer-normalised features ``(B, H, W, C)``; returns ``(B, H, W, C)`` (``+ residual`` if given)."""
        b, h, w, c = x.shape
        m, r, heads, d = self.window_size, self.ratio, self.heads, c // self.heads
        layout = region_layout(h, w, r, m, self.shifted, x.device, self.pairing)
        n_regions, lq, lk = layout.n_regions, r * r * m * m, m * m
        q = normalize_heads(self._dwconv(self.q(self.query_frame(x, layout)), self.q_dw), heads,
                            self.attention_temperature())
        kv = self._dwconv(self.kv(self.downscaled(x)), self.kv_dw)
        # gather into regions (token_gather: the backward is a gather too), then (B * nR, heads, L, d) views
        q = gather_tokens(q.reshape(b, h * w, c), layout.q_src, layout.q_inv)
        q = q.view(b * n_regions, lq, heads, d).transpose(1, 2)
        kv = gather_tokens(kv.reshape(b, -1, 2 * c), layout.k_src, layout.k_inv)
        k, v = kv.split(c, dim=-1)  # split (not slicing): its backward concatenates instead of zero-filling
        k = normalize_heads(k, heads).view(b * n_regions, lk, heads, d).transpose(1, 2)
        v = v.reshape(b * n_regions, lk, heads, d).transpose(1, 2)
        bias = self.position_bias().to(q.dtype)  # heads, M^2, M^2
        mask = None if layout.border_mask is None else layout.border_mask.to(q.dtype)
        out = self._explicit_attention(q, k, v, bias, mask, b, layout, (h, w))
        out = gather_tokens(out.transpose(1, 2).reshape(b, n_regions * lq, c), layout.out_index, layout.out_src,
                            layout.q_pad)
        return linear_add(out.view(b, h, w, c), self.proj.weight, residual)

    def query_frame(self, x: torch.Tensor, layout: RegionLayout) -> torch.Tensor:
        """The map the query projection and depthwise conv run on: ``x`` itself, or for the authors' pairing its
        ``r^2`` regrouped sub-images ``(B r^2, H/r, W/r, C)`` (``RegionLayout.reg_src``)."""
        if layout.reg_src is None:
            return x
        b, h, w, c = x.shape
        r = self.ratio
        t = gather_tokens(x.reshape(b, h * w, c), layout.reg_src, layout.reg_inv)
        return t.view(b * r * r, h // r, w // r, c)

    def downscaled(self, x: torch.Tensor) -> torch.Tensor:
        """The key/value source map: ``x`` average-pooled by ``r`` plus ``Linear`` of it (the down-sampling module
        with shortcut), or an ablation variant; ``x`` itself when ``r = 1``."""
        if self.ratio > 1 and self.down is not None:  # ablation variant (Table 9 V_ds1..V_ds5)
            return self.down(x, self.down_proj)
        if self.ratio > 1:
            y = F.avg_pool2d(x.permute(0, 3, 1, 2), self.ratio, self.ratio, ceil_mode=True).permute(0, 2, 3, 1)
            return y + self.down_proj(y)
        return x

    def _explicit_attention(self, q, k, v, bias, mask, b, layout, map_size):
        """Softmax(q k^T + B + mask) v computed explicitly (training, and the analysis hooks), one head at a time
        so the strided per-head views feed bmm without copies. Returns ``(B * nR, heads, Lq, d)``."""
        r2, n, nb = self.ratio**2, layout.n_regions, layout.n_border
        lq, lk = q.shape[2], k.shape[2]
        tiled = bias.repeat(1, r2, 1)  # heads, Lq, Lk: the bias tiled over the r^2 query windows of a region
        if mask is not None:  # the border regions' rows of the (B * nR) attention batch, and their masks
            rows = (torch.arange(b, device=q.device)[:, None] * n + torch.arange(n - nb, n, device=q.device)).flatten()
            mask = mask[:, 0].repeat(b, 1, 1)
        outs, weights = [], []
        # unbind (not indexing): its backward stacks instead of zero-filling a full-size gradient per head; one
        # head: squeeze, a view both ways
        per_head = (lambda t: t.unbind(1)) if self.heads > 1 else (lambda t: (t.squeeze(1),))
        for hd, (qh, kh, vh) in enumerate(zip(per_head(q), per_head(k), per_head(v))):
            # bmm keeps its inputs, not its output: bias and mask go in place, on the tensor itself (in place on a
            # view would make autograd clone the whole gradient)
            attn = torch.bmm(qh, kh.transpose(1, 2)).add_(tiled[hd])  # B*nR, Lq, Lk
            if mask is not None:
                attn.index_add_(0, rows, mask.to(attn.dtype))  # bf16 under autocast
            attn = attn.softmax(-1)
            if self.keep_attention:
                weights.append(attn.detach().view(b, n, lq, lk))
            outs.append(torch.bmm(attn, vh))
        if self.keep_attention:
            self.last_attention = torch.stack(weights, 2)  # B, nR, heads, Lq, Lk
            self.last_query_xy, self.last_key_xy = layout.query_xy, layout.key_xy
            self.last_query_valid = layout.query_valid
            self.last_map_size = tuple(map_size)
        out = torch.stack(outs, 2) if len(outs) > 1 else outs[0].unsqueeze(2)
        return out.transpose(1, 2)  # memory (B*nR, Lq, heads, d): the merge below is a view


@contextlib.contextmanager
def record_attention(model: nn.Module) -> Iterator[List[Tuple[str, CrossScaleWindowAttention]]]:
    """Within the block every CSWA layer of ``model`` computes its attention explicitly and keeps it (the analysis
    hook, ``keep_attention``); yields ``(name, layer)`` pairs. The previous settings come back on exit and the kept
    weights are freed."""
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, CrossScaleWindowAttention)]
    previous = [m.keep_attention for _, m in layers]
    try:
        for _, m in layers:
            m.keep_attention = True
        yield layers
    finally:
        for (_, m), keep in zip(layers, previous):
            m.keep_attention = keep
            m.last_attention = None

