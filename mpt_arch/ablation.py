"""Ablation variants of the MPT sub-block (Sec. 4.4, Tables 3 and 4; supplementary Tables 9 and 10).

The paper configuration never touches this module's classes: the switches in ``cswa.py``, ``pyramid_block.py`` and
``mpt_arch.py`` only build them for a non-default keyword. Torch only (the folder stays drop-in).

- ``attention`` (Table 3): which attention feeds each of the two sub-block branches. Branch 1 is FEFN's spatial
  input ``x1`` (shortcut), branch 2 its channel input ``x2``. ``wa`` = plain Swin window attention, i.e. CSWA at
  scale 1 (no down-sampling), shifted like CSWA.
- ``ffn`` (Table 4): how FEFN combines ``x1' = Linear(LN_a(x1))`` and ``x2' = DW3x3(Conv1x1(LN_b(x2)))``; the
  shortcut stays ``x1`` in every variant.
- ``downsample`` (Table 9, V_ds1..V_ds5): the down-sampling module of CSWA. Every variant maps an ``H x W`` map to
  ``ceil(H/r) x ceil(W/r)`` (the size the region geometry expects).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .fefn import FeatureEnhancingFFN
from .linear_add import linear_add

# Table 3: attention pair -> (branch 1 kind, branch 2 kind); kinds: 'cswa', 'wa' (CSWA at scale 1), 'isca'
ATTENTION_PAIRS = {
    'cswa+isca': ('cswa', 'isca'),  # MPT (default)
    'cswa+cswa': ('cswa', 'cswa'),  # V_1
    'wa+wa': ('wa', 'wa'),  # V_2
    'isca+isca': ('isca', 'isca'),  # V_3
    'wa+isca': ('wa', 'isca'),  # V_4
}
# Table 4: FEFN (default, Eq. 3), V_1 concatenation + GELU, V_2 addition + GELU, V_3 reversed (= Table 9 V_FEFN1)
FFN_VARIANTS = ('fefn', 'cat_gelu', 'add_gelu', 'reversed')
# Table 9: avgpool (default: avg pool + Linear + shortcut), V_ds1 no_shortcut, V_ds2 no_linear, V_ds3 maxpool,
# V_ds4 conv (depthwise r x r, stride r) / conv_full (full r x r conv, stride r), V_ds5 bicubic
DOWNSAMPLE_VARIANTS = ('avgpool', 'no_shortcut', 'no_linear', 'maxpool', 'conv', 'conv_full', 'bicubic')


def check_choice(name: str, value: object, allowed: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``allowed``; otherwise raise ``ValueError`` listing the allowed values."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f'MPT {name} must be one of {", ".join(repr(a) for a in allowed)}; got {value!r}')
    return value


def check_flag(name: str, value: object) -> bool:
    """Return ``value`` if it is a bool; otherwise raise ``ValueError``."""
    if not isinstance(value, bool):
        raise ValueError(f'MPT {name} must be true or false, got {value!r}')
    return value


def branch_slots(attention: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """``((name, kind), (name, kind))`` of the two branches of ``attention`` (Table 3).

    A branch is named after its kind, WA after its module class (``cswa``), the second of two equal names with a
    ``2`` suffix, so the default keeps its ``cswa`` / ``isca`` parameter names.
    """
    kinds = ATTENTION_PAIRS[check_choice('attention', attention, tuple(ATTENTION_PAIRS))]
    names = [{'wa': 'cswa'}.get(k, k) for k in kinds]
    if names[0] == names[1]:
        names[1] += '2'
    return (names[0], kinds[0]), (names[1], kinds[1])


class FFNVariant(FeatureEnhancingFFN):
    """Symmetric / reversed FEFN variants of Table 4 (same ``x1'``, ``x2'`` paths and ``x1`` shortcut as Eq. 3).

    - ``cat_gelu`` (V_1): ``W_p(GELU([x1', x2'])) + x1`` with ``W_p: 2 alpha C -> C``.
    - ``add_gelu`` (V_2): ``W_p(GELU(x1' + x2')) + x1``.
    - ``reversed`` (V_3, Table 9 V_FEFN1): ``W_p(GELU(x1') * x2') + x1`` (the CSWA path is activated).
    """

    def __init__(self, dim: int, expansion: float, variant: str) -> None:
        super().__init__(dim, expansion)
        allowed = FFN_VARIANTS[1:]
        self.variant = check_choice('ffn', variant, allowed)
        if variant == 'cat_gelu':
            self.proj = nn.Linear(2 * self.proj.in_features, dim, bias=False)

    def extra_repr(self) -> str:
        return f'variant={self.variant}'

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        spatial = self.spatial_in(self.norm_spatial(x1))
        channel = self.channel_dw(self.channel_in(self.norm_channel(x2)).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        if self.variant == 'cat_gelu':
            hidden = F.gelu(torch.cat([spatial, channel], -1))
        elif self.variant == 'add_gelu':
            hidden = F.gelu(spatial + channel)
        else:  # reversed
            hidden = F.gelu(spatial) * channel
        return linear_add(hidden, self.proj.weight, x1)


class DownsampleVariant(nn.Module):
    """CSWA down-sampling variants of Table 9 (Fig. 7's module is ``y = pool(x); y + Linear(y)``).

    - ``no_shortcut`` (V_ds1): ``Linear(avgpool(x))``.
    - ``no_linear`` (V_ds2): ``avgpool(x)`` (the CSWA has no ``down_proj``).
    - ``maxpool`` (V_ds3): ``y = maxpool(x); y + Linear(y)``.
    - ``conv`` (V_ds4): ``y = DWConv_rxr,stride r(x); y + Linear(y)`` (depthwise: a learnable average pooling, the
      channel mixing stays in the Linear); ``conv_full``: the same with a full ``C -> C`` ``r x r`` conv.
      The map is zero-padded at the bottom/right to a multiple of ``r`` (PyTorch's default init).
    - ``bicubic`` (V_ds5): ``y = bicubic resize(x)`` (antialiased, i.e. an image resize rather than 16-tap point
      sampling) to ``ceil(H/r) x ceil(W/r)``; ``y + Linear(y)``.

    Pooling uses ``ceil_mode`` like the default, so every variant gives a ``ceil(H/r) x ceil(W/r)`` map.
    Input and output channels-last ``(B, H, W, C)``; ``proj`` is the CSWA's ``down_proj`` (``None`` for no_linear).
    """

    def __init__(self, variant: str, dim: int, ratio: int) -> None:
        super().__init__()
        self.variant = check_choice('downsample', variant, DOWNSAMPLE_VARIANTS[1:])
        self.ratio = ratio
        self.conv = None
        if variant in ('conv', 'conv_full'):
            groups = dim if variant == 'conv' else 1
            self.conv = nn.Conv2d(dim, dim, ratio, stride=ratio, groups=groups, bias=False)

    def extra_repr(self) -> str:
        return f'variant={self.variant}, r={self.ratio}'

    def forward(self, x: torch.Tensor, proj: Optional[nn.Linear]) -> torch.Tensor:
        r = self.ratio
        h, w = x.shape[1:3]
        t = x.permute(0, 3, 1, 2)
        if self.variant in ('no_shortcut', 'no_linear'):
            t = F.avg_pool2d(t, r, r, ceil_mode=True)
        elif self.variant == 'maxpool':
            t = F.max_pool2d(t, r, r, ceil_mode=True)
        elif self.conv is not None:
            t = self.conv(F.pad(t, (0, -w % r, 0, -h % r)))
        else:  # bicubic
            t = F.interpolate(t, size=(-(-h // r), -(-w // r)), mode='bicubic', align_corners=False, antialias=True)
        y = t.permute(0, 2, 3, 1)
        if self.variant == 'no_linear':
            return y
        if self.variant == 'no_shortcut':
            return proj(y)
        return y + proj(y)
